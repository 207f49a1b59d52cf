"""Builds lgf_ops._C: the C++ CPU kernels always, the CUDA kernels when nvcc is available.

Environment switches:
  LGF_BUILD_CUDA=0        never build the CUDA sources
  FORCE_CUDA=1            build them even if nvcc/CUDA_HOME is not found (fails if it is absent)
  TORCH_CUDA_ARCH_LIST    CUDA architectures (default "8.0;9.0+PTX"); no GPU is needed to build
  MAX_JOBS                parallel compile jobs (ninja)
The build never calls torch.cuda.is_available(): it works on machines without a GPU.
"""

import glob
import json
import os
import re
import shutil
import subprocess
import sys

from setuptools import find_packages, setup

ROOT = os.path.dirname(os.path.abspath(__file__))


# The row-kernel files compiled for the CPU, one per SIMD level (csrc/cpu/row_kernels_<level>.cpp).
ROW_KERNELS = re.compile(r"row_kernels_(\w+)\.cpp$")


def read_version():
    """The one version string, kept in lgf_ops/_version.py (lgf and lgf_ops both export it)."""
    with open(os.path.join(ROOT, "lgf_ops", "_version.py")) as f:
        match = re.search(r'^__version__ = "([^"]+)"$', f.read(), re.M)
    if match is None:
        raise RuntimeError('lgf_ops/_version.py must hold a line __version__ = "X.Y.Z"')
    return match.group(1)


def log(msg):
    print(f"[lgf setup] {msg}", file=sys.stderr, flush=True)


def _find_cuda_home():
    home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")
    if home and os.path.exists(os.path.join(home, "bin", "nvcc")):
        return home
    # The `nvcc` on PATH may be a wrapper script; prefer a real toolkit directory.
    for cand in ("/usr/local/cuda",):
        if os.path.exists(os.path.join(cand, "bin", "nvcc")):
            return cand
    nvcc = shutil.which("nvcc")
    if nvcc:
        return os.path.dirname(os.path.dirname(os.path.realpath(nvcc)))
    return None


def want_cuda():
    if os.environ.get("LGF_BUILD_CUDA", "").strip() == "0":
        log("LGF_BUILD_CUDA=0: building the CPU kernels only")
        return None
    home = _find_cuda_home()
    if os.environ.get("FORCE_CUDA", "").strip() == "1":
        if home is None:
            raise RuntimeError("FORCE_CUDA=1 but no CUDA toolkit (nvcc) was found; set CUDA_HOME")
        return home
    if home is None:
        log("no nvcc / CUDA_HOME found: building the CPU kernels only")
    return home


def extensions():
    cuda_home = want_cuda()
    if cuda_home is not None:
        # torch.utils.cpp_extension reads CUDA_HOME at import time: set it before importing it.
        os.environ["CUDA_HOME"] = cuda_home
        os.environ.setdefault("TORCH_CUDA_ARCH_LIST", "8.0;9.0+PTX")
    from torch.utils.cpp_extension import CppExtension, CUDAExtension

    common = sorted(glob.glob(os.path.join("csrc", "*.cpp")))
    cpu = sorted(glob.glob(os.path.join("csrc", "cpu", "*.cpp")))
    cuda = sorted(glob.glob(os.path.join("csrc", "cuda", "*.cu")))
    # -fopenmp: ATen's at::parallel_for is an inline OpenMP loop in torch's headers, so the
    # extension itself must be compiled with OpenMP or every kernel runs on one thread.
    cxx = ["-O3", "-std=c++20", "-fvisibility=hidden", "-fopenmp"]
    if os.environ.get("LGF_DEBUG", "") == "1":
        cxx = ["-O0", "-g", "-std=c++20", "-fopenmp"]
    link = ["-fopenmp"]
    define_macros = []
    include_dirs = [os.path.join(ROOT, "csrc")]
    if cuda_home is not None and cuda:
        import torch.utils.cpp_extension as ce

        ce.CUDA_HOME = cuda_home  # in case torch guessed another directory before us
        # -ftz=true -prec-div=false: fp32 device code flushes denormals and divides with the
        # fast reciprocal, so the sigmoids of lgf_math.h are one MUFU.EX2 + one MUFU.RCP each
        # (IEEE division and denormal handling cost ~7 more instructions per sigmoid). The error
        # (<= 2 ulp per division) is far below the fp32 test tolerance; fp64 is unaffected.
        nvcc = ["-O3", "-std=c++20", "--threads", "2", "-lineinfo", "--expt-relaxed-constexpr"]
        nvcc += ["-ftz=true", "-prec-div=false"]
        log(
            f"building CPU + CUDA kernels (CUDA_HOME={cuda_home}, "
            f"TORCH_CUDA_ARCH_LIST={os.environ['TORCH_CUDA_ARCH_LIST']}, {len(cuda)} .cu files)"
        )
        return [
            CUDAExtension(
                "lgf_ops._C",
                common + cpu + cuda,
                include_dirs=include_dirs,
                define_macros=define_macros + [("LGF_WITH_CUDA", None)],
                extra_compile_args={"cxx": cxx, "nvcc": nvcc},
                extra_link_args=link,
            )
        ]
    log(f"building CPU kernels ({len(common + cpu)} .cpp files)")
    return [
        CppExtension(
            "lgf_ops._C",
            common + cpu,
            include_dirs=include_dirs,
            define_macros=define_macros,
            extra_compile_args={"cxx": cxx},
            extra_link_args=link,
        )
    ]


