"""cffi build script for ipem's compiled kernels (out-of-line, API mode).

Used by setup.py through ``cffi_modules=["ipem/kernels/_build.py:ffibuilder"]``;
it can also be run directly (``python ipem/kernels/_build.py``) to build
``ipem/kernels/_ckernels*.so`` in place.

The cdef is the part of ``ipem_kernels.h`` between the ``CDEF BEGIN`` and
``CDEF END`` markers.  Compile flags: ``-O3`` only, plus ``-fno-math-errno``;
no ``-march=native`` (wheels must run on other machines: the C code picks
AVX2/AVX-512 paths at run time) and no ``-ffast-math`` (the kernels rely on
IEEE inf/NaN behaviour; their reductions are vectorised explicitly).
"""
import glob
import os
import re
import sys

from cffi import FFI

HERE = os.path.dirname(os.path.abspath(__file__))
HEADER = os.path.join(HERE, "ipem_kernels.h")
SOURCE = os.path.join(HERE, "ipem_kernels.c")


def _rel(path):
    # setuptools wants relative source paths; the build runs from the project root
    try:
        return os.path.relpath(path)
    except ValueError:  # other drive on Windows
        return path


def read_cdef(header=HEADER):
    with open(header, encoding="utf-8") as f:
        text = f.read()
    match = re.search(r"/\* CDEF BEGIN \*/(.*?)/\* CDEF END \*/", text, re.S)
    if match is None:
        raise RuntimeError(f"no CDEF BEGIN/END section in {header}")
    return match.group(1)


def headers():
    """Every C header of the kernels (ipem_kernels.c includes them), sorted."""
    return sorted(glob.glob(os.path.join(HERE, "*.h")))


def compile_args():
    if sys.platform == "win32":
        return ["/O2"]
    return ["-O3", "-fno-math-errno", "-Wno-psabi", "-pthread"]


def make_ffibuilder():
    builder = FFI()
    builder.cdef(read_cdef())
    builder.set_source(
        "ipem.kernels._ckernels",
        '#include "ipem_kernels.h"\n',
        sources=[_rel(SOURCE)],
        include_dirs=[_rel(HERE)],
        depends=[_rel(h) for h in headers()],
        extra_compile_args=compile_args(),
        extra_link_args=[] if sys.platform == "win32" else ["-pthread"],
        libraries=[] if sys.platform == "win32" else ["m"],
    )
    return builder


ffibuilder = make_ffibuilder()

if __name__ == "__main__":
    # build in place (ipem/kernels/_ckernels*.so); the package root is two levels up
    root = os.path.dirname(os.path.dirname(HERE))
    os.chdir(root)
    make_ffibuilder().compile(tmpdir=root, verbose=True)
