"""Special files given as files (issue 22): a FIFO, /dev/zero or a link to it, for every
file option of every command and for every reader of the library.

Before, a FIFO as ``--ubm`` blocked forever, ``/dev/zero`` as ``--ubm`` or
``--calibration`` ran out of memory and a ``--checkpoint`` linked to ``/dev/zero``
grew to 21.8 GB.  Each is now refused at once, in one line that names the option
and the file.  The command-line cases run in one child process, each under an
alarm, so that a case that blocks fails instead of hanging the suite.
"""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from ipem.cli.main import build_parser
from ipem.cli.options import CHECKPOINT, IMAGE, INPUT_DIR, INPUT_FILE, OUTPUT_DIR, OUTPUT_FILE

pytestmark = pytest.mark.hostile

#: How each kind of special file is named in the error.
KINDS = {"fifo": "a FIFO (named pipe)", "dev-zero": "a character device",
         "link-to-dev-zero": "a character device"}
#: What each role gets when it is not the option under test.
PLAIN = {INPUT_FILE: "plain.txt", INPUT_DIR: "dir", OUTPUT_FILE: "out/result.npz",
         CHECKPOINT: "out/ckpt.npz", IMAGE: "out/plot.png", OUTPUT_DIR: "out/dir"}


def _file_options():
    """(command, option, role) for every file option of every command."""
    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    cases = []
    for name, sp in sub.choices.items():
        for p in sp.paths:
            if p.role in (INPUT_FILE, CHECKPOINT, OUTPUT_FILE, IMAGE):
                cases.append((name, p.option, p.role))
    return cases, sub.choices


FILE_OPTIONS, _PARSERS = _file_options()


def _argv(command, option, special):
    """Arguments of ``command`` with ``special`` for ``option`` and plain values elsewhere."""
    sp = _PARSERS[command]
    argv = [command]
    for p in sp.paths:
        action = next(a for a in sp._actions if a.dest == p.dest)
        if p.option == option:
            argv += [option, special]
        elif action.required:
            argv += [p.option, PLAIN[p.role]]
    return argv


def _specials(tmp):
    fifo = os.path.join(tmp, "fifo.npz")
    os.mkfifo(fifo)
    link = os.path.join(tmp, "zero.npz")
    os.symlink("/dev/zero", link)
    return {"fifo": fifo, "dev-zero": "/dev/zero", "link-to-dev-zero": link}


def _cases():
    out = []
    for command, option, role in FILE_OPTIONS:
        # outputs are never given /dev/zero itself: were the check missing, running as root,
        # the write's final rename would replace the device
        kinds = ("fifo", "link-to-dev-zero") if role in (OUTPUT_FILE, IMAGE) else tuple(KINDS)
        out += [pytest.param(command, option, kind, id=f"{command}-{option}-{kind}")
                for kind in kinds]
    return out


_CHILD = textwrap.dedent("""
    import contextlib, io, json, resource, signal, sys
    resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))
    from ipem.cli import main

    class Hung(BaseException):
        pass

    def alarm(signum, frame):
        raise Hung()

    signal.signal(signal.SIGALRM, alarm)
    results = {}
    for key, argv in json.loads(sys.stdin.read()):
        err = io.StringIO()
        signal.alarm(10)
        try:
            with contextlib.redirect_stderr(err):
                rc = main(argv)
        except Hung:
            rc = "hung"
        except BaseException as exc:
            rc = f"raised {type(exc).__name__}: {exc}"
        finally:
            signal.alarm(0)
        results[key] = [rc, err.getvalue()]
    print(json.dumps(results))
""")


@pytest.fixture(scope="module")
def cli_results(tmp_path_factory):
    """Every case run by ``main`` in one child process: key -> (exit status, stderr)."""
    tmp = str(tmp_path_factory.mktemp("special"))
    os.makedirs(os.path.join(tmp, "dir"))
    os.makedirs(os.path.join(tmp, "out"))
    open(os.path.join(tmp, "plain.txt"), "w").close()
    specials = _specials(tmp)
    jobs = [(f"{c}|{o}|{k}", _argv(c, o, specials[k]))
            for c, o, r in FILE_OPTIONS for k in KINDS]
    proc = subprocess.run([sys.executable, "-c", _CHILD], input=json.dumps(jobs), cwd=tmp,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1]), specials, tmp


