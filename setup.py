"""Builds and installs ddad_fast. Install torch first (the Makefile does), so that the torch
requirement below is already met and never pulls a multi-GB CUDA build.

The extension ``ddad_fast._C`` is built from every ``csrc/*.cpp`` (the CPU part, always) and, where
``CUDA_HOME`` is set and torch was built with CUDA, also ``csrc/cuda/*.cu`` and ``csrc/cuda/*.cpp``
(compiled with ``-DDDAD_WITH_CUDA``). ``MAX_JOBS`` limits ninja's parallel jobs. The C++ standard is
torch's own choice (C++17 or C++20, by torch version). ``TORCH_CUDA_ARCH_LIST`` picks the GPU
architectures; where it is unset and no GPU is visible, the build targets Hopper (``9.0+PTX``).
"""

import glob
import os
import warnings

from setuptools import setup

DEFAULT_CUDA_ARCHS = "9.0+PTX"  # sm_90 machine code, and PTX that newer GPUs compile at load


def choose_cuda_archs() -> None:
    """Sets ``TORCH_CUDA_ARCH_LIST`` to Hopper where it is unset and no GPU is visible (torch would
    otherwise ask the absent GPU); a user's setting always wins."""
    import torch

    if os.environ.get("TORCH_CUDA_ARCH_LIST") or torch.cuda.device_count() > 0:
        return
    os.environ["TORCH_CUDA_ARCH_LIST"] = DEFAULT_CUDA_ARCHS
    print(f"ddad_fast: no GPU visible, building the CUDA part for {DEFAULT_CUDA_ARCHS}")


def extension_build():
    """(ext_modules, cmdclass) for ddad_fast._C; empty when there are no C++ sources."""
    import torch
    from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension

    cpu_sources = sorted(glob.glob("csrc/*.cpp"))
    cuda_sources = sorted(glob.glob("csrc/cuda/*.cu") + glob.glob("csrc/cuda/*.cpp"))
    if not cpu_sources:
        return [], {}
    cxx = ["-O3", "-fopenmp"]
    with_cuda = bool(cuda_sources) and CUDA_HOME is not None and torch.version.cuda is not None
    if cuda_sources and not with_cuda:
        warnings.warn(
            "building ddad_fast._C without its CUDA part: "
            + ("CUDA_HOME is not set" if CUDA_HOME is None else "this torch has no CUDA"),
            stacklevel=1,
        )
    if with_cuda:
        choose_cuda_archs()
        ext = CUDAExtension(
            "ddad_fast._C",
            cpu_sources + cuda_sources,
            extra_compile_args={
                "cxx": cxx + ["-DDDAD_WITH_CUDA"],
                "nvcc": ["-O3", "-DDDAD_WITH_CUDA", "--use_fast_math"],
            },
            extra_link_args=["-fopenmp"],
        )
    else:
        ext = CppExtension(
            "ddad_fast._C", cpu_sources, extra_compile_args=cxx, extra_link_args=["-fopenmp"]
        )
    return [ext], {"build_ext": BuildExtension.with_options(use_ninja=True)}


ext_modules, cmdclass = extension_build()

setup(
    name="ddad_fast",
    version="0.1.0",
    description="Data-free knowledge distillation by Dual Discriminator Adversarial Distillation",
    packages=[
        "ddad_fast",
        "ddad_fast.data",
        "ddad_fast.models",
        "ddad_fast.ops",
        "ddad_fast.kernels",
    ],
    package_dir={"ddad_fast.kernels": "kernels"},
    python_requires=">=3.10",
    install_requires=["torch>=2.4", "numpy", "scikit-learn", "tqdm", "matplotlib", "pillow"],
    extras_require={
        # triton: the CUDA kernels, and their tests under TRITON_INTERPRET=1 on CPU (Linux wheels
        # only; CUDA torch wheels bring their own).
        "dev": [
            "pytest",
            "pytest-benchmark",
            "ruff",
            "ninja",
            "pybind11",
            'triton>=3.2; platform_system == "Linux"',
        ]
    },
    entry_points={"console_scripts": ["ddad = ddad_fast.cli:main"]},
    ext_modules=ext_modules,
    cmdclass=cmdclass,
)
