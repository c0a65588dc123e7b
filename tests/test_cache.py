"""The array cache under damage: a corrupt entry is rebuilt, never used; an unwritable cache is a warning."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from ecg_data import BeatDataset
from ecg_data.cache import cached


def _dataset(n: int = 12) -> BeatDataset:
    rng = np.random.default_rng(0)
    return BeatDataset("mitdb", rng.normal(size=(n, 16, 1)).astype(np.float32), np.zeros((n, 4), np.float32),
                       (np.arange(n) % 2).astype(np.int8), np.array(["N", "V"] * (n // 2)), np.full(n, "101"),
                       np.full(n, "101"), np.full(n, "search"), 180.0, {"skipped": []})


class _Builder:
    def __init__(self):
        self.calls = 0

    def __call__(self) -> BeatDataset:
        self.calls += 1
        return _dataset()


def _entry(tmp_path: Path, build) -> tuple[Path, BeatDataset]:
    src = tmp_path / "src"
    src.mkdir(exist_ok=True)
    ds = cached("mitdb", src, {"fs": 180.0}, build, directory=tmp_path / "cache")
    (npz,) = (tmp_path / "cache").glob("*.npz")
    return npz, ds


def _truncate(p: Path) -> None:
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])


def _flip_byte(p: Path) -> None:
    b = bytearray(p.read_bytes())
    b[len(b) // 2] ^= 0xFF
    p.write_bytes(bytes(b))


@pytest.mark.parametrize("damage", [
    pytest.param(lambda npz: npz.write_bytes(b""), id="empty-npz"),
    pytest.param(_truncate, id="truncated-npz"),
    pytest.param(_flip_byte, id="flipped-byte-npz"),
    pytest.param(lambda npz: npz.with_suffix(".json").write_text("{bad"), id="garbage-json"),
    pytest.param(lambda npz: npz.with_suffix(".json").write_text("[]"), id="json-not-an-object"),
])
def test_a_corrupt_cache_entry_is_rebuilt_not_used_nor_a_traceback(tmp_path, caplog, damage):
    build = _Builder()
    npz, first = _entry(tmp_path, build)
    damage(npz)
    with caplog.at_level(logging.WARNING, logger="ecg_data"):
        npz2, again = _entry(tmp_path, build)
    assert build.calls == 2 and not again.info["cache"]["hit"]
    assert "unreadable" in caplog.text and npz.name in caplog.text
    np.testing.assert_array_equal(again.X, first.X)
    _, third = _entry(tmp_path, build)  # the rebuilt entry is whole: a hit
    assert third.info["cache"]["hit"] and build.calls == 2
    np.testing.assert_array_equal(third.X, first.X)


def _refuse_to_save(self, path):
    """What a read-only or full cache folder does to the write (simulated: tests run as root, who may write
    anywhere): a partial file, then an OSError."""
    Path(path).write_bytes(b"partial")
    raise PermissionError(13, "Permission denied", str(path))


@pytest.mark.parametrize("damage", ["below a file", "read-only or full"])
def test_an_unwritable_cache_folder_is_a_warning_and_leaves_no_temporary_file(tmp_path, caplog, monkeypatch, damage):
    directory = tmp_path / "cache"
    if damage == "below a file":
        (tmp_path / "file").write_text("not a folder")
        directory = tmp_path / "file" / "cache"
    else:
        monkeypatch.setattr(BeatDataset, "save", _refuse_to_save)
    src = tmp_path / "src"
    src.mkdir()
    with caplog.at_level(logging.WARNING, logger="ecg_data"):
        ds = cached("mitdb", src, {"fs": 180.0}, _Builder(), directory=directory)
    assert len(ds) == 12 and ds.info["cache"] == {"hit": False, "file": None}
    assert "could not write the array cache" in caplog.text and "ECG_AUTOML_CACHE" in caplog.text
    if damage != "below a file":
        assert "Permission denied" in caplog.text and list(directory.iterdir()) == []


def test_an_interrupted_cache_write_leaves_no_temporary_file(tmp_path, monkeypatch):
    """Ctrl-C or SIGTERM while the arrays were written left a .tmp.npz (as large as the cache entry) for good."""
    def interrupted(self, path):
        Path(path).write_bytes(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(BeatDataset, "save", interrupted)
    src = tmp_path / "src"
    src.mkdir()
    with pytest.raises(KeyboardInterrupt):
        cached("mitdb", src, {"fs": 180.0}, _Builder(), directory=tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir()) == []


def test_a_cache_write_removes_the_temporary_files_of_a_killed_writer(tmp_path):
    """A writer killed with SIGKILL (its clean-up never runs) left its hidden .tmp.npz, 6-100+ MB, for good: the next
    write of the entry removes those of writers that no longer run, and leaves a running writer's alone."""
    import os
    import subprocess
    import sys

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    src = tmp_path / "src"
    src.mkdir()
    directory = tmp_path / "cache"
    cached("mitdb", src, {"fs": 180.0}, _Builder(), directory=directory)
    entry = next(directory.glob("mitdb-*.npz"))
    meta = next(directory.glob("mitdb-*.json"))
    killed = [directory / f".{entry.name}.{dead.pid}-1.tmp.npz", directory / f".{meta.name}.{dead.pid}-1.tmp"]
    running = directory / f".{entry.name}.{os.getppid()}-1.tmp.npz"
    for path in [*killed, running]:
        path.write_bytes(b"partial")
    entry.unlink()  # a miss: the entry is written again
    cached("mitdb", src, {"fs": 180.0}, _Builder(), directory=directory)
    assert not any(p.exists() for p in killed) and running.exists()


