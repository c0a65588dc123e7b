"""MIT-BIH loading, AAMI labels, the inter-patient split, caching and clear errors for bad records."""

from __future__ import annotations

import logging
import re
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import wfdb

from conftest import ROOT
from ecg_data import DS1, DS2, DataError, RecordError, fetch_database, load_dataset
from ecg_data.mitdb import AAMI, PACED


def test_ds1_ds2_are_the_de_chazal_split():
    assert len(DS1) == 22 and len(DS2) == 22
    assert not set(DS1) & set(DS2)
    assert not set(PACED) & (set(DS1) | set(DS2))


def test_ds1_ds2_are_the_published_record_lists(small_mitdb):
    """The exact records of de Chazal et al. (2004): a record swapped between the lists keeps both at 22 records
    and disjoint, so only the lists themselves tell a test patient moved to the search side."""
    assert set(DS1) == {"101", "106", "108", "109", "112", "114", "115", "116", "118", "119", "122", "124",
                        "201", "203", "205", "207", "208", "209", "215", "220", "223", "230"}
    assert set(DS2) == {"100", "103", "105", "111", "113", "117", "121", "123", "200", "202", "210", "212",
                        "213", "214", "219", "221", "222", "228", "231", "232", "233", "234"}
    split = dict(zip(small_mitdb.records, small_mitdb.split))
    assert split == {"101": "search", "106": "search", "119": "search", "208": "search", "223": "search",
                     "100": "test", "200": "test", "213": "test"}


def test_labels_match_reference_annotations(small_mitdb, data_root):
    """Every beat of record 208 maps to its AAMI class; counts agree with wfdb's own annotation reader."""
    ann = wfdb.rdann(str(data_root / "mitdb" / "208"), "atr")
    expected = Counter(AAMI[s] for s in ann.symbol if s in AAMI and AAMI[s] != "Q")
    got = Counter(small_mitdb.label[small_mitdb.records == "208"])
    for cls, n in expected.items():  # windows at the very start/end of the record are dropped
        assert n - 2 <= got[cls] <= n
    m = small_mitdb.records == "208"
    assert set(np.unique(small_mitdb.y[m][small_mitdb.label[m] == "N"])) == {0}
    assert set(np.unique(small_mitdb.y[m][small_mitdb.label[m] == "V"])) == {1}
    # the abnormal class is S, V and F, every beat of them (the counts above hold whatever y says)
    assert {"S", "V", "F"} <= set(small_mitdb.label[small_mitdb.split == "search"])
    assert np.array_equal(small_mitdb.y, (small_mitdb.label != "N").astype(np.int8))


def test_windows_are_normalised_and_split_by_patient(small_mitdb):
    ds = small_mitdb
    assert ds.X.shape[1:] == (256, 1) and ds.X.dtype == np.float32
    assert np.isfinite(ds.X).all() and np.isfinite(ds.rr).all()
    assert np.allclose(ds.X.mean(axis=(1, 2)), 0, atol=1e-3)
    # a z-score: unit spread too (what the sidecar tells device code), but where clipping at +-20 bit
    unclipped = np.abs(ds.X).max(axis=(1, 2)) < 20
    assert unclipped.mean() > 0.99 and np.allclose(ds.X[unclipped].std(axis=(1, 2)), 1, atol=1e-3)
    assert set(ds.records[ds.split == "search"]) <= set(DS1)
    assert set(ds.records[ds.split == "test"]) <= set(DS2)
    assert not set(ds.groups[ds.split == "search"]) & set(ds.groups[ds.split == "test"])


def test_rr_features_flag_premature_beats(small_mitdb):
    """Premature (S/V) beats have a shorter pre-RR relative to the recent rhythm than normal beats."""
    ds = small_mitdb
    assert np.median(ds.rr[ds.label == "V", 2]) < np.median(ds.rr[ds.label == "N", 2]) - 0.1


def test_cache_hit_returns_same_arrays(small_mitdb):
    from conftest import SMALL_RECORDS

    again = load_dataset("mitdb", records=SMALL_RECORDS, window=256)
    assert again.info["cache"]["hit"]
    np.testing.assert_array_equal(again.X, small_mitdb.X)
    np.testing.assert_array_equal(again.groups, small_mitdb.groups)


def test_every_setting_that_changes_the_arrays_is_in_the_cache_key(tmp_path, monkeypatch):
    """Another window, sampling rate or record list misses the cache: a key without one of them handed out the
    arrays of the other setting (windows of 256 samples for a 128-sample space, beats at the wrong rate)."""
    monkeypatch.setenv("ECG_AUTOML_CACHE", str(tmp_path / "cache"))
    base = load_dataset("mitdb", records=["101"], window=128)
    assert not base.info["cache"]["hit"] and base.X.shape[1] == 128
    for kw, check in [({"window": 96}, lambda ds: ds.X.shape[1] == 96),
                      ({"window": 128, "fs": 120.0}, lambda ds: ds.fs == 120.0),
                      ({"window": 128, "records": ["101", "106"]}, lambda ds: set(ds.records) == {"101", "106"})]:
        ds = load_dataset("mitdb", **{"records": ["101"], **kw})
        assert not ds.info["cache"]["hit"] and check(ds), kw
    again = load_dataset("mitdb", records=["101"], window=128)
    assert again.info["cache"]["hit"] and np.array_equal(again.X, base.X)


@pytest.mark.parametrize("window", [64, 89])
def test_a_short_window_loads_sound_records(tmp_path, monkeypatch, window):
    """Windows under 0.5 s (90 samples at 180 Hz) are allowed, but the beats-look-alike check sliced their centre
    from a negative start, which wrapped to the window's tail (one sample at 89): every sound record was refused as
    "holds something other than this record's ECG", its .dat blamed."""
    from ecg_data.preprocess import neighbour_similarity

    monkeypatch.setenv("ECG_AUTOML_CACHE", str(tmp_path / "cache"))
    ds = load_dataset("mitdb", records=["100", "101"], window=window)
    assert ds.X.shape[1] == window and set(ds.records) == {"100", "101"}
    sim = neighbour_similarity(ds.X[ds.records == "100", :, 0], ds.fs)[0]
    assert np.nanmedian(sim) > 0.9  # beats of one heart, compared over the whole short window


def test_every_signal_file_of_a_ptb_record_is_in_the_cache_key(tmp_path):
    """PTB Diagnostic's headers name a .xyz signal file beside each .dat. The key left it out, so a copy missing or
    damaging one was refused on a cold cache and loaded from a warm one: two workers on one copy disagreed."""
    from ecg_data.cache import _fingerprint

    folder = tmp_path / "ptbdb" / "patient001"
    folder.mkdir(parents=True)
    for ext in ("hea", "dat", "xyz"):
        (folder / f"s0010_re.{ext}").write_bytes(b"x" * 4)
    (tmp_path / "ptbdb" / "RECORDS").write_text("patient001/s0010_re\n")
    before = _fingerprint(tmp_path / "ptbdb")
    assert [f[0] for f in before] == ["RECORDS", *(f"patient001/s0010_re.{e}" for e in ("dat", "hea", "xyz"))]
    (folder / "s0010_re.xyz").write_bytes(b"x")
    assert _fingerprint(tmp_path / "ptbdb") != before


