import os
import subprocess
import sys
from pathlib import Path

from setuptools import Distribution, setup
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
        subprocess.run(
            [
                "cmake",
                "-S",
                str(ROOT),
                "-B",
                str(build),
                f"-DPython_EXECUTABLE={sys.executable}",
                f"-DCCT_FAST_OUTPUT_DIR={package.resolve()}",
            ],
            check=True,
            env=env,
        )
        subprocess.run(
            ["cmake", "--build", str(build), "-j", str(os.cpu_count() or 1)], check=True, env=env
        )


# Everything else is in pyproject.toml; this file only adds the optional kernel build.
setup(cmdclass={"build_ext": build_kernels}, distclass=KernelDistribution)
