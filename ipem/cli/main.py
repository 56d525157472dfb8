"""ipem: GMM-UBM and i-vector speaker verification in Kaldi-like steps with files in between.

    ipem extract   --root CORPUS --out-dir FEATS [--list LIST ...] [--format htk|npy|h5|kaldi]
    ipem extract   --data-dir DATA --out-dir DATA_FEATS      (Kaldi data dir: wav.scp -> ark/scp)
    ipem train-ubm --features FEATS --list CORPUS/ubm.lst --root CORPUS -K 64 --out ubm.npz
    ipem adapt     --ubm ubm.npz --enroll CORPUS/enroll.lst --features FEATS --root CORPUS --out-dir MODELS
    ipem score     --ubm ubm.npz --models MODELS --trials CORPUS/trials.lst --features FEATS --root CORPUS --out scores.txt
    ipem norm      --ubm ubm.npz --models MODELS --scores scores.txt --cohort cohort.lst --cohort-models CMODELS --features FEATS --root CORPUS --method s --out snorm.txt
    ipem calibrate --dev-scores scores.txt [more.txt ...] [--key dev.key] --out cal.json
    ipem evaluate  --scores scores.txt [--key eval.key] [--calibration cal.json] [--det det.png]
    ipem train-ivector    --ubm ubm.npz --list CORPUS/ubm.lst --features FEATS --root CORPUS -R 100 --out tv.npz
    ipem extract-ivectors --extractor tv.npz --enroll enroll.lst --list test.lst --features FEATS --root CORPUS --out ivecs.npz
    ipem train-plda       --ivectors train_ivecs.npz [--spk2utt LIST] --out backend.npz
    ipem score --backend cosine|plda --ivectors ivecs.npz --plda backend.npz --trials CORPUS/trials.lst --out scores.txt
    ipem demo      [--out DIR]

train-ubm, adapt, score and norm take --data-dir DATA_FEATS (a Kaldi data directory
with feats.scp, utt2spk, spk2utt) instead of --features/--root: lists then name
utterance ids, and adapt's speakers default to spk2utt.  score --scoring linear
scores by one matrix product (Glembek et al. 2009).

Every step takes --cluster to choose where it runs: local (in-process, the
default), local:N (N shards in-process, BLAS pinned like engines), mpi:N (start
a local ipyparallel cluster of N MPI engines for the step) or profile:DIR
(connect to a running 'ipcluster start --profile-dir=DIR --engines=MPI').

Before any work (and before a cluster starts) a step checks the paths it is
given: inputs exist and can be read, outputs can be written (their directory
exists and is writable, and they are not directories); then its lists and
the headers of every feature file it will read.  A step that writes a
directory (extract, adapt) writes it all or nothing.

An error is one line 'ipem <command>: error: ...' on stderr; the exit status
is 2 for a wrong command line, 1 for anything that goes wrong while running.
SIGTERM and SIGINT stop a step cleanly (engines stopped, the last checkpoint
kept): one line on stderr and exit status 128 + the signal number.  Output
into a pipe that closes early ('ipem evaluate ... | head -1') ends quietly
with status 141 (128 + SIGPIPE), as a shell tool killed by SIGPIPE would.

--quiet prints errors only (the one-line error, or the line of a signal that
stopped the step): no result line, report, progress bar, iteration line,
warning or log below ERROR; the exit status and the files say the rest.
Progress into a terminal is a bar; into a file or pipe (a batch log) it is
a line every few seconds (:mod:`ipem.progress`).
"""
from __future__ import annotations

import contextlib
import logging
import os
import re
import select
import signal
import sys
import threading
import warnings

from .. import __version__
from ..errors import ParameterError
from ..parallel.clusters import parse_cluster_spec, raise_terminated
from .backend import CALIBRATE, EVALUATE
from .demo import DEMO
from .extract import EXTRACT
from .gmm import ADAPT, NORM, SCORE
from .ivector import EXTRACT_IVECTORS, TRAIN_IVECTOR, TRAIN_PLDA
from ..io.atomic import destinations_named
from .options import Parser, UsageError, check_paths, written_by
from .ubm import TRAIN_UBM

__all__ = ["COMMANDS", "build_parser", "main"]

#: The file of a :class:`ipem.io.atomic.WriteError`, however deep in a message it is.
_WRITTEN = re.compile(r"cannot write (\S+): ")

#: The commands, in the order ``ipem --help`` lists them: adding a command is a
#: :class:`~ipem.cli.options.Command` in a module of its own (or of its family) and a line here.
COMMANDS = (
    EXTRACT,
    TRAIN_UBM,
    ADAPT,
    SCORE,
    TRAIN_IVECTOR,
    EXTRACT_IVECTORS,
    TRAIN_PLDA,
    EVALUATE,
    CALIBRATE,
    NORM,
    DEMO,
)


