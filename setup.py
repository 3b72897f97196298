"""Builds and installs ddad_fast. Install torch first (the Makefile does), so that the torch
requirement below is already met and never pulls a multi-GB CUDA build."""

from setuptools import find_packages, setup

setup(
    name="ddad_fast",
    version="0.1.0",
    description="Data-free knowledge distillation by Dual Discriminator Adversarial Distillation",
    packages=find_packages(include=["ddad_fast", "ddad_fast.*"]),
    python_requires=">=3.10",
    install_requires=["torch>=2.4", "numpy", "scikit-learn", "tqdm", "matplotlib", "pillow"],
    extras_require={"dev": ["pytest", "pytest-benchmark", "ruff", "ninja", "pybind11"]},
    entry_points={"console_scripts": ["ddad = ddad_fast.cli:main"]},
)
