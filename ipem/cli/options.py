"""What every command shares: the parser, path roles, typed numbers and the common options.

A command module declares its options on a :class:`Parser`, whose
``add_argument`` takes two things argparse does not:

- ``type=`` a :class:`PathRole` (:data:`INPUT_FILE`, :data:`INPUT_DIR`,
  :data:`OUTPUT_FILE`, :data:`OUTPUT_DIR`, :data:`CHECKPOINT`, :data:`IMAGE`):
  the path is checked before any work (:func:`check_paths`), in one line
  naming the option;
- ``parameter=`` the Python parameter the option sets: a
  :class:`ipem.errors.ParameterError` about that parameter names the option
  instead (:meth:`Parser.render`).

The feature-source options (:func:`feature_options`) become one
:class:`ipem.speaker.utterances.FeatureSource` (:func:`feature_source`).
"""
from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field
from typing import Callable, Mapping

from ..io.formats import names as format_names
from ..io.preflight import check_input_dir, check_input_file, check_output_dir, check_output_file
from ..parallel.clusters import LAUNCHERS
from ..speaker.utterances import FeatureSource

__all__ = ["CHECKPOINT", "COMMON_HINTS", "Command", "IMAGE", "INPUT_DIR", "INPUT_FILE",
           "OUTPUT_DIR", "OUTPUT_FILE", "Parser", "PathRole", "UsageError", "check_paths",
           "common_options", "feature_options", "feature_source", "typed", "written_by"]


class UsageError(ValueError):
    """A wrong command line found after parsing (exit status 2, like argparse's)."""


# ---------------------------------------------------------------------------
# path roles: how a command uses a path, and the check it gets before any work
# ---------------------------------------------------------------------------

def _check_checkpoint(path, option):
    check_output_file(path, option)
    if os.path.exists(path):
        check_input_file(path, option)      # resumed from


def _check_image(path, option):
    from ..plotting import image_format
    check_output_file(path, option)
    try:
        image_format(path)
    except ValueError as exc:
        raise ValueError(f"{option} {exc}") from None


@dataclass(frozen=True)
class PathRole:
    """An argparse ``type`` for a path option: the text as given, checked later.

    Argparse converts while it parses, and a conversion error would be a
    usage error (exit status 2) with argparse's own wording; the paths are
    instead checked after parsing and before any work by :func:`check_paths`
    (exit status 1, one line naming the option).

    Parameters
    ----------
    name : str
        What the path is, e.g. ``"input file"``.
    rank : int
        Checks run by rank (inputs before outputs), then in the order the
        options are declared.
    check : callable
        ``check(path, option)``; raises ValueError or OSError naming ``option``.
    """

    name: str
    rank: int
    check: Callable[[str, str], object] = field(repr=False)

    def __call__(self, text):
        return text


INPUT_FILE = PathRole("input file", 0, check_input_file)
INPUT_DIR = PathRole("input directory", 1, check_input_dir)
OUTPUT_FILE = PathRole("output file", 2, check_output_file)
CHECKPOINT = PathRole("checkpoint", 3, _check_checkpoint)
IMAGE = PathRole("image", 4, _check_image)
OUTPUT_DIR = PathRole("output directory", 5, check_output_dir)


@dataclass(frozen=True)
class PathOption:
    """A path option of a command: its option string, argparse dest and role."""

    option: str
    dest: str
    role: PathRole


def check_paths(args, paths):
    """Check the paths on the command line before any work: one error naming the option.

    Parameters
    ----------
    args : argparse.Namespace
    paths : sequence of PathOption
        In declaration order; checked by role rank, then in that order.
    """
    for p in sorted(paths, key=lambda p: p.role.rank):
        value = getattr(args, p.dest, None)
        for path in (value if isinstance(value, list) else [value]):
            if path is not None:
                p.role.check(path, p.option)


def written_by(args, paths, target):
    """The output option whose file is ``target``, or whose directory holds it; else None.

    Parameters
    ----------
    args : argparse.Namespace
    paths : sequence of PathOption
    target : str
        A file a step failed to write (:class:`ipem.io.atomic.WriteError`).

    Returns
    -------
    tuple of (str, str) or None
        ``(option, value)`` as given on the command line.
    """
    target = os.path.abspath(target)
    for p in paths:
        if p.role.rank < OUTPUT_FILE.rank:
            continue
        value = getattr(args, p.dest, None)
        for path in (value if isinstance(value, list) else [value]):
            if path is None:
                continue
            full = os.path.abspath(path)
            if target == full or target.startswith(full.rstrip(os.sep) + os.sep):
                return p.option, path
    return None


# ---------------------------------------------------------------------------
# the parser
# ---------------------------------------------------------------------------

class Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults shown on every option; descriptions kept as written."""


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose options declare their path role and Python parameter.

    Attributes
    ----------
    parameters : dict
        Python parameter -> the option that sets it (from ``parameter=``).
    paths : list of PathOption
        The options whose ``type`` is a :class:`PathRole`, in declaration order.
    """

    def __init__(self, *args, **kwargs):
        self.parameters, self.paths = {}, []
        kwargs.setdefault("formatter_class", Formatter)
        super().__init__(*args, **kwargs)

    def add_argument(self, *args, parameter=None, **kwargs):
        """:meth:`argparse.ArgumentParser.add_argument`, and ``parameter``: the Python
        parameter the option sets (its errors then name the option)."""
        action = super().add_argument(*args, **kwargs)
        if parameter is not None:
            self.parameters[parameter] = action.option_strings[0]
        if isinstance(action.type, PathRole):
            self.paths.append(PathOption(action.option_strings[0], action.dest, action.type))
        return action


#: Advice in library errors that makes sense from Python only, and what every command
#: says instead (:attr:`ipem.errors.ParameterError.hint` -> the command's words).
COMMON_HINTS = {
    "; pass fmt=": ": give the file one of these extensions",
}


@dataclass(frozen=True)
class Command:
    """One ``ipem`` command: its sub-parser's options, its handler and its words.

    Parameters
    ----------
    name : str
        The command, e.g. ``"train-ubm"``.
    options : callable
        ``options(parser)`` declares the command's options on its :class:`Parser`.
    run : callable
        ``run(args) -> exit status``; runs after the path checks.
    help : str
        The line in ``ipem --help``.
    description : str, optional
        The text atop ``ipem <command> --help``.
    hints : mapping, optional
        The command's words for advice in library errors that names Python
        parameters (:attr:`ipem.errors.ParameterError.hint` -> its own; ``""``
        drops the advice); :data:`COMMON_HINTS` apply to every command.
    """

    name: str
    options: Callable[[Parser], None]
    run: Callable[[argparse.Namespace], int]
    help: str
    description: str | None = None
    hints: Mapping[str, str] = field(default_factory=dict)

    def add_to(self, subparsers):
        """Add the command's sub-parser (a :class:`Parser`) to ``subparsers``."""
        kwargs = {} if self.description is None else {"description": self.description}
        sp = subparsers.add_parser(self.name, help=self.help, **kwargs)
        self.options(sp)
        sp.set_defaults(func=self.run, spec=self, parser=sp)
        return sp

    def hint(self, python_hint):
        """The command's words for a library error's advice (None: keep it)."""
        return self.hints.get(python_hint, COMMON_HINTS.get(python_hint))


# ---------------------------------------------------------------------------
# options every command, or every command that reads features, shares
# ---------------------------------------------------------------------------

def typed(kind, low, strict=False):
    """An argparse type: ``kind`` at least ``low`` (above it with ``strict``)."""
    def convert(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not a{'n integer' if kind is int else ' number'}") from None
        if value < low or (strict and value == low) or value != value:
            raise argparse.ArgumentTypeError(
                f"{text!r} must be {'above' if strict else 'at least'} {low}")
        return value
    convert.__name__ = kind.__name__
    return convert


def _cluster_forms():
    """The ``--cluster`` spellings of the launcher registry: ``"local, ..., or profile:DIR"``."""
    forms = [form for launcher in LAUNCHERS.values() for form in launcher.forms]
    return ", ".join(forms[:-1]) + " or " + forms[-1]


def common_options(sp, cluster=True):
    """--cluster and --allow-pipes (for a step that runs on a cluster), --quiet, -v."""
    if cluster:
        sp.add_argument("--cluster", default="local",
                        help=f"where the step runs: {_cluster_forms()}")
        sp.add_argument("--allow-pipes", action="store_true",
                        help="run shell commands named in lists and scp files (Kaldi pipes "
                             "such as 'gunzip -c feats.ark.gz |'); they run through "
                             "/bin/sh with your permissions, so use this only with lists "
                             "you wrote or trust; by default such entries are refused")
    else:
        sp.set_defaults(cluster=None)
    sp.add_argument("--quiet", action="store_true",
                    help="print errors only (no result line, progress, iteration lines, "
                         "warnings or log below ERROR): the exit status and the files say "
                         "the rest")
    sp.add_argument("-v", "--verbose", action="count", default=0,
                    help="log what the steps do (-vv: debugging detail)")


def feature_options(sp):
    """--features, --data-dir, --root, --format: where a step finds its features."""
    sp.add_argument("--features", default=None, type=INPUT_DIR,
                    help="feature directory (from 'extract'); this or --data-dir")
    sp.add_argument("--data-dir", default=None, type=INPUT_DIR,
                    help="Kaldi data directory (feats.scp, utt2spk, spk2utt): lists and "
                         "trials name its utterance ids")
    sp.add_argument("--root", default=None, type=INPUT_DIR,
                    help="corpus directory the lists are relative to")
    sp.add_argument("--format", default="htk", choices=list(format_names()),
                    help="feature file format (kaldi: --features holds feats.scp)")


def feature_source(args):
    """The :class:`~ipem.speaker.utterances.FeatureSource` of the feature options.

    Raises
    ------
    UsageError
        If neither --features nor --data-dir is given.
    """
    if args.features is None and args.data_dir is None:
        raise UsageError("give --features (a feature directory) or --data-dir (a Kaldi data "
                         "directory)")
    return FeatureSource(features_dir=args.features, root=args.root, fmt=args.format,
                         data_dir=args.data_dir, allow_pipes=args.allow_pipes)