def build_parser():
    """The ``ipem`` argument parser (one subparser per command of :data:`COMMANDS`)."""
    p = Parser(prog="ipem", description=__doc__)
    p.add_argument("--version", action="version", version=f"ipem {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser,
                           metavar="COMMAND")
    for command in COMMANDS:
        command.add_to(sub)
    return p


def _message(args, exc):
    """The one-line error message of ``exc``, in the command's terms."""
    if isinstance(exc, ParameterError):
        text = exc.render(args.parser.parameters, args.spec.hint(exc.hint))
    else:
        text = str(exc)
    message = " ".join(line.strip() for line in text.splitlines() if line.strip())
    written = _WRITTEN.search(message)
    if written:      # a full disk, a size limit: name the destination and its option
        message = destinations_named(message)
        found = written_by(args, args.parser.paths, destinations_named(written.group(1)))
        if found:
            message = f"{found[0]} {found[1]}: {message}"
    if isinstance(exc, MemoryError):
        message = f"out of memory ({message or type(exc).__name__})"
    return message


def _log_handler(args):
    """A stderr handler on the ``ipem`` logger at the level ``--quiet``/``-v`` ask for."""
    level = logging.ERROR if args.quiet else \
        {0: logging.WARNING, 1: logging.INFO}.get(args.verbose, logging.DEBUG)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handler.setLevel(level)
    logger = logging.getLogger("ipem")
    logger.addHandler(handler)
    logger.setLevel(level)
    return handler


@contextlib.contextmanager
def _quiet(quiet):
    """``--quiet``: what the step prints on stdout and its warnings go nowhere (its
    errors still reach :func:`main`, which prints them on stderr)."""
    if not quiet:
        yield
        return
    with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull), \
            warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _stdout_closed():
    """Whether the reader of stdout is gone (a pipe whose other end closed)."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))
    except (OSError, ValueError, AttributeError):   # no descriptor (captured), or no poll
        return False


def _closed_pipe():
    """End quietly after the reader of stdout went away; returns 128 + SIGPIPE.

    Later writes (and Python's own flush at exit) go to ``/dev/null``
    instead of raising again.
    """
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # stdout without a file descriptor (captured in-process)
        pass
    return 128 + int(signal.SIGPIPE)


def main(argv=None):
    """Run ``ipem`` with ``argv`` (default: ``sys.argv[1:]``); returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.cluster is not None:
        try:
            parse_cluster_spec(args.cluster)
        except ValueError as exc:
            print(f"ipem {args.command}: error: {exc}", file=sys.stderr)
            return 2
    handler = _log_handler(args)
    # SIGTERM (a batch system's time limit) unwinds like Ctrl-C: clusters are stopped,
    # temporary files removed, the last checkpoint kept
    # (SIGINT too: a library or the parent process may have replaced Python's own handler)
    old_term = old_int = None
    if threading.current_thread() is threading.main_thread():
        old_term = signal.signal(signal.SIGTERM, raise_terminated)
        old_int = signal.signal(signal.SIGINT, raise_terminated)
    try:
        check_paths(args, args.parser.paths)
        with _quiet(args.quiet):
            status = args.func(args)    # a step starts its cluster once its checks passed
        sys.stdout.flush()          # a closed pipe shows here, not at interpreter exit
        return status
    except BrokenPipeError as exc:
        if _stdout_closed():
            return _closed_pipe()
        print(f"ipem {args.command}: error: {_message(args, exc)}", file=sys.stderr)
        return 1
    except (ValueError, OSError, ArithmeticError, MemoryError, RuntimeError,
            ImportError) as exc:
        print(f"ipem {args.command}: error: {_message(args, exc)}", file=sys.stderr)
        return 2 if isinstance(exc, UsageError) else 1
    except KeyboardInterrupt as exc:
        signum = getattr(exc, "signum", signal.SIGINT)
        kept = getattr(args, "checkpoint", None)
        kept = f"; the checkpoint {kept} holds the last completed iteration" if kept and \
            os.path.exists(kept) else ""
        print(f"ipem {args.command}: stopped by {signal.Signals(signum).name}{kept}",
              file=sys.stderr)
        return 128 + int(signum)
    finally:
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term)
        if old_int is not None:
            signal.signal(signal.SIGINT, old_int)
        logger = logging.getLogger("ipem")
        logger.removeHandler(handler)
        logger.setLevel(logging.NOTSET)
