"""``%px`` against the session's real MPI engines, in a real IPython shell: it waits for the
engines, shows what they print, and what it shows of ``ipem_shards`` is the distributed data."""
import re

import ipyparallel as ipp
import pytest
from IPython.core.interactiveshell import InteractiveShell
from traitlets.config import Config

from tests.helpers import blobs

pytestmark = pytest.mark.mpi


@pytest.fixture
def shell():
    """A fresh IPython shell (no history file), removed again afterwards."""
    config = Config()
    config.HistoryManager.hist_file = ":memory:"
    shell = InteractiveShell.instance(config=config)
    try:
        yield shell
    finally:
        InteractiveShell.clear_instance()


@pytest.fixture
def view(mpi_client, shell):
    """A DirectView on all engines with the %px magics registered; non-blocking, the default."""
    view = mpi_client[:]
    assert view.block is False
    view.activate()
    return view


@pytest.fixture
def data(dv_client):
    data = dv_client.distribute(blobs(300, d=3), key="px_frames")
    try:
        yield data
    finally:
        data.free()


def run(shell, capsys, cell):
    """Run ``cell`` in ``shell``; returns (its result, what it printed)."""
    capsys.readouterr()
    result = shell.run_cell(cell)
    assert result.error_before_exec is None and result.error_in_exec is None, result
    return result.result, capsys.readouterr().out


def per_engine(out):
    """What each engine printed: ``{engine id: text}`` from ``[stdout:<id>] text`` blocks."""
    parts = re.split(r"\[stdout:(\d+)\]\s*", out)
    printed = {}
    for engine_id, text in zip(parts[1::2], parts[2::2]):
        printed[int(engine_id)] = printed.get(int(engine_id), "") + text
    return printed


def check_shards(out, controller, data):
    """Every engine printed the repr of the run of blocks that the client says it holds."""
    printed = per_engine(out)
    assert sorted(printed) == sorted(controller.engine_ids), out
    offsets = [0, *data.place_sizes.cumsum()]
    for r, (engine_id, size) in enumerate(zip(controller.engine_ids, data.place_sizes)):
        blocks = -(-int(size) // data.block_size)
        assert (f"BlockGroup(index={r}, offset={offsets[r]}, X=({size}, 3) float64, "
                f"blocks={blocks})") in printed[engine_id]


def test_cell_magic_with_block_shows_the_shards(shell, view, data, dv_client, capsys):
    cell = f"%%px --block\nprint(ipem_shards[{data.key!r}])"
    result, out = run(shell, capsys, cell)
    assert not isinstance(result, ipp.AsyncResult)
    check_shards(out, dv_client, data)
    assert view.block is False          # --block applies to this cell only


def test_line_magic_on_a_blocking_view_shows_the_shards(shell, view, data, dv_client, capsys):
    view.block = True
    result, out = run(shell, capsys, f"%px print(ipem_shards[{data.key!r}])")
    assert result is None
    check_shards(out, dv_client, data)


def test_line_magic_without_blocking_only_returns_an_async_result(shell, view, data, capsys):
    result, out = run(shell, capsys, f"%px print(ipem_shards[{data.key!r}])")
    assert isinstance(result, ipp.AsyncResult)
    assert "BlockGroup(" not in out
    result.get(timeout=60)              # it did run; %px just did not wait or show it


def test_px_shows_that_freed_shards_are_gone(shell, view, dv_client, capsys):
    data = dv_client.distribute(blobs(60, d=3), key="px_freed")
    view.block = True
    _, out = run(shell, capsys, "%px print('px_freed' in ipem_shards)")
    assert out.count("True") == len(dv_client.engine_ids)
    data.free()
    _, out = run(shell, capsys, "%px print('px_freed' in ipem_shards)")
    assert out.count("False") == len(dv_client.engine_ids) and "True" not in out