def test_code_that_prepares_the_arrays_is_in_the_cache_key(tmp_path, monkeypatch):
    """An upgrade that changes the preprocessing code (or wfdb, SciPy, scikit-learn) without a PIPELINE_VERSION bump
    prepares the arrays again: before, the key held only the version, so such a change was served stale arrays."""
    from ecg_data import cache

    monkeypatch.setenv("ECG_AUTOML_CACHE", str(tmp_path / "cache"))
    assert not load_dataset("mitdb", records=["101"], window=128).info["cache"]["hit"]
    assert load_dataset("mitdb", records=["101"], window=128).info["cache"]["hit"]
    real = cache.code_digest()
    assert set(real) == {"ecg_data", "wfdb", "scipy", "scikit-learn"}  # scikit-learn: it draws PTB's test patients
    for part in ("ecg_data", "wfdb", "scipy", "scikit-learn"):
        with monkeypatch.context() as m:
            m.setattr(cache, "code_digest", lambda part=part: {**real, part: "other"})
            assert not load_dataset("mitdb", records=["101"], window=128).info["cache"]["hit"], part
    src = tmp_path / "src"
    src.mkdir()
    (src / "preprocess.py").write_text("LOW_HZ = 0.5\n")
    (src / "notes.txt").write_text("not code")
    before = cache.source_digest(src)
    (src / "notes.txt").write_text("changed, but not code")
    assert cache.source_digest(src) == before
    (src / "preprocess.py").write_text("LOW_HZ = 0.7\n")
    assert cache.source_digest(src) != before
    assert real["ecg_data"] == cache.source_digest(ROOT / "ecg_data")  # the package's own files


def _copy_db(data_root, tmp_path, records):
    db = tmp_path / "mitdb"
    db.mkdir()
    for r in records:
        for ext in ("hea", "dat", "atr"):
            shutil.copy(data_root / "mitdb" / f"{r}.{ext}", db / f"{r}.{ext}")
    (db / "RECORDS").write_text("\n".join(records) + "\n")
    return tmp_path


def test_truncated_record_names_file(data_root, tmp_path):
    root = _copy_db(data_root, tmp_path, ["100", "101"])
    dat = root / "mitdb" / "101.dat"
    dat.write_bytes(dat.read_bytes()[:50_000])
    with pytest.raises(RecordError) as err:
        load_dataset("mitdb", root=root, records=["100", "101"], use_cache=False)
    assert "101.dat" in str(err.value) and "truncated" in str(err.value)


def test_a_folder_given_as_a_record_is_named_as_one(data_root, tmp_path):
    """`predict --record .../mitdb` (the folder) answered "mitdb.hea: header file not found"."""
    from ecg_data._wfdb_io import read_header

    root = _copy_db(data_root, tmp_path, ["100", "101"])
    with pytest.raises(RecordError, match=re.escape(f"{root / 'mitdb'}: a folder, not a record: name a record in it, "
                                                    f"without extension, e.g. {root / 'mitdb' / '100'}")):
        read_header(root / "mitdb")


def test_missing_annotations_and_bad_header(data_root, tmp_path):
    root = _copy_db(data_root, tmp_path, ["100", "101"])
    (root / "mitdb" / "100.atr").unlink()
    with pytest.raises(RecordError, match=r"100 has no 100\.atr\. To go on: .*ecg-automl data fetch mitdb"):
        load_dataset("mitdb", root=root, records=["100"], use_cache=False)
    (root / "mitdb" / "101.hea").write_text("this is not a header\n")
    with pytest.raises(RecordError, match=r"101\.hea: unreadable header"):
        load_dataset("mitdb", root=root, records=["101"], use_cache=False)


def test_skip_mode_counts_bad_records(data_root, tmp_path, caplog):
    root = _copy_db(data_root, tmp_path, ["100", "101"])
    (root / "mitdb" / "100.atr").unlink()
    ds = load_dataset("mitdb", root=root, records=["100", "101"], on_bad_record="skip", use_cache=False)
    assert set(ds.records) == {"101"}
    assert len(ds.info["skipped"]) == 1 and ds.info["skipped"][0]["path"].endswith("100.atr")
    assert caplog.text.count("100.atr") == 1 and "skipping bad record" in caplog.text  # logged once, not twice
    for hit in (False, True):  # built and cached, then from the cache: one line each time
        caplog.clear()
        ds = load_dataset("mitdb", root=root, records=["100", "101"], on_bad_record="skip")
        assert ds.info["cache"]["hit"] is hit and caplog.text.count("100.atr") == 1, caplog.text


def test_skip_mode_with_every_record_bad_is_one_clear_error(data_root, tmp_path):
    """Every record asked for skipped as bad ended in a traceback: ValueError "mitdb: no beats were read"."""
    root = _copy_db(data_root, tmp_path, ["100", "101"])
    (root / "mitdb" / "100.atr").unlink()
    (root / "mitdb" / "101.hea").write_text("this is not a header\n")
    with pytest.raises(DataError, match=r"none of the 2 record\(s\) could be read \(--on-bad-record skip skipped "
                                        r"them all\): 101: unreadable header .*; 100: annotation file not found"):
        load_dataset("mitdb", root=root, records=["100", "101"], on_bad_record="skip", use_cache=False)


def test_missing_database_says_where_to_put_it(tmp_path):
    with pytest.raises(DataError) as err:
        load_dataset("mitdb", root=tmp_path / "nowhere", download=False)
    assert "ecg-automl data fetch mitdb" in str(err.value) and "ECG_AUTOML_DATA" in str(err.value)


def test_data_path_of_the_data_root_points_at_its_database_folder(data_root, tmp_path):
    """`--data-path` given the data root instead of its mitdb/ said every record had no header: copy them there."""
    root = _copy_db(data_root, tmp_path, ["100"])
    with pytest.raises(DataError, match=rf"holds no mitdb records, but its subfolder mitdb/ does: did you mean "
                                        rf"--data-path {root / 'mitdb'}\?"):
        load_dataset("mitdb", path=root, records=["100"], use_cache=False)
    assert set(load_dataset("mitdb", path=root / "mitdb", records=["100"], use_cache=False).records) == {"100"}


def test_unknown_dataset_and_records():
    with pytest.raises(DataError, match="unknown dataset"):
        load_dataset("nosuchdb")
    with pytest.raises(DataError, match="paced"):
        load_dataset("mitdb", records=["102"])


def test_download_failure_says_where_to_put_files(tmp_path, monkeypatch):
    """With no network, fetching fails with the folder to fill by hand (wfdb's download is made to fail)."""
    def offline(*args, **kwargs):
        raise ConnectionError("Failed to establish a new connection: network is unreachable")

    monkeypatch.setattr(wfdb, "dl_database", offline)
    with pytest.raises(DataError) as err:
        load_dataset("mitdb", root=tmp_path)
    msg = str(err.value)
    assert "could not download 'mitdb'" in msg and str(tmp_path / "mitdb") in msg and "RECORDS" in msg


