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


def test_a_batch_of_files_appears_together_or_not_at_all(tmp_path):
    """Nothing is renamed into place before the batch ends; a failure removes every
    temporary and leaves no destination; a batch that ends writes them all."""
    with pytest.raises(RuntimeError):
        with atomic.atomic_files() as files:
            files.save_npz(tmp_path / "a.npz", x=np.arange(3))
            files.save_npz(tmp_path / "b.npz", x=np.arange(4))
            assert not os.path.exists(tmp_path / "a.npz")
            raise RuntimeError("the third model failed")
    assert os.listdir(tmp_path) == [] and not atomic._PENDING
    with atomic.atomic_files() as files:
        files.save_npz(tmp_path / "a.npz", x=np.arange(3))
        files.save_npz(tmp_path / "b.npz", x=np.arange(4))
    assert files.paths == [str(tmp_path / "a.npz"), str(tmp_path / "b.npz")]
    assert sorted(os.listdir(tmp_path)) == ["a.npz", "b.npz"] and not atomic._PENDING
    with np.load(tmp_path / "b.npz") as z:
        np.testing.assert_array_equal(z["x"], np.arange(4))


def test_a_refused_rename_in_a_batch_is_a_write_error_naming_its_destination(tmp_path,
                                                                               monkeypatch):
    """The file system refusing a rename (here: read-only from the second rename on, as
    after a remount) is a WriteError naming that destination, as in atomic_path; the
    temporaries not renamed are removed."""
    import errno
    real_replace = os.replace

    def replace_then_refuse(src, dst):
        if str(dst).endswith("b.npz"):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), src, None, dst)
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace_then_refuse)
    with pytest.raises(atomic.WriteError) as info:
        with atomic.atomic_files() as files:
            files.save_npz(tmp_path / "a.npz", x=np.arange(3))
            files.save_npz(tmp_path / "b.npz", x=np.arange(4))
    monkeypatch.undo()
    assert str(info.value) == f"cannot write {tmp_path / 'b.npz'}: {os.strerror(errno.EROFS)}"
    assert os.listdir(tmp_path) == ["a.npz"] and not atomic._PENDING


def test_a_failed_sync_in_a_batch_is_a_write_error_and_leaves_nothing(tmp_path, monkeypatch):
    """The temporaries are synced in the background: a refused fsync (here: EIO for the
    second file) is a WriteError naming that destination when the batch ends; nothing
    is renamed, no temporary is left and no descriptor stays open."""
    import errno
    real_fsync = os.fsync
    written = []

    def fsync_then_fail(fd):
        written.append(fd)
        if len(written) == 2:
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        real_fsync(fd)

    fds = len(os.listdir("/proc/self/fd"))
    monkeypatch.setattr(os, "fsync", fsync_then_fail)
    with pytest.raises(atomic.WriteError) as info:
        with atomic.atomic_files() as files:
            for name in ("a", "b", "c"):
                files.save_npz(tmp_path / f"{name}.npz", x=np.arange(3))
    monkeypatch.undo()
    assert str(info.value) == f"cannot write {tmp_path / 'b.npz'}: {os.strerror(errno.EIO)}"
    assert os.listdir(tmp_path) == [] and not atomic._PENDING
    assert len(os.listdir("/proc/self/fd")) == fds