def test_every_file_option_is_covered():
    options = {(c, o) for c, o, _ in FILE_OPTIONS}
    assert ("train-ubm", "--checkpoint") in options and ("adapt", "--ubm") in options
    assert ("evaluate", "--calibration") in options and ("score", "--trials") in options
    assert len(options) >= 30


@pytest.mark.parametrize("command, option, kind", _cases())
def test_cli_refuses_special_file_at_once(cli_results, command, option, kind):
    results, specials, tmp = cli_results
    rc, err = results[f"{command}|{option}|{kind}"]
    assert rc == 1, (rc, err)
    assert err.count("\n") == 1, err
    assert err == (f"ipem {command}: error: {option} {specials[kind]} is {KINDS[kind]}, "
                   "not a regular file\n")
    if kind == "link-to-dev-zero":
        assert os.path.islink(specials[kind])       # not replaced by an output
    assert not os.listdir(os.path.join(tmp, "out"))  # no partial output


# --------------------------------------------------------------------------------------
# the library's readers, without the command line's checks
# --------------------------------------------------------------------------------------

_READERS = {
    "model": "ipem.io.models:load_model", "npz": "ipem.io.models:read_npz",
    "ivectors": "ipem.ivector.extraction:load_ivectors",
    "extractor": "ipem.ivector.extraction:read_extractor",
    "backend": "ipem.ivector.backend:IvectorBackend.load",
    "calibration": "ipem.speaker.calibration:load_calibration",
    "list": "ipem.io.lists:read_list", "trials": "ipem.speaker.scorefiles:read_trials",
    "key": "ipem.speaker.scorefiles:read_key",
    "scores": "ipem.speaker.scorefiles:read_score_file",
    "features": "ipem.io:describe", "audio": "ipem.speaker.frontend:read_audio",
}

_READ_CHILD = textwrap.dedent("""
    import importlib, json, resource, signal, sys
    resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))

    class Hung(BaseException):
        pass

    def alarm(signum, frame):
        raise Hung()

    signal.signal(signal.SIGALRM, alarm)
    results = {}
    for key, target, path in json.loads(sys.stdin.read()):
        module, name = target.split(":")
        fn = importlib.import_module(module)
        for part in name.split("."):
            fn = getattr(fn, part)
        signal.alarm(10)
        try:
            fn(path)
            results[key] = "no error"
        except Hung:
            results[key] = "hung"
        except Exception as exc:
            results[key] = f"{type(exc).__name__}: {exc}"
        finally:
            signal.alarm(0)
    print(json.dumps(results))
""")


@pytest.fixture(scope="module")
def read_results(tmp_path_factory):
    """Every reader on every special file, in one child process: key -> outcome."""
    specials = _specials(str(tmp_path_factory.mktemp("special-readers")))
    jobs = [(f"{r}|{k}", target, specials[k] + (".htk" if r == "features" else ""))
            for r, target in _READERS.items() for k in ("fifo", "link-to-dev-zero")]
    for _, _, path in jobs:
        if path.endswith(".htk") and not os.path.lexists(path):
            os.symlink(path[:-4], path)
    proc = subprocess.run([sys.executable, "-c", _READ_CHILD], input=json.dumps(jobs),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1]), specials


@pytest.mark.parametrize("kind", ["fifo", "link-to-dev-zero"])
@pytest.mark.parametrize("reader", list(_READERS))
def test_readers_refuse_special_files(read_results, reader, kind):
    results, specials = read_results
    msg = results[f"{reader}|{kind}"]
    assert "\n" not in msg
    assert specials[kind] in msg and f"{KINDS[kind]}, not a regular file" in msg, msg


def test_read_npz_bounds_the_file_size(tmp_path):
    from ipem.io.models import max_file_bytes, read_npz
    path = tmp_path / "big.npz"
    with open(path, "wb") as fh:
        fh.truncate(max_file_bytes({"x": 16}) + 1)     # sparse: no disk used
    with pytest.raises(ValueError) as exc:
        read_npz(path, {"x": 16})
    assert str(exc.value).startswith(f"{path}: cannot read the model file (")
    assert "bytes, more than the" in str(exc.value)
    np.savez(tmp_path / "ok.npz", x=np.zeros(2))
    assert read_npz(tmp_path / "ok.npz", {"x": 16})["x"].shape == (2,)
