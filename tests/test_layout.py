"""The package's shape (docs/design.md §1): every module imports on its own, `import lgf` stays
the model library, the trainer's flags and settings agree, the console scripts resolve, and the
style rules the linter cannot check (function length, type hints, one atomic writer)."""

import ast
import dataclasses
import importlib
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("lgf", "lgf_ops", "train")
# The library code the project's style rules cover (docs/design.md §1); kernels live elsewhere.
LIBRARY = ("lgf", "train")


def _python_files(*packages):
    for package in packages:
        for base, dirs, files in os.walk(os.path.join(ROOT, package)):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__")
            for name in sorted(files):
                if name.endswith(".py"):
                    yield os.path.join(base, name)


def _module_name(path):
    rel = os.path.relpath(path, ROOT)[: -len(".py")].split(os.sep)
    if rel[-1] == "__init__":
        rel = rel[:-1]
    return ".".join(rel)


MODULES = [_module_name(p) for p in _python_files(*PACKAGES)]


def _fresh_python(code):
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=600
    )


def test_every_module_imports_on_its_own_in_a_fresh_interpreter():
    """No import cycle and no module that works only after another one was imported."""
    assert len(MODULES) > 50 and "lgf.training.trainer" in MODULES and "train.grid" in MODULES
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        runs = dict(zip(MODULES, pool.map(lambda m: _fresh_python(f"import {m}"), MODULES)))
    failed = {m: r.stderr.strip().splitlines()[-1:] for m, r in runs.items() if r.returncode}
    assert not failed, failed


def test_import_lgf_loads_the_model_library_only():
    code = (
        "import sys, lgf\n"
        "heavy = ('lgf.training', 'lgf.evaluation', 'lgf.experiments', 'lgf.data')\n"
        "print(sorted(m for m in sys.modules if m.startswith(heavy)))\n"
        "f = lgf.evaluate_checkpoint\n"
        "import lgf.evaluation.checkpoint_eval as ce\n"
        "print(f is ce.evaluate_checkpoint, 'evaluate_checkpoint' in dir(lgf))\n"
        "print(sorted(m for m in sys.modules if m.startswith(('lgf.training.trainer',"
        " 'lgf.experiments'))))\n"
    )
    run = _fresh_python(code)
    assert run.returncode == 0, run.stderr
    loaded, lazy, still_out = run.stdout.strip().splitlines()
    assert loaded == "[]"
    assert lazy == "True True"  # evaluate_checkpoint resolves lazily, to the one function
    assert still_out == "[]"  # and evaluating does not pull in the trainer or the tools


def test_lgf_has_no_other_attributes_on_demand():
    import lgf

    with pytest.raises(AttributeError, match="no attribute 'trainer'"):
        _ = lgf.trainer


def test_every_train_config_field_has_a_flag_with_its_default():
    from lgf.training.config import TrainConfig
    from train.train import build_parser, parse_args

    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    dests = {a.dest for a in build_parser()._actions if a.dest != "help"}
    assert dests == fields
    assert parse_args([]) == TrainConfig()
    assert parse_args(["--epochs", "3", "--lr-steps", "2", "5"]).lr_steps == [2, 5]


def _setup_keyword(name):
    tree = ast.parse(open(os.path.join(ROOT, "setup.py"), encoding="utf-8").read())
    call = next(
        n
        for n in ast.walk(tree)
        if isinstance(n, ast.Call) and getattr(n.func, "id", None) == "setup"
    )
    return next(k.value for k in call.keywords if k.arg == name)


def test_console_scripts_point_at_the_commands():
    package_dir = ast.literal_eval(_setup_keyword("package_dir"))
    scripts = ast.literal_eval(_setup_keyword("entry_points"))["console_scripts"]
    assert package_dir == {"lgf_cli": "train"}
    targets = dict(s.replace(" ", "").split("=") for s in scripts)
    assert set(targets) == {"lgf-train", "lgf-eval"}
    for target in targets.values():
        module, func = target.split(":")
        assert module.startswith("lgf_cli.")
        command = importlib.import_module("train." + module[len("lgf_cli.") :])
        assert callable(getattr(command, func)), target


def _functions(path):
    tree = ast.parse(open(path, encoding="utf-8").read(), path)
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node


def test_no_function_over_60_lines():
    files = list(_python_files(*LIBRARY)) + [os.path.join(ROOT, "benchmarks", "bench_model.py")]
    long = [
        f"{os.path.relpath(p, ROOT)}:{fn.lineno} {fn.name} ({fn.end_lineno - fn.lineno + 1})"
        for p in files
        for fn in _functions(p)
        if fn.end_lineno - fn.lineno + 1 > 60
    ]
    assert not long, long


def _unannotated(fn, is_method):
    args = fn.args
    params = args.posonlyargs + args.args + args.kwonlyargs
    if is_method and params and params[0].arg in ("self", "cls"):
        params = params[1:]
    missing = [a.arg for a in params if a.annotation is None]
    missing += [a.arg for a in (args.vararg, args.kwarg) if a is not None and a.annotation is None]
    if fn.returns is None and fn.name != "__init__":
        missing.append("return")
    return missing


def test_public_functions_of_lgf_have_type_hints():
    """Module-level public functions and the public methods of public classes in lgf/."""
    gaps = []
    for path in _python_files("lgf"):
        for node in ast.parse(open(path, encoding="utf-8").read()).body:
            if isinstance(node, ast.FunctionDef) and not node.name.startswith("_"):
                candidates = [(node, False)]
            elif isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                candidates = [
                    (m, True)
                    for m in node.body
                    if isinstance(m, ast.FunctionDef)
                    and (not m.name.startswith("_") or m.name == "__init__")
                ]
            else:
                continue
            for fn, is_method in candidates:
                missing = _unannotated(fn, is_method)
                if missing:
                    gaps.append(f"{os.path.relpath(path, ROOT)}:{fn.lineno} {fn.name} {missing}")
    assert not gaps, gaps


def test_files_are_replaced_only_by_the_atomic_writer():
    """One atomic-write helper: no other module renames temp files into place."""
    writer = os.path.join(ROOT, "lgf", "utils", "atomic_write.py")
    offenders = [
        os.path.relpath(p, ROOT)
        for p in _python_files(*LIBRARY)
        if p != writer and ("os.replace(" in open(p).read() or "os.rename(" in open(p).read())
    ]
    assert not offenders, offenders


def test_no_comment_cites_the_old_design_file():
    files = list(_python_files(*LIBRARY)) + [
        os.path.join(ROOT, "tests", n) for n in sorted(os.listdir(os.path.join(ROOT, "tests")))
    ]
    cites = [p for p in files if p.endswith(".py") and "DESIGN.md" in open(p).read()]
    assert cites == [os.path.abspath(__file__)]  # this test names it
