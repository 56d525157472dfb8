"""Build script for ipem's optional compiled kernels.

Project metadata lives in pyproject.toml; this file only adds the cffi
extension ``ipem.kernels._ckernels`` (C sources in ipem/kernels/).  Building
it is optional: without a working C compiler the install still succeeds (with
a warning) and ipem falls back to its NumPy kernels at run time.

The extension uses CPython's limited API only (cffi defines ``Py_LIMITED_API``
and names it ``_ckernels.abi3.so``), so the wheel is tagged ``abi3`` from the
oldest Python ipem supports: one wheel per platform serves every later
CPython.  Debug and free-threaded interpreters have no limited API (cffi
builds a version-specific module there); their wheels keep the version tag.

A build reuses ``build/lib*``; files an earlier build left there that this one
does not write (modules since moved or deleted) are removed first, so that a
wheel holds the current sources only.
"""
import os
import sys
import sysconfig

from setuptools import setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py

#: ``requires-python``'s floor (pyproject.toml), the oldest CPython of the abi3 tag
LIMITED_API_FLOOR = "cp310"


def limited_api_available():
    """Whether cffi builds the extension for the limited API on this interpreter."""
    return not (hasattr(sys, "gettotalrefcount") or sysconfig.get_config_var("Py_GIL_DISABLED"))


class CleanBuildPy(build_py):
    """build_py that first deletes stale files from the build directory."""

    def run(self):
        keep = {os.path.abspath(p) for p in self.get_outputs()}
        keep.update(os.path.abspath(p)
                    for p in self.get_finalized_command("build_ext").get_outputs())
        for top in sorted({p.split(".")[0] for p in self.packages or ()}):
            for dirpath, _, files in os.walk(os.path.join(self.build_lib, top)):
                for name in files:
                    path = os.path.abspath(os.path.join(dirpath, name))
                    if path not in keep:
                        os.remove(path)
        super().run()


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
    cmdclass={"build_ext": OptionalBuildExt, "build_py": CleanBuildPy},
    options={"bdist_wheel": {"py_limited_api": LIMITED_API_FLOOR}}
    if limited_api_available() else {},
)
