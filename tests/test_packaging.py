"""A fresh user's path: sdist -> wheel (--no-build-isolation) -> import and run the op from the
installed wheel, outside the repository; the version, build info and `python -m lgf_ops`."""

import json
import os
import re
import subprocess
import sys
import tarfile
import zipfile

import pytest
import torch

import lgf
import lgf_ops

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Run from outside the repository with only the installed wheel on the path: the op agrees with
# the reference, and the extension, build info and version come from the wheel.
RUN_FROM_WHEEL = """
import json, sys, torch, lgf, lgf_ops
site = sys.argv[1]
assert lgf_ops.__file__.startswith(site) and lgf.__file__.startswith(site), lgf_ops.__file__
info = lgf_ops.build_info()
assert info["extension"].startswith(site), info
x = torch.randn(2, 8, 9, 7, requires_grad=True)
block = lgf.LGF(8, gn_groups=4)
y = block(x)
y.sum().backward()
args = (block.weight, block.bias, block.global_context(x), block.effective_gate(), block.gamma)
ref = lgf_ops.lgf_fused_reference(x, *args)
torch.testing.assert_close(y.detach(), ref.detach(), rtol=1e-5, atol=1e-5)
print(json.dumps({"version": lgf.__version__, "auto": lgf_ops.resolve_backend("auto", x.device),
                  "info": info}))
"""


def git_files(under: str) -> list[str]:
    out = subprocess.run(
        ["git", "ls-files", under], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return out.stdout.split()


def build_env() -> dict[str, str]:
    # The CPU kernels only: what a machine without nvcc gets, and the sdist must not depend on it.
    return {**os.environ, "LGF_BUILD_CUDA": "0", "MAX_JOBS": os.environ.get("MAX_JOBS", "2")}


def run(cmd: list[str], cwd: str, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, (
        f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    )
    return proc.stdout


@pytest.fixture(scope="module")
def sdist(tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("sdist")
    cmd = [sys.executable, "setup.py", "-q", "egg_info", "--egg-base", str(out)]
    run(cmd + ["sdist", "-d", str(out)], ROOT, build_env())
    (archive,) = [p for p in os.listdir(out) if p.endswith(".tar.gz")]
    return str(out / archive)


def test_sdist_holds_every_source(sdist):
    with tarfile.open(sdist) as tar:
        names = {name.split("/", 1)[1] for name in tar.getnames() if "/" in name}
    wanted = git_files("csrc") + git_files("lgf") + git_files("lgf_ops") + git_files("train")
    wanted += ["setup.py", "pyproject.toml", "MANIFEST.in", "LICENSE", "README.md"]
    missing = [f for f in wanted if f not in names]
    assert not missing, f"missing from {os.path.basename(sdist)}: {missing}"
    assert any(n.endswith(".cuh") for n in names) and any(n.endswith(".cu") for n in names)
    built = [n for n in names if n.endswith(".so") or n.endswith("_build_info.json")]
    assert not built, f"build outputs in the sdist: {built}"


def test_wheel_from_sdist_runs_outside_the_repository(sdist, tmp_path):
    run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-build-isolation", "--no-deps"]
        + [sdist, "-w", str(tmp_path / "wheels")],
        str(tmp_path),
        build_env(),
    )
    (wheel,) = os.listdir(tmp_path / "wheels")
    site = tmp_path / "site"
    with zipfile.ZipFile(tmp_path / "wheels" / wheel) as zf:
        zf.extractall(site)
    away = tmp_path / "elsewhere"
    away.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site)}
    env.pop("LGF_BACKEND", None)
    report = json.loads(run([sys.executable, "-c", RUN_FROM_WHEEL, str(site)], str(away), env))
    assert report["version"] == lgf.__version__
    assert report["auto"] == "cpp"
    assert report["info"]["cpu_simd_compiled"], report["info"]
    assert report["info"]["built_with_torch"] == torch.__version__
    selftest = run([sys.executable, "-m", "lgf_ops"], str(away), env)
    assert "checks passed" in selftest and str(site) in selftest


def test_one_version_everywhere():
    assert lgf.__version__ == lgf_ops.__version__
    out = run([sys.executable, "setup.py", "--version"], ROOT, build_env())
    assert out.strip().splitlines()[-1] == lgf.__version__


def test_docs_point_at_nothing_outside_the_repository():
    """A clone has no ../shared: README.md and docs/ name no path outside the repository, and
    every relative link in them leads to a file of the repository."""
    for name in [*git_files("docs"), "README.md"]:
        if not name.endswith(".md"):
            continue
        path = os.path.join(ROOT, name)
        with open(path) as f:
            text = f.read()
        assert "../shared" not in text, f"{name} points at ../shared"
        for target in re.findall(r"\]\(([^)#\s]+)", text):
            if "://" in target:
                continue
            resolved = os.path.normpath(os.path.join(os.path.dirname(path), target))
            assert resolved.startswith(ROOT + os.sep), f"{name}: link {target} leaves the repo"
            assert os.path.exists(resolved), f"{name}: link {target} leads nowhere"


SETUP_TARGETS = """
import runpy, sys
sys.argv = ["setup.py", "--version"]
print(runpy.run_path("setup.py")["cuda_targets"]())
"""


def test_setup_records_the_targets_of_the_arch_list():
    env = {**build_env(), "TORCH_CUDA_ARCH_LIST": "7.5;8.0;9.0a;9.0+PTX"}
    out = run([sys.executable, "-c", SETUP_TARGETS], ROOT, env)
    assert out.strip().splitlines()[-1] == "['compute_90', 'sm_75', 'sm_80', 'sm_90', 'sm_90a']"


def test_recorded_targets_are_the_fatbinary_of_the_extension():
    """What build_info() says the CUDA code covers is what the built library holds."""
    info = lgf_ops.build_info()
    if "cuda" not in info["backends"]:
        pytest.skip("the extension has no CUDA kernels (built without nvcc or LGF_BUILD_CUDA=0)")
    if info["cuda_targets"] is None:
        pytest.fail("the extension has CUDA kernels but no recorded targets: rebuild it")
    from benchmarks.static.cuobjdump import ToolMissing, run_cuobjdump

    try:
        listing = run_cuobjdump(info["extension"], "--list-elf", "--list-ptx")
    except ToolMissing as e:
        pytest.skip(str(e))
    found = {f"sm_{a}" for a in re.findall(r"\.sm_(\w+)\.cubin", listing)}
    found |= {f"compute_{a}" for a in re.findall(r"\.sm_(\w+)\.ptx", listing)}
    assert found == set(info["cuda_targets"]), listing


@pytest.mark.parametrize("module, script", [("train", "lgf-train"), ("evaluate", "lgf-eval")])
def test_console_scripts_name_themselves_in_help(module, script, monkeypatch):
    """setup.py installs train/ as lgf_cli with these console scripts."""
    import importlib

    command = importlib.import_module(f"train.{module}")
    monkeypatch.setattr(sys, "argv", [f"/venv/bin/{script}"])
    assert command.build_parser().prog == script
    monkeypatch.setattr(sys, "argv", [f"/repo/train/{module}.py"])
    assert command.build_parser().prog == f"python -m train.{module}"
    with open(os.path.join(ROOT, "setup.py")) as f:
        assert f'"{script} = lgf_cli.{module}:main"' in f.read()