@pytest.fixture
def silent_proxy(monkeypatch):
    """An HTTP(S) proxy that accepts connections and never answers: a stalled network, firewall or proxy."""
    import socket
    import threading

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held = []

    def accept():
        while True:
            try:
                held.append(server.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    url = f"http://127.0.0.1:{server.getsockname()[1]}"
    for var in ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"):
        monkeypatch.setenv(var, url)
    for var in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(var, raising=False)
    yield url
    server.close()
    for c in held:
        c.close()


def test_a_download_that_stalls_fails_instead_of_hanging(tmp_path, monkeypatch, silent_proxy):
    """wfdb sends its requests without a timeout: a server that went silent hung `data fetch` (and a search on
    an empty data root) forever."""
    import threading

    import ecg_data._paths as paths

    monkeypatch.setattr(paths, "DOWNLOAD_TIMEOUT", 1.0, raising=False)
    outcome: list[BaseException] = []

    def fetch():
        try:
            fetch_database("mitdb", tmp_path)
        except BaseException as exc:
            outcome.append(exc)

    worker = threading.Thread(target=fetch, daemon=True)
    worker.start()
    worker.join(30)
    assert not worker.is_alive(), "the download still hangs after 30 s"
    (err,) = outcome
    assert isinstance(err, DataError) and "could not download 'mitdb'" in str(err) and "timed out" in str(err)
    assert str(tmp_path / "mitdb") in str(err)
    from wfdb.io import _url

    assert "request" not in vars(_url._get_session())  # the session is left as wfdb made it


def test_a_data_root_that_is_a_file_is_named_not_a_traceback(tmp_path, monkeypatch):
    """ECG_AUTOML_DATA pointing at a file: a search (which downloads a missing database) ended in
    NotADirectoryError from mkdir."""
    root = tmp_path / "data.zip"
    root.write_bytes(b"PK")
    monkeypatch.setenv("ECG_AUTOML_DATA", str(root))
    with pytest.raises(DataError) as err:
        load_dataset("mitdb", records=["101"])
    assert f"the data root {root} (ECG_AUTOML_DATA) is a file; it must be the folder that holds mitdb/" in str(err.value)
    assert "ECG_AUTOML_DATA" in str(err.value) and root.read_bytes() == b"PK"


def test_failed_fetch_leaves_no_empty_folder(tmp_path, monkeypatch):
    """A download that fails before any file arrives leaves no empty database folder (nor the root it made):
    an empty mitdb/ would read as a download that happened."""
    def offline(slug, dl_dir, **kwargs):
        (Path(dl_dir) / "x").mkdir()
        raise ConnectionError("network is unreachable")

    monkeypatch.setattr(wfdb, "dl_database", offline)
    root = tmp_path / "new-root"
    with pytest.raises(DataError, match="could not download 'mitdb'") as err:
        fetch_database("mitdb", root)
    assert "resumes" not in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_failed_fetch_keeps_what_it_downloaded_and_what_was_there(tmp_path, monkeypatch):
    """Files downloaded before the failure stay (wfdb resumes from them: nothing fetched is lost on a flaky
    network) and so does everything that was there; only folders left empty go."""
    def offline_after_one_file(slug, dl_dir, **kwargs):
        (Path(dl_dir) / "101.hea").write_text("downloaded")
        (Path(dl_dir) / "empty").mkdir()
        raise ConnectionError("network is unreachable")

    monkeypatch.setattr(wfdb, "dl_database", offline_after_one_file)
    db = tmp_path / "mitdb"
    (db / "mine").mkdir(parents=True)
    (db / "100.hea").write_text("copied by hand")
    (db / "mine" / "notes.txt").write_text("keep")
    with pytest.raises(DataError, match="The 1 files downloaded so far are kept: the same command resumes"):
        fetch_database("mitdb", tmp_path)
    assert sorted(p.relative_to(db).as_posix() for p in db.rglob("*")) == ["100.hea", "101.hea", "mine",
                                                                          "mine/notes.txt"]
    assert (db / "100.hea").read_text() == "copied by hand"


def test_missing_database_without_download_writes_nothing(tmp_path):
    """download=False (what `data info` uses) reports a missing database with the fetch command, creating nothing."""
    with pytest.raises(DataError) as err:
        load_dataset("ptbdb", root=tmp_path, download=False)
    assert f"ecg-automl data fetch ptbdb --root {tmp_path}" in str(err.value)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("header, problem", [
    ("203 2 360 garbage\n\n", "malformed header: the record line '203 2 360 garbage' gives no valid sample count"),
    ("203 2 360 650000\n203.dat 212 200 11 1024 972 5391 0 MLII\n",
     "malformed header: the record line '203 2 360 650000' declares 2 signal(s), but 1 signal line(s) could be read"),
    # a zero rate crashed the band-pass filter with "ValueError: Wn[0] must be less than Wn[1]"; wfdb read a
    # negative one as its default 250 Hz, silently
    ("203 2 0 650000\n203.dat 212 200 11 1024 972 5391 0 MLII\n203.dat 212 200 11 1024 1001 2216 0 V1\n",
     "malformed header: the record line '203 2 0 650000' gives no valid sampling rate ('0'"),
    ("203 2 -360 650000\n203.dat 212 200 11 1024 972 5391 0 MLII\n203.dat 212 200 11 1024 1001 2216 0 V1\n",
     "malformed header: the record line '203 2 -360 650000' gives no valid sampling rate ('-360'"),
    # cut inside the last signal line: wfdb read its name as None, and PTB-XL's loader failed with an AttributeError
    ("203 2 360 650000\n203.dat 212 200 11 1024 972 5391 0 MLII\n203.dat 212 200 11 1024 1001 2216 0 V1\n"[:-12],
     "malformed header: signal line(s) 2 of 2 end before the signal's checksum and name, which the others give"),
])
def test_malformed_header_is_reported_as_such(data_root, tmp_path, header, problem):
    """Headers wfdb parses leniently are a malformed header of the named file, not a missing channel."""
    root = _copy_db(data_root, tmp_path, ["203"])
    (root / "mitdb" / "203.hea").write_text(header)
    with pytest.raises(RecordError) as err:
        load_dataset("mitdb", root=root, records=["203"], use_cache=False)
    assert f"203 is damaged (203.hea: {problem}" in str(err.value) and "no channel" not in str(err.value)


def test_a_signal_line_without_a_name_but_whole_is_a_valid_header(data_root, tmp_path):
    """WFDB makes a signal's name optional: a line with every field up to its block size and no name is a header, not
    a cut one (the check for cut lines refused it, and predict with it)."""
    root = _copy_db(data_root, tmp_path, ["100"])
    hea = root / "mitdb" / "100.hea"
    lines = hea.read_text().splitlines()
    lines[2] = " ".join(lines[2].split()[:8])  # V5's line without its name
    hea.write_text("\n".join(lines) + "\n")
    ds = load_dataset("mitdb", root=root, records=["100"], use_cache=False)
    assert len(ds) > 2000


def test_a_mitdb_header_with_another_sampling_rate_is_refused(data_root, tmp_path):
    """A header edited to 36 Hz was used: the beats were resampled from the wrong rate without a word."""
    root = _copy_db(data_root, tmp_path, ["203"])
    hea = root / "mitdb" / "203.hea"
    hea.write_bytes(hea.read_bytes().replace(b"203 2 360 ", b"203 2 36 ", 1))
    with pytest.raises(RecordError) as err:
        load_dataset("mitdb", root=root, records=["203"], use_cache=False)
    assert err.value.path == str(hea)
    assert "sampling rate 36 Hz, but every MIT-BIH record is sampled at 360 Hz" in err.value.problem


def test_a_mitdb_signal_file_of_the_right_size_but_not_its_ecg_is_refused(data_root, tmp_path):
    """A .dat of random bytes, or another record's .dat, reads without error (same size, format 212): it loaded, and
    a model trained on noise labelled with real beat classes; `--on-bad-record skip` now skips it by name."""
    root = _copy_db(data_root, tmp_path, ["100", "101", "103"])
    db = root / "mitdb"
    dat = db / "101.dat"
    dat.write_bytes(np.random.default_rng(0).integers(0, 256, dat.stat().st_size, dtype=np.uint8).tobytes())
    shutil.copy(data_root / "mitdb" / "105.dat", db / "103.dat")  # another record's signal under 103's beats
    for rec in ("101", "103"):
        with pytest.raises(RecordError) as err:
            load_dataset("mitdb", root=root, records=[rec], use_cache=False)
        assert err.value.path == str(db / f"{rec}.dat")
        assert "does not match its header" in err.value.problem  # the header's checksums, first
        assert f"Remove it and run `ecg-automl data fetch mitdb --root {root}`" in err.value.problem
    ds = load_dataset("mitdb", root=root, records=["100", "101", "103"], use_cache=False, on_bad_record="skip")
    assert set(ds.records) == {"100"}
    assert [s["path"] for s in ds.info["skipped"]] == [str(db / "101.dat"), str(db / "103.dat")]
    # a header whose checksums were rewritten to match (the file and its header both replaced, or rewritten by a
    # tool): the beats check still finds them
    _match_checksums(db / "101")
    with pytest.raises(RecordError) as err:
        load_dataset("mitdb", root=root, records=["101"], use_cache=False)
    assert err.value.path == str(db / "101.dat")
    assert "does not look like beats of one heart" in err.value.problem
    assert f"ecg-automl data fetch mitdb --root {root}" in err.value.problem
    # another record's ECG, header and all: its own beats look like one heart's, so which of the two files is not
    # 103's the signal cannot tell, and both are named
    _match_checksums(db / "103")
    with pytest.raises(RecordError) as err:
        load_dataset("mitdb", root=root, records=["103"], use_cache=False)
    assert err.value.path == str(db / "103.atr")
    assert "its beats do not fall on the heartbeats of 103.dat" in err.value.problem, err.value.problem
    assert ("one of the two files is another record's or damaged, 103.atr or 103.dat with its header. Remove 103.atr, "
            f"103.dat and 103.hea and run `ecg-automl data fetch mitdb --root {root}`") in err.value.problem


def test_a_mitdb_annotation_file_cut_short_garbled_or_another_record_s_is_refused(data_root, tmp_path):
    """A .atr cut short read without an error as the beats before the cut (105: 1,402 beats of 2,566) and `data
    fetch` called the copy complete; random bytes read as 3 beats, or as beats outside the record; and another
    record's .atr was blamed on the record's sound .dat, whose removal did not help."""
    from ecg_data._paths import damaged_record_files
    from ecg_data._wfdb_io import read_annotations

    root = _copy_db(data_root, tmp_path, ["105"])
    db = root / "mitdb"
    atr = db / "105.atr"
    whole = atr.read_bytes()
    for damaged in (whole[:3000], np.random.default_rng(3).bytes(len(whole))):
        atr.write_bytes(damaged)
        for load in (lambda: load_dataset("mitdb", root=root, records=["105"], use_cache=False),
                     lambda: read_annotations(db / "105")):
            with pytest.raises(RecordError, match="105.atr: cut short or garbled: it does not end with the two zero "
                                                  "bytes that end every WFDB annotation file"):
                load()
        assert damaged_record_files(db, "105", "atr").startswith("105.atr: cut short or garbled")  # what fetch asks
    shutil.copy(data_root / "mitdb" / "203.atr", atr)
    with pytest.raises(RecordError) as err:
        load_dataset("mitdb", root=root, records=["105"], use_cache=False)
    assert err.value.path == str(atr) and "its beats do not fall on the heartbeats of 105.dat" in err.value.problem
    # a whole file whose beats lie past the record's end (another record's, or written for a longer one)
    import wfdb

    wfdb.wrann("105", "atr", np.array([100, 5000, 700_000]), np.array(["N", "N", "N"]), write_dir=str(db))
    assert damaged_record_files(db, "105", "atr") == ""
    with pytest.raises(RecordError, match=r"1 of its 3 annotations lie outside the record \(samples 0-649999\), the "
                                          r"first at sample 700000: the file is damaged or another record's"):
        read_annotations(db / "105", n_samples=650_000)


def _match_checksums(record: Path) -> None:
    """Rewrite the checksums in ``record``'s header to those of its signal file as it is."""
    import wfdb

    got = wfdb.rdrecord(str(record), physical=False).calc_checksum()
    hea = record.with_suffix(".hea")
    lines = hea.read_text().splitlines()
    for i, checksum in enumerate(got, start=1):  # signal line i: file fmt gain bits zero initial CHECKSUM block name
        fields = lines[i].split()
        fields[6] = str((int(checksum) + 32768) % 65536 - 32768)
        lines[i] = " ".join(fields)
    hea.write_text("\n".join(lines) + "\n")


def test_records_and_window_of_the_wrong_kind_are_refused_by_name(small_mitdb):
    """records="101" was read letter by letter, records=[101] did not match "101", and records=[] handed out
    the whole cached database as if no filter was given; a window of 100.5 failed deep in indexing."""
    with pytest.raises(TypeError, match=r"not one string: records=\['101'\]"):
        load_dataset("mitdb", records="101")
    with pytest.raises(DataError, match="records is empty"):
        load_dataset("mitdb", records=[])
    as_numbers = load_dataset("mitdb", records=[101, 100])
    assert set(as_numbers.records) == {"101", "100"}
    assert len(as_numbers) == int(np.isin(small_mitdb.records, ["101", "100"]).sum())
    for window in ("256", 100.5):
        with pytest.raises(TypeError, match="window must be a whole number"):
            load_dataset("mitdb", records=["101"], window=window)
    with pytest.raises(TypeError, match="fs must be a number"):
        load_dataset("mitdb", records=["101"], fs="180")


def test_repr_is_one_line_of_counts(small_mitdb):
    """A notebook user typing the dataset's name gets its size, not every array."""
    text = repr(small_mitdb)
    assert "\n" not in text and len(text) < 300, text
    assert f"{len(small_mitdb):,} beats" in text and "array(" not in text
    assert f"search {int((small_mitdb.split == 'search').sum()):,}" in text


def test_partial_mitdb_folder_names_every_missing_record(data_root, tmp_path):
    """A folder with only some records (a partial download, a hand copy) is one error naming all that are
    missing and the ways on, not a stop at the first one; skip mode still reads what is there."""
    root = _copy_db(data_root, tmp_path, ["100", "101"])
    with pytest.raises(RecordError) as err:
        load_dataset("mitdb", root=root, records=["100", "101", "103", "106"], use_cache=False)
    msg = str(err.value)
    assert "2 of the 4 MIT-BIH records asked for have no header" in msg and "106, 103." in msg
    assert "--records with the ones present (101,100)" in msg
    assert f"ecg-automl data fetch mitdb --root {root}" in msg
    ds = load_dataset("mitdb", root=root, records=["100", "101", "103"], on_bad_record="skip", use_cache=False)
    assert set(ds.records) == {"100", "101"} and len(ds.info["skipped"]) == 1


def test_an_interrupted_ptbxl_download_is_not_taken_for_a_database(tmp_path, monkeypatch):
    """PTB-XL's table came first (the record list is in it), and it is the file whose presence means "downloaded":
    after a download cut off among the records, every later load took the folder for the database and failed on
    the first missing record instead of resuming. The tables now arrive last, after every record."""
    def tables(slug, dl_dir, files, **kwargs):
        Path(dl_dir).mkdir(parents=True, exist_ok=True)
        for f in files:
            text = "ecg_id,filename_lr\n1,records100/00000/00001_lr\n2,records100/00000/00002_lr\n"
            (Path(dl_dir) / f).write_text(text)

    def records_then_offline(slug, dl_dir, records, **kwargs):
        (Path(dl_dir) / "records100" / "00000").mkdir(parents=True)
        (Path(dl_dir) / f"{records[0]}.hea").write_text("downloaded")
        raise ConnectionError("network is unreachable")

    monkeypatch.setattr(wfdb, "dl_files", tables)
    monkeypatch.setattr(wfdb, "dl_database", records_then_offline)
    with pytest.raises(DataError, match="could not download 'ptbxl'.*the same command resumes"):
        fetch_database("ptbxl", tmp_path)
    assert not (tmp_path / "ptbxl" / "ptbxl_database.csv").exists()
    with pytest.raises(DataError, match="database 'ptbxl' is not under"):
        load_dataset("ptbxl", root=tmp_path, download=False)

    def all_records(slug, dl_dir, records, **kwargs):
        for r in records:
            (Path(dl_dir) / f"{r}.hea").write_text("downloaded")

    monkeypatch.setattr(wfdb, "dl_database", all_records)
    db = fetch_database("ptbxl", tmp_path)
    assert sorted(p.relative_to(db).as_posix() for p in db.rglob("*") if p.is_file()) == [
        "ptbxl_database.csv", "records100/00000/00001_lr.hea", "records100/00000/00002_lr.hea", "scp_statements.csv"]


def test_fetch_of_a_database_already_there_does_not_download(data_root, tmp_path, monkeypatch):
    """`data fetch mitdb` on a complete copy (RECORDS present) went to PhysioNet again: offline, or on a read-only
    shared copy, it failed with 'copy the PhysioNet files of mitdb there yourself (the folder must contain
    RECORDS)', which it did."""
    def offline(*args, **kwargs):
        raise ConnectionError("network is unreachable")

    monkeypatch.setattr(wfdb, "dl_database", offline)
    monkeypatch.setattr(wfdb, "dl_files", offline)
    db = _copy_db(data_root, tmp_path, ["100"]) / "mitdb"
    assert fetch_database("mitdb", tmp_path) == db
    assert sorted(p.name for p in db.iterdir()) == ["100.atr", "100.dat", "100.hea", "RECORDS"]


def test_fetch_completes_a_copy_whose_records_file_lists_missing_records(data_root, tmp_path, monkeypatch):
    """A hand copy holds RECORDS but not every record it lists: fetch downloads the rest (wfdb skips the files
    that are there), as the partial-folder error tells the user to do."""
    asked: list[str] = []
    monkeypatch.setattr(wfdb, "dl_database", _download_from(data_root, asked))
    monkeypatch.setattr(wfdb, "dl_files", lambda *a, **kw: None)
    db = _copy_db(data_root, tmp_path, ["100"]) / "mitdb"
    (db / "RECORDS").write_text("100\n101\n")
    assert fetch_database("mitdb", tmp_path) == db and asked == ["mitdb"]
    assert (db / "101.hea").read_bytes() == (data_root / "mitdb" / "101.hea").read_bytes()


def _download_from(data_root, asked):
    """A stand-in for wfdb.dl_database: copies the files missing in ``dl_dir`` from the real MIT-BIH copy (wfdb
    skips the files already there), noting each call in ``asked``."""
    def dl_database(slug, dl_dir, **kwargs):
        asked.append(slug)
        for src in (data_root / "mitdb").iterdir():
            if src.suffix in (".hea", ".dat", ".atr") and not (Path(dl_dir) / src.name).exists():
                shutil.copy(src, Path(dl_dir) / src.name)
    return dl_database


def test_fetch_completes_records_missing_their_signal_or_annotation_file(data_root, tmp_path, monkeypatch):
    """`data fetch` checked only each listed record's header: a copy without 101.dat or 103.atr was reported as
    present, and loading failed later. The header is read with wfdb for its signal files; MIT-BIH records need
    their .atr too. Such a copy is completed; a complete one is left alone, with no network access."""
    root = _copy_db(data_root, tmp_path, ["100", "101", "103"])
    db = root / "mitdb"
    (db / "101.dat").unlink()
    (db / "103.atr").unlink()
    asked: list[str] = []
    monkeypatch.setattr(wfdb, "dl_database", _download_from(data_root, asked))
    monkeypatch.setattr(wfdb, "dl_files", lambda *a, **kw: None)
    assert fetch_database("mitdb", root) == db and asked == ["mitdb"]
    assert (db / "101.dat").read_bytes() == (data_root / "mitdb" / "101.dat").read_bytes()
    assert (db / "103.atr").is_file()
    assert fetch_database("mitdb", root) == db and asked == ["mitdb"]  # complete now: no second download
    ds = load_dataset("mitdb", root=root, records=["100", "101", "103"], use_cache=False)
    assert set(ds.records) == {"100", "101", "103"}

    # the signal file is the one the header names (not guessed from the record name)
    hea = db / "100.hea"
    hea.write_text(hea.read_text().replace("100.dat", "100-signal.dat"))
    asked.clear()
    monkeypatch.setattr(wfdb, "dl_database", lambda slug, dl_dir, **kw: asked.append(slug) or shutil.copy(
        db / "100.dat", Path(dl_dir) / "100-signal.dat"))
    assert fetch_database("mitdb", root) == db and asked == ["mitdb"]
    assert (db / "100-signal.dat").is_file()


def test_fetch_that_leaves_a_record_incomplete_says_which(data_root, tmp_path, monkeypatch):
    """A download that does not bring the missing file (a record PhysioNet does not have) is not reported as a
    complete database."""
    root = _copy_db(data_root, tmp_path, ["100", "101"])
    (root / "mitdb" / "101.atr").unlink()
    monkeypatch.setattr(wfdb, "dl_database", lambda *a, **kw: None)
    monkeypatch.setattr(wfdb, "dl_files", lambda *a, **kw: None)
    with pytest.raises(DataError, match=r"but 1 record\(s\) its RECORDS lists are still incomplete: "
                                        r"101: no 101\.atr\. Copy those files there by hand"):
        fetch_database("mitdb", root)


def _wfdb_completes_from(data_root, asked):
    """A stand-in for wfdb.dl_database with ``overwrite=False``, as wfdb 4.3 does it: a file that is not there is
    downloaded, one shorter than PhysioNet's gets the rest appended, one of the same size is left as it is."""
    def dl_database(slug, dl_dir, **kwargs):
        asked.append(slug)
        for local in Path(dl_dir).iterdir():
            remote = data_root / "mitdb" / local.name
            if local.suffix in (".hea", ".dat", ".atr") and local.stat().st_size < remote.stat().st_size:
                with open(local, "ab") as fh:
                    fh.write(remote.read_bytes()[local.stat().st_size:])
    return dl_database


def test_fetch_completes_files_cut_short_and_names_those_it_cannot(data_root, tmp_path, monkeypatch):
    """`data fetch` said "mitdb is in ..." of a copy with an empty .atr and a truncated .dat, the very files a
    load then called "an interrupted copy or download? Copy or download it again". Such records now count as
    incomplete: the download (which appends the rest of a shorter file) completes them, and a damaged file it
    cannot mend (a garbled header as long as PhysioNet's) is named, with how to get it whole."""
    root = _copy_db(data_root, tmp_path, ["100", "101", "103"])
    db = root / "mitdb"
    (db / "100.atr").write_bytes(b"")
    (db / "101.dat").write_bytes((data_root / "mitdb" / "101.dat").read_bytes()[:100_000])
    asked: list[str] = []
    monkeypatch.setattr(wfdb, "dl_database", _wfdb_completes_from(data_root, asked))
    monkeypatch.setattr(wfdb, "dl_files", lambda *a, **kw: None)
    assert fetch_database("mitdb", root) == db and asked == ["mitdb"]
    for name in ("100.atr", "101.dat"):
        assert (db / name).read_bytes() == (data_root / "mitdb" / name).read_bytes()
    ds = load_dataset("mitdb", root=root, records=["100", "101", "103"], use_cache=False)
    assert set(ds.records) == {"100", "101", "103"}
    assert fetch_database("mitdb", root) == db and asked == ["mitdb"]  # sound now: no second download

    header = (db / "103.hea").read_bytes()
    (db / "103.hea").write_bytes(b"#" * len(header))  # the same size: wfdb leaves it as it is
    with pytest.raises(DataError) as err:
        fetch_database("mitdb", root)
    assert asked == ["mitdb", "mitdb"]
    msg = str(err.value)
    assert "1 record(s) its RECORDS lists are still incomplete: 103: 103.hea: unreadable header" in msg, msg
    assert "remove the damaged files and run the same command again, which downloads them whole" in msg


def test_the_records_a_load_error_suggests_are_sound(data_root, tmp_path):
    """The error for a copy with a missing file suggested going on with records that were themselves cut short or
    garbled, so following it led to the next error, record by record. It now names every damaged record too
    (truncated signal, garbled header, empty annotations) and suggests only sound ones."""
    root = _copy_db(data_root, tmp_path, ["100", "101", "103", "105", "106"])
    db = root / "mitdb"
    (db / "101.atr").unlink()
    (db / "103.dat").write_bytes((db / "103.dat").read_bytes()[:100_000])
    (db / "105.hea").write_text("junk junk\n")
    (db / "106.atr").write_bytes(b"")
    with pytest.raises(RecordError) as err:
        load_dataset("mitdb", root=root, records=["100", "101", "103", "105", "106"], use_cache=False)
    msg = str(err.value)
    assert "4 of the 5 MIT-BIH records asked for are incomplete or damaged" in msg, msg
    assert "101 has no 101.atr" in msg and "103 is damaged (103.dat: truncated: 100000 bytes" in msg
    assert "105 is damaged (105.hea: unreadable header" in msg
    assert "106 is damaged (106.atr: empty annotation file (0 bytes))" in msg
    assert "--records with the complete ones (100) or --on-bad-record skip" in msg
    ds = load_dataset("mitdb", root=root, records=["100", "101", "103", "105", "106"], on_bad_record="skip",
                      use_cache=False)
    assert set(ds.records) == {"100"}


@pytest.mark.parametrize("gone, names", [("101.dat", "101 has no 101.dat"), ("101.atr", "101 has no 101.atr")])
def test_a_record_missing_its_signal_or_annotations_names_it_and_the_fetch_command(data_root, tmp_path, gone, names):
    """Loading a copy whose record lacks its .dat or .atr named the file but not the way on: the error names the
    record, the missing file, and `ecg-automl data fetch` (as for a missing header); skip mode reads the rest."""
    root = _copy_db(data_root, tmp_path, ["100", "101"])
    (root / "mitdb" / gone).unlink()
    with pytest.raises(RecordError) as err:
        load_dataset("mitdb", root=root, records=["100", "101"], use_cache=False)
    msg = str(err.value)
    assert "1 of the 2 MIT-BIH records asked for is incomplete" in msg and names in msg, msg
    assert "--records with the complete ones (100)" in msg
    assert f"ecg-automl data fetch mitdb --root {root}" in msg
    ds = load_dataset("mitdb", root=root, records=["100", "101"], on_bad_record="skip", use_cache=False)
    assert set(ds.records) == {"100"} and len(ds.info["skipped"]) == 1


def _ptbxl_copy(data_root, tmp_path, n):
    """``<tmp>/root/ptbxl`` holding PTB-XL's first ``n`` records and a table that lists only those (a subset)."""
    src, db = data_root / "ptbxl", tmp_path / "root" / "ptbxl"
    (db / "records100" / "00000").mkdir(parents=True)
    shutil.copy(src / "scp_statements.csv", db)
    lines = (src / "ptbxl_database.csv").read_text(encoding="utf-8").splitlines(keepends=True)
    (db / "ptbxl_database.csv").write_text("".join(lines[:n + 1]), encoding="utf-8")
    for i in range(1, n + 1):
        for ext in ("hea", "dat"):
            shutil.copy(src / "records100" / "00000" / f"{i:05d}_lr.{ext}", db / "records100" / "00000")
    return db


def _no_tables(*args, **kwargs):
    raise AssertionError("the tables were downloaded again")


def test_fetch_completes_a_ptbxl_copy_whose_records_lack_files(ptbxl_root, tmp_path, monkeypatch):
    """PTB-XL's "downloaded" marker is its table, and fetch checked no record: a copy without a record's .dat (or
    the whole record) was reported as present, and loading failed later. The records the table lists are checked
    now; the missing ones, and only those, are downloaded, and the table (which may list a subset) is kept."""
    db = _ptbxl_copy(ptbxl_root, tmp_path, 5)
    (db / "records100" / "00000" / "00002_lr.dat").unlink()
    for ext in ("hea", "dat"):
        (db / "records100" / "00000" / f"00004_lr.{ext}").unlink()
    table = (db / "ptbxl_database.csv").read_bytes()
    asked = []

    def dl_database(slug, dl_dir, records="all", annotators="all", **kwargs):
        asked.append((slug, list(records)))
        for r in records:
            for ext in ("hea", "dat"):
                if not Path(dl_dir, f"{r}.{ext}").exists():
                    shutil.copy(ptbxl_root / "ptbxl" / f"{r}.{ext}", Path(dl_dir, f"{r}.{ext}"))

    monkeypatch.setattr(wfdb, "dl_database", dl_database)
    monkeypatch.setattr(wfdb, "dl_files", _no_tables)
    assert fetch_database("ptbxl", db.parent) == db
    assert asked == [("ptb-xl", ["records100/00000/00002_lr", "records100/00000/00004_lr"])]
    for ext in ("hea", "dat"):
        name = f"records100/00000/00004_lr.{ext}"
        assert (db / name).read_bytes() == (ptbxl_root / "ptbxl" / name).read_bytes()
    assert (db / "ptbxl_database.csv").read_bytes() == table
    assert fetch_database("ptbxl", db.parent) == db and len(asked) == 1  # complete now: no second download
    # the shared 500-record subset lists only its own records: complete, nothing downloaded
    assert fetch_database("ptbxl", ptbxl_root) == ptbxl_root / "ptbxl" and len(asked) == 1


def test_fetch_completes_a_ptbxl_copy_without_its_statement_table(ptbxl_root, tmp_path, monkeypatch):
    """A PTB-XL mirror without scp_statements.csv (the workplace copy's source lacked it) was reported complete by
    fetch, and every load then failed on the missing table with no way forward. fetch now downloads the table,
    and only it; the load error names that fetch."""
    db = _ptbxl_copy(ptbxl_root, tmp_path, 3)
    (db / "scp_statements.csv").unlink()
    with pytest.raises(DataError, match=r"scp_statements.csv not found .*: download it with `ecg-automl data fetch "
                                        rf"ptbxl --root {re.escape(str(db.parent))}`"):
        load_dataset("ptbxl", root=db.parent, fs=180, window=256, use_cache=False)
    asked = []

    def dl_files(slug, dl_dir, files, **kwargs):
        asked.append((slug, list(files)))
        for f in files:
            shutil.copy(ptbxl_root / "ptbxl" / f, Path(dl_dir, f))

    monkeypatch.setattr(wfdb, "dl_files", dl_files)
    monkeypatch.setattr(wfdb, "dl_database", _no_tables)
    assert fetch_database("ptbxl", db.parent) == db
    assert asked == [("ptb-xl", ["scp_statements.csv"])]
    assert fetch_database("ptbxl", db.parent) == db and len(asked) == 1  # complete now
    assert len(load_dataset("ptbxl", root=db.parent, fs=180, window=256, use_cache=False)) > 0


def test_fetch_of_ptbxl_that_leaves_a_record_incomplete_says_which(ptbxl_root, tmp_path, monkeypatch):
    """A download that does not bring the missing file is an error naming it, not 'ptbxl is in ...'."""
    db = _ptbxl_copy(ptbxl_root, tmp_path, 3)
    (db / "records100" / "00000" / "00002_lr.dat").unlink()
    monkeypatch.setattr(wfdb, "dl_database", lambda *a, **kw: None)
    monkeypatch.setattr(wfdb, "dl_files", _no_tables)
    with pytest.raises(DataError, match=r"but 1 record\(s\) its ptbxl_database\.csv lists are still incomplete: "
                                        r"records100/00000/00002_lr: no records100/00000/00002_lr\.dat\. "
                                        r"Copy those files there by hand, or remove the records from "
                                        r"ptbxl_database\.csv"):
        fetch_database("ptbxl", db.parent)


def test_a_ptbxl_signal_file_swapped_for_another_record_s_is_refused_by_its_checksum(ptbxl_root, tmp_path):
    """Every PTB-XL 100 Hz .dat has the same size, and a record has no beat annotations to check its signal against:
    another record's .dat (a mix-up in a hand copy) loaded as this record's ECG under this record's label. The
    header's checksums (WFDB: the 16-bit sum of each signal's samples) now refuse it, naming the file."""
    db = _ptbxl_copy(ptbxl_root, tmp_path, 3)
    name = "records100/00000/00002_lr"
    shutil.copy(db / "records100/00000/00003_lr.dat", db / f"{name}.dat")
    with pytest.raises(RecordError) as err:
        load_dataset("ptbxl", root=db.parent, use_cache=False, download=False)
    assert err.value.path == str(db / f"{name}.dat")
    assert err.value.problem.startswith("signal 'I' does not match its header (00002_lr.hea): its samples sum to "
                                        "checksum "), err.value.problem
    assert err.value.problem.endswith(f"the file is damaged or another record's. Remove it and run `ecg-automl "
                                      f"data fetch ptbxl --root {db.parent}`, or copy it again"), err.value.problem
    ds = load_dataset("ptbxl", root=db.parent, use_cache=False, download=False, on_bad_record="skip")
    assert set(ds.records) == {"1", "3"} and [s["path"] for s in ds.info["skipped"]] == [str(db / f"{name}.dat")]


def test_a_ptbxl_signal_file_cut_short_is_found_by_load_and_fetch(ptbxl_root, tmp_path, monkeypatch):
    """Only empty PTB-XL files were looked for (reading all 21,799 headers takes minutes): `data fetch` said a copy
    with a .dat cut short was complete, and the load stopped at that record alone. A .dat of another size than
    every PTB-XL 100 Hz file's now has its header read: the load names it among the others, fetch downloads it."""
    db = _ptbxl_copy(ptbxl_root, tmp_path, 3)
    name = "records100/00000/00002_lr"
    dat = db / f"{name}.dat"
    dat.write_bytes(dat.read_bytes()[:10_000])
    with pytest.raises(RecordError, match=rf"1 of the 3 PTB-XL records asked for is incomplete or damaged .*: 2 is "
                                          rf"damaged \({name}\.dat: truncated: 10000 bytes, .* = 24000 bytes\)"):
        load_dataset("ptbxl", root=db.parent, use_cache=False, download=False)
    asked = []

    def dl_database(slug, dl_dir, records="all", annotators="all", **kwargs):  # wfdb appends the rest of the file
        asked.append(list(records))
        for r in records:
            with open(Path(dl_dir, f"{r}.dat"), "ab") as f:
                f.write((ptbxl_root / "ptbxl" / f"{r}.dat").read_bytes()[Path(dl_dir, f"{r}.dat").stat().st_size:])

    monkeypatch.setattr(wfdb, "dl_database", dl_database)
    monkeypatch.setattr(wfdb, "dl_files", _no_tables)
    assert fetch_database("ptbxl", db.parent) == db and asked == [[name]]
    assert dat.read_bytes() == (ptbxl_root / "ptbxl" / f"{name}.dat").read_bytes()
    assert len(load_dataset("ptbxl", root=db.parent, use_cache=False, download=False)) > 0


def test_headers_and_roots_that_are_wrong_are_named_as_what_they_are(data_root, tmp_path):
    """Each error named another cause: a valid multi-segment record was "malformed" (1 signal declared, 0 read), a
    rate of '360x' "gave no valid sample count", a sample count edited down blamed the sound .dat ("damaged or
    another record's. Remove it"), the mitdb folder given as the data root said to fetch into mitdb/mitdb, and a
    .dat given as --data-path made all 44 records "have no header"."""
    from ecg_data import database_dir
    from ecg_data._wfdb_io import read_record

    rec = wfdb.rdrecord(str(data_root / "mitdb" / "100"), sampto=3600)
    for i, (a, b) in enumerate([(0, 1800), (1800, 3600)], start=1):
        wfdb.wrsamp(f"multi_{i}", fs=360, units=["mV", "mV"], sig_name=rec.sig_name, p_signal=rec.p_signal[a:b],
                    fmt=["16", "16"], write_dir=str(tmp_path))
    (tmp_path / "multi.hea").write_text("multi/2 2 360 3600\nmulti_1 1800\nmulti_2 1800\n")
    with pytest.raises(RecordError, match=r"a multi-segment record \(2 segments\), which ecg-automl does not read: "
                                          r"write it as one segment first") as err:
        read_record(tmp_path / "multi")
    r = wfdb.rdrecord(str(tmp_path / "multi"))  # the hint's recipe, which works
    wfdb.wrsamp("multi_single", fs=r.fs, units=r.units, sig_name=r.sig_name, p_signal=r.p_signal,
                fmt=["16"] * r.n_sig, write_dir=str(tmp_path))
    assert read_record(tmp_path / "multi_single").signal.shape == (3600, 2)

    (tmp_path / "data").mkdir()
    root = _copy_db(data_root, tmp_path / "data", ["103"])
    hea = root / "mitdb" / "103.hea"
    text = hea.read_text()
    hea.write_text(text.replace("103 2 360 650000", "103 2 360x 650000", 1))
    with pytest.raises(RecordError, match=r"gives no valid sampling rate \('360x'"):
        read_record(root / "mitdb" / "103")
    hea.write_text(text.replace("103 2 360 650000", "103 2 360 1000", 1))
    with pytest.raises(RecordError, match=r"103.dat holds 1950000 bytes, more than the 3000 its header's 1000 samples "
                                          r"take, so the header's sample count may be what is wrong"):
        read_record(root / "mitdb" / "103")

    db = root / "mitdb"
    for call in (lambda: database_dir("mitdb", db, download=False), lambda: database_dir("mitdb", db),
                 lambda: fetch_database("mitdb", db)):
        with pytest.raises(DataError, match=f"{db} is the mitdb folder itself; the data root is the folder that "
                                            f"holds mitdb/: give {root}"):
            call()
    assert not (db / "mitdb").exists()
    with pytest.raises(DataError, match=f"{db / '103.dat'} is a file; --data-path"):
        load_dataset("mitdb", path=db / "103.dat", use_cache=False)


def test_a_multi_frequency_record_and_a_non_beat_annotation_past_the_end_are_read(data_root, tmp_path):
    """A signal of two samples per frame is read averaged per frame, while its checksum is over every sample: the
    chunked reader (predict) refused such a valid record, and the size hint called its header's sample count wrong.
    A rhythm or comment annotation another tool put past the last sample is no beat, and does not refuse the file."""
    from ecg_data._wfdb_io import read_annotations, read_header, read_record
    from ecg_data.mitdb import AAMI
    from ecg_data.stream import missing_runs

    src = wfdb.rdrecord(str(data_root / "mitdb" / "100"), sampto=3000, physical=False)
    twice = np.repeat(src.d_signal[:, :1], 2, axis=0)  # MLII at two samples per frame, V5 at one
    rec = wfdb.Record(record_name="mf", n_sig=2, fs=360, sig_len=3000, file_name=["mf.dat", "mf.dat"],
                      fmt=["16", "16"], adc_gain=src.adc_gain, baseline=src.baseline, units=src.units,
                      sig_name=src.sig_name, samps_per_frame=[2, 1], e_d_signal=[twice[:, 0], src.d_signal[:, 1]],
                      checksum=[int(twice.sum()) % 65536, int(src.d_signal[:, 1].sum()) % 65536],
                      adc_res=[11, 11], adc_zero=[1024, 1024], init_value=[int(twice[0, 0]), int(src.d_signal[0, 1])],
                      block_size=[0, 0])
    rec.wrsamp(expanded=True, write_dir=str(tmp_path))
    head = read_header(tmp_path / "mf")
    assert head.checksums is None  # not checked: the digital read averages each frame
    missing_runs(head, [0, 1], chunk_s=2.0)  # raised "signal 'MLII' does not match its header"
    assert read_record(tmp_path / "mf").signal.shape == (3000, 2)

    wfdb.wrann("mf", "atr", np.array([100, 500, 900, 3000]), np.array(["N", "V", "N", "+"]),
               aux_note=["", "", "", "(N"], write_dir=str(tmp_path))
    samples, symbols = read_annotations(tmp_path / "mf", n_samples=3000, checked=AAMI)
    assert list(symbols) == ["N", "V", "N", "+"] and samples[-1] == 3000
    with pytest.raises(RecordError, match="1 of its 4 annotations lie outside the record"):
        read_annotations(tmp_path / "mf", n_samples=3000)


def test_a_mistyped_ecg_automl_data_is_named_not_filled_with_a_download(tmp_path, monkeypatch):
    """ECG_AUTOML_DATA=/nonexistent made that folder tree and downloaded MIT-BIH into it; a folder that exists is
    still where a missing database goes (and `data fetch` or --root still create theirs)."""
    from ecg_data import DatabaseNotFoundError, database_dir

    typo = tmp_path / "dta"
    monkeypatch.setenv("ECG_AUTOML_DATA", str(typo))
    with pytest.raises(DatabaseNotFoundError, match=rf"ECG_AUTOML_DATA={typo} does not exist .*mkdir -p {typo}"):
        load_dataset("mitdb", records=["101"])
    assert not typo.exists()
    with pytest.raises(DatabaseNotFoundError, match="is not under"):
        database_dir("mitdb", tmp_path / "elsewhere", download=False)


def test_a_study_with_on_bad_record_skip_loads_without_the_damaged_record(data_root, tmp_path, monkeypatch):
    """`search --on-bad-record skip` reaches the study's data (it was tested through load_dataset only): the
    command line's option is the study's setting, and the study's data leaves the damaged record out by name."""
    from ecg_automl import cli
    from search import load_study_data
    from spaces import SearchSpace

    root = _copy_db(data_root, tmp_path, ["100", "101", "106", "119", "208"])
    (root / "mitdb" / "101.atr").unlink()
    monkeypatch.setattr(cli, "_extra_parsers", [])
    monkeypatch.setenv("ECG_AUTOML_CACHE", str(tmp_path / "cache"))
    space = SearchSpace.load("default")
    args = cli.build_parser().parse_args(["search", "--study", "s", "--data-path", str(root / "mitdb"), "--folds", "2",
                                          "--records", "100,101,106,119,208", "--on-bad-record", "skip"])
    args.metric = cli._quality_metric(args.objective, args.metric)  # as cmd_search does
    settings = cli._search_settings(args, space, ["quality"])
    assert settings.on_bad_record == "skip"
    data = load_study_data(settings, space)
    assert set(data.records) == {"100", "106", "119", "208"}
    assert [skip["path"].rsplit("/", 1)[-1] for skip in data.info["skipped"]] == ["101.atr"]
    with pytest.raises(RecordError, match=r"101 has no 101\.atr"):
        load_study_data(cli._search_settings(args.__class__(**{**vars(args), "on_bad_record": "error"}), space,
                                             ["quality"]), space)


def test_a_record_annotated_with_no_beats_is_a_bad_record_that_skip_mode_skips(data_root, tmp_path):
    """An .atr holding only rhythm and noise annotations stopped the whole load, even with on_bad_record='skip'
    (a DataError, not a RecordError of the named file)."""
    import wfdb

    root = _copy_db(data_root, tmp_path, ["100", "101"])
    wfdb.wrann("100", "atr", np.array([10, 5000]), symbol=["+", "~"], aux_note=["(N", ""],
               write_dir=str(root / "mitdb"))
    with pytest.raises(RecordError, match=r"100\.atr: no beat annotations"):
        load_dataset("mitdb", root=root, records=["100", "101"], use_cache=False)
    ds = load_dataset("mitdb", root=root, records=["100", "101"], on_bad_record="skip", use_cache=False)
    assert set(ds.records) == {"101"} and ds.info["skipped"][0]["path"].endswith("100.atr")


@pytest.mark.parametrize("fs_in, fs", [(360.0, 359.8), (359.8, 180.0), (360.0, 180.0)])
def test_beat_windows_stay_on_their_peaks_at_a_rate_the_resampling_only_approximates(fs_in, fs):
    """The windows were placed at fs / fs_in times each peak, but resample() applies a fraction of at most 1000
    (999/1000 for 360 to 359.8 Hz): 30 minutes in, the R peak had drifted out of its 64-sample window."""
    from ecg_data.preprocess import beats_from_signal

    n = int(30 * 60 * fs_in)
    peaks = np.arange(500, n - 500, int(0.8 * fs_in))
    t = np.arange(n)
    x = np.zeros(n)
    for p in peaks:  # narrow pulses: the beats' R peaks
        x[p - 8:p + 9] = np.exp(-0.5 * ((t[p - 8:p + 9] - p) / 2.0) ** 2)
    windows, _, keep = beats_from_signal(x, fs_in, peaks, fs=fs, length=64)
    where = np.abs(windows[:, :, 0]).argmax(axis=1)
    assert keep.all() and np.abs(where - 32).max() <= 1, (where[:3], where[-3:])


def test_a_ptbxl_header_with_another_sampling_rate_is_refused(ptbxl_root, tmp_path):
    """A records100 header edited to 200 Hz loaded silently: its beats were resampled from the wrong rate and its
    RR intervals halved (PTB-XL's loader checked no rate, MIT-BIH's did)."""
    db = _ptbxl_copy(ptbxl_root, tmp_path, 3)
    hea = db / "records100/00000/00002_lr.hea"
    hea.write_bytes(hea.read_bytes().replace(b"00002_lr 12 100 ", b"00002_lr 12 200 ", 1))
    with pytest.raises(RecordError) as err:
        load_dataset("ptbxl", root=db.parent, use_cache=False, download=False)
    assert err.value.path == str(hea)
    assert "sampling rate 200 Hz, but every PTB-XL records100 file is sampled at 100 Hz" in err.value.problem
    ds = load_dataset("ptbxl", root=db.parent, use_cache=False, download=False, on_bad_record="skip")
    assert set(ds.records) == {"1", "3"}


def test_a_ptbxl_record_with_one_missing_sample_keeps_its_beats(ptbxl_root, tmp_path, caplog):
    """One invalid sample (WFDB's missing value, NaN when read) on lead II made QRS detection find no beat, and the
    record was skipped as having "fewer than 3 beats": the detector now bridges it as the band-pass does."""
    from ecg_data.ptbxl import detect_r_peaks

    db = _ptbxl_copy(ptbxl_root, tmp_path, 3)
    clean = load_dataset("ptbxl", root=db.parent, use_cache=False, download=False)
    rec = wfdb.rdrecord(str(db / "records100/00000/00001_lr"), physical=False)
    peaks = detect_r_peaks(rec.d_signal[:, 1].astype(float), 100.0)
    # on an R peak: resampled before it was bridged, the NaN spread over 0.2 s and that beat was lost
    rec.d_signal[peaks[2], 1] = -32768  # format 16's invalid value
    rec.checksum = rec.calc_checksum()
    rec.wrsamp(write_dir=str(db / "records100/00000"))
    caplog.set_level(logging.WARNING, logger="ecg_data")
    ds = load_dataset("ptbxl", root=db.parent, use_cache=False, download=False)
    assert "fewer than 3 beats" not in caplog.text
    assert np.count_nonzero(ds.records == "1") == np.count_nonzero(clean.records == "1") > 3


def test_mitdb_beats_where_the_signal_is_flat_are_left_out_and_counted(data_root, tmp_path, caplog):
    """A lead-off stretch (a flat line with checksums that match) kept its annotated beats as windows of nothing,
    trained under their labels; they are left out now, logged, and counted for `data info`."""
    root = _copy_db(data_root, tmp_path, ["100", "101"])
    clean = load_dataset("mitdb", root=root, records=["100"], use_cache=False)
    rec = wfdb.rdrecord(str(root / "mitdb" / "100"), physical=False)
    start, stop = 360 * 300, 360 * 360  # one minute flat
    rec.d_signal[start:stop] = rec.d_signal[start]
    rec.checksum = rec.calc_checksum()
    rec.wrsamp(write_dir=str(root / "mitdb"))
    caplog.set_level(logging.WARNING, logger="ecg_data")
    ds = load_dataset("mitdb", root=root, records=["100"], use_cache=False)
    ann = wfdb.rdann(str(root / "mitdb" / "100"), "atr")
    half = 256  # half a window (256 samples at 180 Hz) at the record's 360 Hz
    inside = int(sum(start + half <= s <= stop - half for s, sym in zip(ann.sample, ann.symbol)
                     if sym in "NLRejAaJSVEF"))  # beats whose whole window lies in the flat minute
    left = ds.info["beats_left_out"]["no_signal"]["test"]  # 100 is a DS2 record
    assert left == inside > 50
    assert len(ds) == len(clean) - left and "flat or missing (a lead off?): left out" in caplog.text
    assert np.abs(ds.X).max(axis=(1, 2)).min() >= 1
