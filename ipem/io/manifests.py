"""Feature manifests: the provenance record of a feature directory.

``ipem extract`` writes ``ipem_features.json`` into each output directory, the
record (:mod:`ipem.io.provenance`) of its feature files:

``ipem_record``, ``artefact`` (``"features"``), ``ipem_version`` : as other records.
``frontends`` : dict
    ``id -> options``: the front-end options the files were made with, every
    default resolved (sample rate, cepstra, filterbank band, VAD, normalisation...),
    so that two extractions compare equal exactly when they computed the same
    thing.  ``id`` is the first 12 digits of the options' digest.
``files`` : dict
    ``relative path -> {"digest", "frontend", "audio"?, "audio_digest"?}``: each
    feature file (a Kaldi archive for ``--format kaldi``) with its content
    digest, its front-end's id and, file by file, the audio it was made from
    (its digest; a shell command is named only).
``utterances`` : dict, optional
    Kaldi archives: ``utterance id -> {"file", "audio", "audio_digest"?, "segment"?}``.

A second extraction into the same directory merges its files into the
manifest (files of the same name replaced).  Feature directories without a
manifest (Kaldi, SIDEKIT, HTK tools, an older ipem) are read as before: the
front-end of their files is unknown and not checked.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os

from .provenance import file_digest, make_record, read_json_file

logger = logging.getLogger(__name__)

__all__ = ["MANIFEST_NAME", "FeatureOrigins", "frontend_id", "read_manifest", "write_manifest"]

#: File name of a feature directory's manifest.
MANIFEST_NAME = "ipem_features.json"


def frontend_id(options) -> str:
    """The id of a front-end: 12 hexadecimal digits of its options' digest."""
    text = json.dumps(options, sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def read_manifest(path) -> dict | None:
    """The manifest ``path`` (a file); None if there is none.

    Raises
    ------
    ValueError
        A manifest that is not a JSON features record (named).
    """
    path = os.fspath(path)
    record = read_json_file(path, "feature manifest")
    if record is None:
        return None
    if (not isinstance(record, dict) or record.get("artefact") != "features"
            or not isinstance(record.get("files"), dict)
            or not isinstance(record.get("frontends"), dict)):
        raise ValueError(f"{path}: not a feature manifest")
    return record


def _audio_entry(audio):
    """``{"audio", "audio_digest"}`` of a source (a file's digest; a command named only)."""
    audio = os.fspath(audio)
    if audio.rstrip().endswith("|") or not os.path.isfile(audio):
        return {"audio": audio}
    return {"audio": os.path.abspath(audio), "audio_digest": file_digest(audio)}


def write_manifest(directory, files, frontend, *, final=None, utterances=None) -> str:
    """Write (or merge into) the manifest of the feature files under ``directory``.

    Parameters
    ----------
    directory : str or os.PathLike
        Where the feature files are now (a temporary directory that becomes
        ``final``); the manifest is written there.
    files : dict
        ``relative path -> audio source or None``, the files written.
    frontend : dict
        The front-end options, defaults resolved (JSON types).
    final : str or os.PathLike, optional
        The directory the files end up in: its manifest's entries of other
        files that still exist are kept.
    utterances : dict, optional
        Kaldi archives: ``utt -> (relative archive, audio, start, end)``.

    Returns
    -------
    str
        The manifest's path under ``directory``.
    """
    from .. import __version__

    directory = os.fspath(directory)
    fid = frontend_id(frontend)
    old = None
    if final is not None:
        try:
            old = read_manifest(os.path.join(final, MANIFEST_NAME))
        except ValueError as exc:
            logger.warning("%s; it is replaced", exc)
    frontends = dict(old["frontends"]) if old else {}
    entries, utts = {}, {}
    if old:
        for rel, entry in old["files"].items():
            if rel not in files and os.path.exists(os.path.join(final, rel)):
                entries[rel] = entry
        utts = {u: e for u, e in (old.get("utterances") or {}).items()
                if e.get("file") in entries}
    frontends[fid] = frontend
    for rel, audio in files.items():
        entry = {"digest": file_digest(os.path.join(directory, rel)), "frontend": fid}
        if audio is not None:
            entry.update(_audio_entry(audio))
        entries[rel] = entry
    for utt, (rel, audio, start, end) in (utterances or {}).items():
        utts[utt] = dict(_audio_entry(audio), file=rel)
        if start is not None:
            utts[utt]["segment"] = [start, end]
    used = {e["frontend"] for e in entries.values()}
    record = make_record("features", ipem_version=__version__,
                         frontends={k: v for k, v in frontends.items() if k in used},
                         files=dict(sorted(entries.items())), utterances=utts or None)
    where = os.path.join(directory, MANIFEST_NAME)
    with open(where, "w", encoding="utf-8") as fh:
        json.dump(record, fh, indent=1, sort_keys=True)
        fh.write("\n")
    return where


class FeatureOrigins:
    """The front-ends of feature files, from the manifests of their directories.

    A feature file's manifest is the nearest ``ipem_features.json`` in its
    directory or above it that lists the file.
    """

    def __init__(self):
        self._dirs = {}          # directory -> (manifest path, record) or None
        self.unknown = []        # feature keys without a manifest

    def _manifest_of(self, directory):
        if directory in self._dirs:
            return self._dirs[directory]
        found = None
        where = os.path.join(directory, MANIFEST_NAME)
        if os.path.isfile(where):
            found = (where, read_manifest(where))
        else:
            parent = os.path.dirname(directory)
            if parent != directory:
                found = self._manifest_of(parent)
        self._dirs[directory] = found
        return found

    def origin(self, key):
        """``(manifest path, front-end options)`` of one feature key, or None.

        Parameters
        ----------
        key : str
            :func:`ipem.io.provenance.utterance_key` of a feature matrix.
        """
        path = key.split("#", 1)[0]
        if path.rstrip().endswith("|"):
            return None
        if not os.path.isfile(path) and ":" in path:        # a Kaldi ark:offset
            path = path.rsplit(":", 1)[0]
        found = self._manifest_of(os.path.dirname(os.path.abspath(path)))
        if found is None:
            return None
        where, record = found
        rel = os.path.relpath(os.path.abspath(path), os.path.dirname(where))
        entry = record["files"].get(rel.replace(os.sep, "/"))
        if entry is None or entry.get("frontend") not in record["frontends"]:
            return None
        return where, record["frontends"][entry["frontend"]]

    def of(self, keys):
        """The manifests and front-ends of feature keys.

        Parameters
        ----------
        keys : iterable of str

        Returns
        -------
        list of (str, dict)
            ``(manifest path, front-end options)``, one per manifest and
            front-end met, in order.  Keys without a manifest are added to
            :attr:`unknown`.
        """
        out, seen = [], set()
        for key in keys:
            got = self.origin(key)
            if got is None:
                self.unknown.append(key)
                continue
            where, options = got
            if (where, frontend_id(options)) not in seen:
                seen.add((where, frontend_id(options)))
                out.append((where, options))
        return out