def nvcc_version(cuda_home):
    out = subprocess.run(
        [os.path.join(cuda_home, "bin", "nvcc"), "--version"], capture_output=True, text=True
    ).stdout
    match = re.search(r"release ([0-9.]+)", out)
    return match.group(1) if match else None


def cuda_targets():
    """What the fatbinary holds, from the flags torch gives nvcc: ["sm_80", "sm_90", "compute_90"]
    (sm_XY: machine code for compute capability X.Y; compute_XY: PTX the driver compiles)."""
    from torch.utils.cpp_extension import _get_cuda_arch_flags

    targets = []
    for flag in _get_cuda_arch_flags():
        for code in re.findall(r",code=\[?([\w,]+)\]?", flag):
            targets += [c for c in code.split(",") if c not in targets]
    return sorted(targets)


def build_info(ext):
    """Facts about this build that the compiled library cannot tell (lgf_ops.build_info())."""
    import torch

    is_cuda = any(src.endswith(".cu") for src in ext.sources)
    cuda_home = os.environ.get("CUDA_HOME") if is_cuda else None
    return {
        "version": read_version(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "nvcc": nvcc_version(cuda_home) if cuda_home else None,
        "cuda_targets": cuda_targets() if is_cuda else [],
        "cpu_simd_compiled": [
            m.group(1) for m in map(ROW_KERNELS.search, sorted(ext.sources)) if m is not None
        ],
    }


def build_ext_cls():
    from torch.utils.cpp_extension import BuildExtension

    base = BuildExtension.with_options(use_ninja=True)

    class BuildExtensionWithInfo(base):
        """Writes lgf_ops/_build_info.json next to the built lgf_ops._C (in place or in the
        build directory a wheel is made from)."""

        def run(self):
            super().run()
            for ext in self.extensions:
                path = os.path.join(
                    os.path.dirname(self.get_ext_fullpath(ext.name)), "_build_info.json"
                )
                with open(path, "w") as f:
                    json.dump(build_info(ext), f, indent=1)
                log(f"wrote {path}")

    return BuildExtensionWithInfo


setup(
    name="lgf",
    version=read_version(),
    description=(
        "Local-Global Fusion for small-object detection: fused CPU/CUDA/Triton op, blocks, "
        "RetinaNet, trainer"
    ),
    license="MIT",
    # The command layer train/ installs as `lgf_cli` (a top-level `train` package would collide
    # with other projects); from a checkout it runs as `python -m train.<command>`.
    packages=find_packages(include=["lgf_ops", "lgf_ops.*", "lgf", "lgf.*"]) + ["lgf_cli"],
    package_dir={"lgf_cli": "train"},
    ext_modules=extensions(),
    cmdclass={"build_ext": build_ext_cls()},
    python_requires=">=3.11",
    install_requires=["torch>=2.4", "torchvision", "numpy", "pycocotools", "tqdm"],
    extras_require={
        "plot": ["matplotlib"],
        "triton": ["triton"],
        "tensorboard": ["tensorboard"],  # the trainer's --tensorboard
        "test": ["pytest", "tensorboard"],
        "export": ["onnx", "onnxscript", "onnxruntime"],
    },
    entry_points={
        "console_scripts": [
            "lgf-train = lgf_cli.train:main",
            "lgf-eval = lgf_cli.evaluate:main",
        ]
    },
)
