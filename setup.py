import os
import subprocess
import sys
from pathlib import Path

from setuptools import Distribution, find_packages, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent
BUILD_KERNELS = os.environ.get("CCT_FAST_BUILD_KERNELS") == "1"


class KernelDistribution(Distribution):
    """A platform wheel, with build_ext run, when the kernels are built."""

    def has_ext_modules(self):
        return BUILD_KERNELS


class build_kernels(build_ext):
    """With CCT_FAST_BUILD_KERNELS=1, build the custom ops (CMakeLists.txt) into the package;
    without it, install the pure-Python package (the ops are optional)."""

    def run(self):
        if not BUILD_KERNELS:
            return
        editable = self.inplace or getattr(self, "editable_mode", False)
        package = ROOT / "cct_fast" if editable else Path(self.build_lib) / "cct_fast"
        build = ROOT / "build"
        # pip builds in an isolated environment without TensorFlow; CMake asks this same
        # interpreter for TensorFlow's flags, so it runs outside that isolation.
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONNOUSERSITE")}
        subprocess.run(["cmake", "-S", str(ROOT), "-B", str(build),
                        f"-DPython_EXECUTABLE={sys.executable}",
                        f"-DCCT_FAST_OUTPUT_DIR={package.resolve()}"], check=True, env=env)
        subprocess.run(["cmake", "--build", str(build), "-j", str(os.cpu_count() or 1)],
                       check=True, env=env)


setup(
    name="cct-fast",
    version="0.1.0",
    description="Compact Transformers (CCT, CVT, ViT-Lite) for Keras 3, identical to the official "
    "PyTorch models and fast on TensorFlow.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.10",
    packages=find_packages(include=["cct_fast", "cct_fast.*"]),
    install_requires=[
        "tensorflow>=2.16",  # Keras 3
        "keras>=3.3",
        "numpy",
        "ml_dtypes",
        "scikit-learn",  # the embedded digits dataset
        "matplotlib",  # training curves
    ],
    extras_require={
        # Reading legacy (pre-1.6) checkpoints; the zip-format reader needs no torch.
        "torch": ["torch>=2.1"],
        "onnx": ["tf2onnx>=1.16", "onnxruntime>=1.18"],
        # onnxruntime-gpu 1.27+ needs CUDA 13; TensorFlow 2.21 is built against CUDA 12.
        "gpu": ["tf2onnx>=1.16", "onnxruntime-gpu>=1.18,<1.27"],
        # The reference PyTorch is pinned to the CPU wheel; vit-pytorch, which holds the
        # official architecture, is installed with --no-deps (see README).
        "dev": ["pytest>=7", "pytest-benchmark>=4", "torch==2.13.0", "einops>=0.6",
                "tf2onnx>=1.16", "onnxruntime>=1.18"],
    },
    entry_points={"console_scripts": ["cct-fast=cct_fast.cli:main"]},
    cmdclass={"build_ext": build_kernels},
    distclass=KernelDistribution,
    classifiers=[
        "Programming Language :: Python :: 3",
        "License :: OSI Approved :: MIT License",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
