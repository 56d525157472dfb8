#!/usr/bin/env bash
# One entry point for set-up, demo and tests (the README's two commands).
#   bash scripts/run.sh demo   # set up, then run the speaker-verification demo
#   bash scripts/run.sh test   # set up, then run the test suite with both kernel backends
#   bash scripts/run.sh setup  # only set up
# Set-up is idempotent: a virtualenv in .venv with ipem installed (its C kernels
# compiled), and, for the speech corpus, espeak-ng + MBROLA voices from Debian.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
VENV=${IPEM_VENV:-$ROOT/.venv}
PY=${PYTHON:-}
if [ -z "$PY" ]; then
  for cand in python3.11 python3 python; do
    if command -v "$cand" >/dev/null 2>&1; then PY=$cand; break; fi
  done
fi
[ -n "$PY" ] || { echo "error: no python3 found" >&2; exit 1; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null 2>&1; then sudo "$@"; else return 1; fi
}

apt_install() {
  # install Debian packages when we can (root or sudo); say what to run otherwise
  if command -v apt-get >/dev/null 2>&1 && as_root true 2>/dev/null; then
    as_root apt-get update -qq && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"
  else
    echo "error: please install the Debian packages: $*" >&2
    return 1
  fi
}

setup_python() {
  if [ ! -x "$VENV/bin/python" ]; then
    if ! "$PY" -m venv "$VENV" 2>/dev/null; then
      rm -rf "$VENV"
      ver=$("$PY" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
      apt_install "python${ver}-venv" || exit 1
      "$PY" -m venv "$VENV"
    fi
  fi
  # Python headers are needed to compile the cffi kernels
  inc=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
  if [ ! -f "$inc/Python.h" ]; then
    ver=$("$VENV/bin/python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
    apt_install "python${ver}-dev" || echo "warning: no Python headers: ipem will use its NumPy kernels" >&2
  fi
  # (re)install when the sources changed, or when the last install ended without the
  # compiled kernels (a compiler or headers may have been installed since)
  stamp="$VENV/.ipem-installed"
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != c ] || [ pyproject.toml -nt "$stamp" ] \
     || [ setup.py -nt "$stamp" ] \
     || [ -n "$(find ipem/kernels -newer "$stamp" \( -name '*.c' -o -name '*.h' -o -name '_build.py' \) 2>/dev/null)" ]; then
    rm -f ipem/kernels/_ckernels*.so          # never keep a stale build
    "$VENV/bin/python" -m pip install -q --upgrade pip setuptools wheel
    "$VENV/bin/python" -m pip install -q -e ".[mpi,speaker,test]"
    if "$VENV/bin/python" -c "import ipem.kernels._c" 2>/dev/null; then
      echo c > "$stamp"
    else
      echo numpy > "$stamp"
      echo "warning: ipem's C kernels could not be built (is gcc installed, and the Python" \
           "headers?): ipem will use its NumPy kernels" >&2
    fi
  fi
  "$VENV/bin/python" -W ignore -c "import ipem; print('ipem', ipem.__version__, 'kernels:', ipem.BACKEND)"
}

setup_speech() {
  # espeak-ng + MBROLA voices for the demo corpus (Debian contrib/non-free)
  if command -v espeak-ng >/dev/null 2>&1 && command -v sox >/dev/null 2>&1 \
     && [ "$(ls -d /usr/share/mbrola/*/ 2>/dev/null | wc -l)" -ge 8 ]; then
    return 0
  fi
  if as_root true 2>/dev/null; then
    as_root bash scripts/install_speech_deps.sh
  else
    bash scripts/install_speech_deps.sh || return 1
  fi
}

export PATH="$VENV/bin:$PATH"
cmd=${1:-}
case "$cmd" in
  setup)
    setup_python
    setup_speech
    ;;
  demo)
    setup_python
    setup_speech
    shift
    exec "$VENV/bin/python" -m ipem.demo "$@"
    ;;
  test)
    setup_python
    setup_speech || echo "warning: speech tools missing: corpus tests will be skipped" >&2
    shift
    # the whole suite once per kernel backend (the engines inherit the variable); tests
    # marked "once" (cluster life cycle, notebooks, generated-corpus end-to-end runs) run in
    # the first pass only
    if [ "$(cat "$VENV/.ipem-installed")" = c ]; then
      IPEM_KERNEL_BACKEND=c "$VENV/bin/python" -m pytest "$@"
      IPEM_KERNEL_BACKEND=numpy "$VENV/bin/python" -m pytest -m "not once" "$@"
    else
      echo "warning: no compiled kernels: running the suite with the NumPy backend only" >&2
      export IPEM_ALLOW_NO_C=1
      IPEM_KERNEL_BACKEND=numpy "$VENV/bin/python" -m pytest "$@"
    fi
    ;;
  bench)
    # the benchmarks of benchmarks/RESULTS.md, with their peers (faiss-cpu,
    # scikit-learn-intelex where it installs); run on a quiet machine
    setup_python
    setup_speech
    "$VENV/bin/python" -m pip install -q -e ".[mpi,speaker,test,bench]" \
      || "$VENV/bin/python" -m pip install -q faiss-cpu psutil
    shift
    out=benchmarks/RESULTS.md
    "$VENV/bin/python" benchmarks/run.py --out "$out" "$@"
    "$VENV/bin/python" benchmarks/steps.py --out "$out"
    "$VENV/bin/python" benchmarks/approx_eer.py --out "$out"
    "$VENV/bin/python" benchmarks/scale.py --out "$out"
    "$VENV/bin/python" benchmarks/conditions.py --out "$out"
    "$VENV/bin/python" benchmarks/generalise.py --out "$out"   # needs codec2 (c2enc/c2dec)
    ;;
  *)
    echo "usage: bash scripts/run.sh {demo|test|bench|setup} [args]" >&2
    exit 2
    ;;
esac
