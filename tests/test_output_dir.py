"""Output folders (issue 19): a folder holding another run is refused unless resumed or
overwritten, a second trainer fails at once on the lock, unusable folders get a message, and temp
files never outlive the process that controls its exit (exceptions, SIGTERM) or its restart."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from run_args import synthetic_run

from lgf.training.checkpoint import load_checkpoint
from lgf.training.output_dir import LOCK_FILE, claim_output_dir
from lgf.utils.atomic_write import TEMP_PREFIX
from lgf.utils.setting_errors import SettingError
from train.train import main, parse_args, run

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))


def _tiny(tmp_path, out, *extra):
    common = ["--threads", 2, "--epochs", 1, "--eval-every", 0]
    return synthetic_run(tmp_path / "syn", out, *common, *extra)


def _old_run(out):
    """The artefacts an earlier run leaves, plus files of other tools that must survive."""
    os.makedirs(out / "eval")
    for name in ("last.pt", "best.pt", "log.jsonl", "metrics.csv", "training_curves.png"):
        (out / name).write_text("old")
    (out / "summary.json").write_text("{}")
    (out / "eval" / "epoch_003.json").write_text("{}")
    (out / "train.log").write_text("the grid's own log")


def _quiet(msg):
    pass


def test_a_folder_holding_a_run_is_refused_without_resume_or_overwrite(tmp_path):
    out = tmp_path / "run"
    _old_run(out)
    with pytest.raises(SettingError) as err:
        claim_output_dir(str(out), None, False, _quiet)
    msg = str(err.value.renamed(lambda s: "--" + s.replace("_", "-")))
    assert "holds another run (last.pt, best.pt, log.jsonl" in msg and "eval/" in msg
    assert "--resume auto" in msg and "--overwrite" in msg
    assert (out / "last.pt").read_text() == "old"  # nothing touched


def test_overwrite_clears_the_stale_artefacts_only(tmp_path):
    out = tmp_path / "run"
    _old_run(out)
    said = []
    claim_output_dir(str(out), None, True, said.append).release()
    assert sorted(os.listdir(out)) == [LOCK_FILE, "train.log"]
    assert "removed the artefacts of the earlier run (overwrite)" in said[-1]


def test_resume_auto_without_last_pt_clears_and_overwrite_with_resume_auto_is_refused(tmp_path):
    out = tmp_path / "run"
    _old_run(out)
    os.remove(out / "last.pt")
    claim_output_dir(str(out), "auto", False, _quiet).release()
    assert sorted(os.listdir(out)) == [LOCK_FILE, "train.log"]
    _old_run(tmp_path / "again")
    with pytest.raises(SettingError, match="overwrite would delete the run .* that resume"):
        claim_output_dir(str(tmp_path / "again"), "auto", True, _quiet)
    with pytest.raises(SettingError, match="resume names a checkpoint elsewhere"):
        claim_output_dir(str(tmp_path / "again"), str(tmp_path / "x" / "last.pt"), False, _quiet)


def test_a_file_or_an_unwritable_folder_is_named(tmp_path, monkeypatch):
    (tmp_path / "afile").write_text("x")
    with pytest.raises(SettingError, match=r"output_dir .*afile' is a file, not a folder"):
        claim_output_dir(str(tmp_path / "afile"), None, False, _quiet)
    ro = tmp_path / "ro"
    ro.mkdir()
    if os.geteuid() != 0:
        os.chmod(ro, 0o555)
    else:  # root writes anywhere: make creating the lock file fail as a read-only folder does
        real_open = os.open

        def read_only_open(path, flags, *args):
            if str(path).startswith(str(ro)) and flags & os.O_CREAT:
                raise PermissionError(13, "Permission denied", str(path))
            return real_open(path, flags, *args)

        monkeypatch.setattr(os, "open", read_only_open)
    with pytest.raises(
        SettingError, match=r"output_dir .*ro' cannot be written: Permission denied"
    ):
        claim_output_dir(str(ro), None, False, _quiet)


def test_the_command_line_reports_a_file_as_output_dir(tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    with pytest.raises(SystemExit) as exc:
        main(_tiny(tmp_path, tmp_path / "afile"))
    assert exc.value.code == 2
    assert "--output-dir" in capsys.readouterr().err


def test_the_lock_refuses_a_second_claim_until_released(tmp_path):
    out = str(tmp_path / "run")
    lock = claim_output_dir(out, None, False, _quiet)
    with pytest.raises(
        SettingError, match=rf"in use by another training process \(pid {os.getpid()}"
    ):
        claim_output_dir(out, "auto", False, _quiet)
    lock.release()
    claim_output_dir(out, "auto", False, _quiet).release()


def test_stale_temp_files_are_removed_at_the_next_start(tmp_path):
    out = tmp_path / "run"
    (out / "eval").mkdir(parents=True)
    (out / f"{TEMP_PREFIX}last.pt.abc.tmp").write_bytes(b"x" * 1000)
    (out / "eval" / f"{TEMP_PREFIX}epoch_001.json.abc.tmp").write_text("{")
    said = []
    claim_output_dir(str(out), None, False, said.append).release()
    assert not [n for n in os.listdir(out) if n.startswith(TEMP_PREFIX)]
    assert os.listdir(out / "eval") == []
    assert len(said) == 2 and "eval/" in said[1]


def test_the_trainer_refuses_a_reused_folder_and_overwrite_replaces_the_run(tmp_path):
    out = tmp_path / "run"
    _old_run(out)
    with pytest.raises(SettingError, match="holds another run"):
        run(parse_args(_tiny(tmp_path, out, "--max-iters", "1")))
    assert (out / "last.pt").read_text() == "old"
    run(parse_args(_tiny(tmp_path, out, "--max-iters", "1", "--overwrite")))
    assert load_checkpoint(str(out / "last.pt"))["step"] == 1
    assert not (out / "best.pt").exists() and not (out / "eval").exists()  # no eval this time
    records = [json.loads(line) for line in open(out / "log.jsonl")]
    assert records and all(r["step"] <= 1 for r in records)
    assert (out / "train.log").read_text() == "the grid's own log"


def _holder(out, seconds):
    code = f"""
        import time
        from lgf.training.output_dir import claim_output_dir
        lock = claim_output_dir({str(out)!r}, None, False, print)
        print("locked", flush=True)
        time.sleep({seconds})
    """
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=REPO,
        env=ENV,
        stdout=subprocess.PIPE,
        text=True,
    )


def test_a_second_trainer_in_the_same_folder_fails_at_once(tmp_path, capsys):
    out = tmp_path / "run"
    holder = _holder(out, 120)
    try:
        assert holder.stdout.readline().strip() == "locked"
        t0 = time.time()
        with pytest.raises(SystemExit) as exc:
            main(_tiny(tmp_path, out, "--resume", "auto"))
        assert exc.value.code == 2 and time.time() - t0 < 60
        err = capsys.readouterr().err
        assert f"in use by another training process (pid {holder.pid}" in err
        assert "--output-dir" in err
    finally:
        holder.kill()
        holder.wait()
    claim_output_dir(str(out), "auto", False, _quiet).release()  # the lock died with its holder


def test_sigterm_during_a_checkpoint_write_leaves_no_temp_file(tmp_path):
    """The trainer is stopped by SIGTERM while torch.save is writing last.pt: exit code 143, the
    temp file removed, the folder unlocked."""
    out = tmp_path / "run"
    code = f"""
        import os, signal, time, torch
        real_save = torch.save
        def slow_save(obj, f, *a, **k):
            f.write(b"half a checkpoint")
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(30)
        torch.save = slow_save
        from train.train import main
        main({_tiny(tmp_path, out, "--max-iters", "1")!r})
    """
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=REPO,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 128 + signal.SIGTERM, proc.stderr[-2000:]
    assert not [n for n in os.listdir(out) if n.startswith(TEMP_PREFIX)], os.listdir(out)
    assert not (out / "last.pt").exists()
    claim_output_dir(str(out), "auto", False, _quiet).release()