def test_a_changed_record_behind_a_symlinked_folder_misses_the_cache(tmp_path):
    """A root whose ``records100`` links into another copy: ``Path.rglob`` did not follow the link, so the key left
    those records out and a replaced record file was served from the old arrays. A link loop is walked once."""
    store = tmp_path / "store" / "00000"
    store.mkdir(parents=True)
    (store / "00001_lr.dat").write_bytes(b"a" * 10)
    src = tmp_path / "src"
    src.mkdir()
    (src / "records100").symlink_to(tmp_path / "store", target_is_directory=True)
    (tmp_path / "store" / "loop").symlink_to(src, target_is_directory=True)
    build = _Builder()
    for _ in range(2):
        cached("ptbxl", src, {"fs": 100.0}, build, directory=tmp_path / "cache")
    assert build.calls == 1
    (store / "00001_lr.dat").write_bytes(b"b" * 11)
    cached("ptbxl", src, {"fs": 100.0}, build, directory=tmp_path / "cache")
    assert build.calls == 2


def test_two_threads_filling_one_entry_do_not_share_temporary_files(tmp_path, caplog, monkeypatch):
    """The temporary names held the process id alone: a second thread writing the same entry had its file
    replaced away under it, and warned that the cache folder was not writable."""
    import threading

    real_save = BeatDataset.save
    both_writing = threading.Barrier(2, timeout=20)

    def save(self, path):
        real_save(self, path)
        both_writing.wait()  # both threads have written their temporary arrays before either renames

    monkeypatch.setattr(BeatDataset, "save", save)
    src = tmp_path / "src"
    src.mkdir()
    caplog.set_level(logging.WARNING, logger="ecg_data")
    threads = [threading.Thread(target=cached, args=("mitdb", src, {"fs": 180.0}, _Builder()),
                                kwargs={"directory": tmp_path / "cache"}) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not caplog.records
    assert sorted(p.suffix for p in (tmp_path / "cache").iterdir()) == [".json", ".npz"]


def _toy_reader(scale: float):
    """A reader as a user registers one: arrays from a file of its own kind (.npy), scaled."""
    def reader(path, *, fs, window, records, on_bad_record):
        x = np.load(Path(path) / "beats.npy") * scale
        n = len(x)
        return BeatDataset("toy", x[:, :window, None].astype(np.float32), np.ones((n, 14), np.float32),
                           np.zeros(n, np.int8), np.full(n, "N"), np.arange(n).astype(str), np.full(n, "r"),
                           np.full(n, "search"), fs)
    return reader


def test_a_registered_source_misses_the_cache_when_its_reader_or_its_files_change(tmp_path, monkeypatch):
    """The cache key covered ecg_data's own code and the PhysioNet file kinds only: a source added with
    register_source was served its old arrays after its reader changed, or after a file of its own kind did."""
    from ecg_data import load_dataset, register_source
    from ecg_data.loader import SOURCES

    monkeypatch.setenv("ECG_AUTOML_CACHE", str(tmp_path / "cache"))
    monkeypatch.setitem(SOURCES, "toy", SOURCES.get("mitdb"))  # undone after the test
    folder = tmp_path / "toy"
    folder.mkdir()
    np.save(folder / "beats.npy", np.ones((10, 256)))
    register_source("toy", _toy_reader(1.0))
    assert not load_dataset("toy", path=folder, window=128).info["cache"]["hit"]
    assert load_dataset("toy", path=folder, window=128).info["cache"]["hit"]  # nothing changed: a hit
    register_source("toy", _toy_reader(2.0))
    again = load_dataset("toy", path=folder, window=128)
    assert not again.info["cache"]["hit"] and float(again.X[0, 0, 0]) == 2.0
    np.save(folder / "beats.npy", np.full((10, 256), 3.0))
    changed = load_dataset("toy", path=folder, window=128)
    assert not changed.info["cache"]["hit"] and float(changed.X[0, 0, 0]) == 6.0


def test_a_registered_reader_is_described_the_same_in_every_process():
    """A reader registered as a functools.partial, or as a closure over a function or object, was keyed by its
    repr(), which holds a memory address: every process missed the cache and wrote another entry."""
    import functools

    from ecg_data.cache import _describe

    class Settings:  # an object without a repr of its own: "<...Settings object at 0x...>"
        pass

    settings = Settings()

    def over(fn):
        def reader(path, **kw):
            return fn(path, **kw), settings
        return reader

    for reader in (functools.partial(_toy_reader(1.0), window=3), over(_toy_reader(1.0))):
        text = _describe(reader)
        assert " at 0x" not in text and "_toy_reader" in text, text
    assert _describe(functools.partial(_toy_reader(1.0))) != _describe(functools.partial(_toy_reader(2.0)))
    calls = []  # a list the reader appends to: its contents are not what it computes (every load missed)

    def counting(path, **kw):
        calls.append(path)
        return _toy_reader(1.0)(path, **kw)

    before = _describe(counting)
    calls.append("a load")
    assert _describe(counting) == before


def test_the_cache_lists_its_entries_and_removes_those_another_version_made(tmp_path, cli_env):
    """Each upgrade of ecg-automl, wfdb, SciPy or scikit-learn starts new entries (116 MB for all of MIT-BIH) and
    nothing removed the old ones: 26 entries, 1.5 GB, in one day of this machine's work. ``ecg-automl data cache``
    lists them, says which this installation will not read, and removes those (or all); a needed one is rebuilt."""
    import json
    import os
    import subprocess
    import sys

    from conftest import run_cli

    from ecg_data.cache import cache_entries

    directory = tmp_path / "cache"
    src = tmp_path / "src"
    src.mkdir()
    assert cache_entries(directory) == []  # no folder yet
    build = _Builder()
    cached("mitdb", src, {"fs": 180.0}, build, directory=directory)
    (current,) = directory.glob("mitdb-*.npz")
    cached("mitdb", src, {"fs": 250.0}, build, directory=directory)
    (other,) = set(directory.glob("mitdb-*.npz")) - {current}
    # one entry as another version wrote it, one as a version before entries recorded which code made them
    meta = json.loads(other.with_suffix(".json").read_text())
    other.with_suffix(".json").write_text(json.dumps({**meta, "cache_made_by": {"pipeline_version": 5, "code": {}}}))
    unknown = directory / "mitdb-00000000000000000000.npz"
    unknown.write_bytes(current.read_bytes())
    meta.pop("cache_made_by")
    unknown.with_suffix(".json").write_text(json.dumps(meta))
    os.utime(unknown, (1, 1))  # unused for long: listed first
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    killed = directory / f".{current.name}.{dead.pid}-1.tmp.npz"
    killed.write_bytes(b"partial")
    by_path = {e.path: e for e in cache_entries(directory)}
    assert [by_path[p].current for p in (current, other, unknown)] == [True, False, None]
    assert cache_entries(directory)[0].path == unknown
    assert by_path[current].size_bytes == current.stat().st_size + current.with_suffix(".json").stat().st_size

    env = {**cli_env, "ECG_AUTOML_CACHE": str(directory)}
    out = run_cli(["data", "cache"], tmp_path, env).stdout
    assert f"array cache {directory}: 3 entries" in out and "1 temporary file(s) of killed writers" in out, out
    assert "2 entries" in out and "are not known to be this installation's" in out, out
    assert "this installation's" in out.splitlines()[[i for i, line in enumerate(out.splitlines())
                                                       if current.stem in line][0]], out
    listed = json.loads(run_cli(["data", "cache", "--json"], tmp_path, env).stdout)
    assert listed["cache_dir"] == str(directory) and listed["stale_entries"] == 2, listed
    assert [(e["path"], e["current"]) for e in listed["entries"]] == [(str(unknown), None), *sorted(
        [(str(current), True), (str(other), False)], key=lambda pc: Path(pc[0]).stat().st_mtime)], listed
    assert listed["total_bytes"] == sum(e["size_bytes"] for e in listed["entries"]) > 0
    assert listed["temporary_files"] == [str(killed)], listed
    out = run_cli(["data", "cache", "--remove-stale"], tmp_path, env).stdout
    assert "removed 2 of the 3 entries" in out and "and 1 temporary file(s) of killed writers" in out, out
    assert current.exists() and not other.exists() and not unknown.exists() and not killed.exists()
    mine = directory / "mydata.npz"  # a user's own files in the folder are no entries: never listed nor removed
    mine.write_bytes(b"x")
    mine.with_suffix(".json").write_text("{}")
    os.utime(current, (1, 1))
    out = run_cli(["data", "cache", "--unused-for", "30"], tmp_path, env).stdout
    assert "removed 1 of the 1 entries" in out and not current.exists(), out
    cached("mitdb", src, {"fs": 180.0}, build, directory=directory)
    assert build.calls == 3 and current.exists()
    out = run_cli(["data", "cache", "--unused-for", "30"], tmp_path, env).stdout
    assert "removed 0 of the 1 entries" in out and current.exists(), out  # read just now
    removed = json.loads(run_cli(["data", "cache", "--remove-all", "--json"], tmp_path, env).stdout)
    assert removed["removed"] == [current.stem] and removed["freed_bytes"] > 0 and not current.exists(), removed
    assert mine.exists() and mine.with_suffix(".json").exists()
    cached("mitdb", src, {"fs": 180.0}, build, directory=directory)  # rebuilt where needed
    assert build.calls == 4 and current.exists()

    # an entry an earlier version wrote becomes this installation's when this code reads it
    meta = json.loads(current.with_suffix(".json").read_text())
    meta.pop("cache_made_by")
    current.with_suffix(".json").write_text(json.dumps(meta))
    assert cache_entries(directory)[0].current is None
    cached("mitdb", src, {"fs": 180.0}, build, directory=directory)
    assert build.calls == 4 and cache_entries(directory)[0].current is True
