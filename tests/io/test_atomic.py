"""Atomic writes: an interrupt anywhere leaves no temporary file behind."""
import os

import numpy as np
import pytest

from ipem.io import atomic


def test_an_interrupt_right_after_the_temporary_is_made_leaves_nothing(tmp_path, monkeypatch):
    """A signal can land between the creation of the temporary file and the ``try`` that
    would remove it (here: in the ``os.close`` of its descriptor)."""
    real_close = os.close
    calls = []

    def close_then_interrupt(fd):
        real_close(fd)
        if not calls:
            calls.append(fd)
            raise KeyboardInterrupt

    monkeypatch.setattr(os, "close", close_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        atomic.save_npz_atomic(tmp_path / "ck.npz", x=np.arange(3))
    monkeypatch.undo()
    assert calls, "the interrupt was not raised where the test meant it"
    assert os.listdir(tmp_path) == []
    assert not atomic._PENDING


def test_temporaries_still_pending_at_exit_are_removed(tmp_path):
    """A temporary whose ``with`` block never ended (its clean-up skipped) is listed and
    removed by the exit hook; one renamed into place is not listed."""
    atomic.save_npz_atomic(tmp_path / "done.npz", x=np.arange(3))
    cm = atomic.atomic_path(tmp_path / "ck.npz")
    tmp = cm.__enter__()
    with open(tmp, "w") as fh:
        fh.write("half")
    assert atomic._PENDING == {tmp}
    atomic._remove_pending()
    assert sorted(os.listdir(tmp_path)) == ["done.npz"]
    assert not atomic._PENDING
