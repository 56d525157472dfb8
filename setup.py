"""Build script for ipem's optional compiled kernels.

Project metadata lives in pyproject.toml; this file only adds the cffi
extension ``ipem.kernels._ckernels`` (C sources in ipem/kernels/).  Building
it is optional: without a working C compiler the install still succeeds (with
a warning) and ipem falls back to its NumPy kernels at run time.
"""
import sys

from setuptools import setup
from setuptools.command.build_ext import build_ext


class OptionalBuildExt(build_ext):
    """build_ext that turns a failed compilation into a warning."""

    def run(self):
        try:
            super().run()
        except Exception as exc:  # no compiler at all, broken toolchain, ...
            self._warn(exc)

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except Exception as exc:
            self._warn(exc, ext.name)

    @staticmethod
    def _warn(exc, name="ipem.kernels._ckernels"):
        bar = "*" * 72
        sys.stderr.write(
            f"\n{bar}\nWARNING: could not compile {name} ({type(exc).__name__}: {exc}).\n"
            "ipem will be installed without its compiled kernels and will use the\n"
            "slower NumPy kernels.  Install a C compiler (gcc) and reinstall ipem\n"
            f"to build them.\n{bar}\n\n")


setup(
    cffi_modules=["ipem/kernels/_build.py:ffibuilder"],
    cmdclass={"build_ext": OptionalBuildExt},
)
