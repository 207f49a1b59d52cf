"""Conventions every command keeps: --help shows every default, the output folder is
--output-dir (old names still work, with a deprecation warning), progress bars are on unless
--no-progress."""

import argparse
import importlib
import re

import pytest

from train.flags import HelpFormatter

COMMANDS = ("train", "evaluate", "grid", "weather", "visualize", "complexity", "demo")
WITH_PROGRESS_BARS = ("train", "evaluate", "weather", "demo")
OLD_OUTPUT_NAMES = {  # command -> (old flag, destination it fills)
    "evaluate": ("--output-json", "output_json"),
    "complexity": ("--json", "json"),
    "grid": ("--out", "output_dir"),
    "weather": ("--out", "output_dir"),
    "visualize": ("--out", "output_dir"),
}


def _parser(command):
    return importlib.import_module(f"train.{command}").build_parser()


def _options(parser):
    return [a for a in parser._actions if a.option_strings and a.dest != "help"]


@pytest.mark.parametrize("command", COMMANDS)
def test_help_shows_every_default(command):
    parser = _parser(command)
    assert parser.formatter_class is HelpFormatter
    formatter = HelpFormatter(parser.prog)
    for action in _options(parser):
        if action.help == argparse.SUPPRESS:  # deprecated aliases
            continue
        assert action.help, f"{command} {action.option_strings} has no help text"
        assert "default" in formatter._get_help_string(action), action.option_strings
    text = parser.format_help()
    assert "(default: " in text
    if command == "train":  # options that used to show none
        for flag in ("--epochs", "--lr", "--backbone", "--weight-decay", "--seed"):
            line = text[text.index(flag) :].split("\n--")[0]
            assert "default" in line, flag


@pytest.mark.parametrize("command", COMMANDS)
def test_output_folder_is_output_dir(command):
    assert "--output-dir" in _parser(command)._option_string_actions


@pytest.mark.parametrize("command", sorted(OLD_OUTPUT_NAMES))
def test_old_output_names_still_work_and_warn(command):
    old, dest = OLD_OUTPUT_NAMES[command]
    parser = _parser(command)
    required = {
        "evaluate": ["ckpt.pt", "--val-img", "i", "--val-ann", "a.json"],
        "weather": ["--src-img", "i", "--src-ann", "a.json"],
        "visualize": ["--checkpoint", "c.pt", "--images", "x.png"],
    }.get(command, [])
    with pytest.warns(FutureWarning, match=f"{old} is deprecated.*--output-dir"):
        args = parser.parse_args(required + [old, "somewhere"])
    assert getattr(args, dest) == "somewhere"
    assert not re.search(re.escape(old) + r"(?![\w-])", parser.format_help())  # hidden


@pytest.mark.parametrize("command", WITH_PROGRESS_BARS)
def test_progress_bars_on_by_default(command):
    parser = _parser(command)
    assert parser._option_string_actions["--no-progress"].default is False


def test_demo_progress_flag_is_deprecated():
    parser = _parser("demo")
    with pytest.warns(FutureWarning, match="--progress is deprecated"):
        args = parser.parse_args(["--progress"])
    assert args.no_progress is False
    assert parser.parse_args(["--no-progress"]).no_progress is True


def test_visualize_still_requires_an_output_folder(capsys):
    with pytest.raises(SystemExit):
        _parser("visualize").parse_args([])
    from train.visualize import main

    with pytest.raises(SystemExit) as exc:
        main(["--checkpoint", "c.pt", "--images", "x.png"])
    assert exc.value.code == 2 and "--output-dir" in capsys.readouterr().err
