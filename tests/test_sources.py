"""The PTB-XL, PTB and heartbeat-CSV sources.

PTB-XL runs on a few records of the real subset under ``$ECG_AUTOML_DATA`` (default ``<repo>/../shared/data``).
PTB and the heartbeat CSVs have no copy on this machine: the tests write small files in their real formats
(PTB records with ``wfdb.wrsamp``, from real MIT-BIH signal resampled to 1000 Hz).
"""

from __future__ import annotations

import ast
import logging
import shutil
import uuid
from pathlib import Path

import numpy as np
import pytest

from ecg_data import (N_RR_FEATURES, DataError, RecordError, load_dataset, normalise, read_heartbeat_csv, read_ptbdb,
                      resample)
from ecg_data.ptbdb import held_out_patients

from conftest import DATA  # the suite's one data root (ECG_AUTOML_DATA, the workplace copy, or the download cache)

PTBXL = DATA / "ptbxl"
MITDB = DATA / "mitdb"

needs_ptbxl = pytest.mark.skipif(not (PTBXL / "ptbxl_database.csv").exists(), reason=f"no PTB-XL under {DATA}")


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    monkeypatch.setenv("ECG_AUTOML_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("ECG_AUTOML_ALLOW_BEAT_SPLIT", raising=False)


# ----------------------------------------------------------------------------------------------- PTB-XL

def _ptbxl_expected():
    """ecg_id -> (y or None, patient, split), computed here straight from the two CSV files."""
    import pandas as pd

    db = pd.read_csv(PTBXL / "ptbxl_database.csv", index_col="ecg_id")
    st = pd.read_csv(PTBXL / "scp_statements.csv", index_col=0)
    diag = st[st["diagnostic"] == 1]["diagnostic_class"].to_dict()
    out = {}
    for ecg_id, row in db.iterrows():
        classes = {diag[c] for c in ast.literal_eval(row["scp_codes"]) if c in diag}
        y = None if not classes else int(bool(classes - {"NORM"}))
        out[int(ecg_id)] = (y, str(int(row["patient_id"])), "test" if row["strat_fold"] == 10 else "search")
    return out


@needs_ptbxl
def test_ptbxl_real_records():
    expected = _ptbxl_expected()
    no_diag = [e for e, (y, _, _) in expected.items() if y is None][:2]
    fold10 = [e for e, (y, _, s) in expected.items() if s == "test" and y is not None][:10]
    others = [e for e, (y, _, s) in expected.items() if s == "search" and y is not None][:18]
    ids = [str(e) for e in no_diag + fold10 + others]
    assert len(ids) == 30

    ds = load_dataset("ptbxl", root=DATA, records=ids, download=False)
    assert ds.X.ndim == 3 and ds.X.shape[1:] == (256, 12) and ds.X.dtype == np.float32
    assert ds.rr.shape == (len(ds), N_RR_FEATURES) and np.isfinite(ds.X).all()
    assert ds.info["excluded_no_diagnosis"] == len(no_diag)
    assert set(ds.records) == {str(e) for e in fold10 + others}  # every labelled record gives beats
    for rec in np.unique(ds.records):
        y, patient, split = expected[int(rec)]
        m = ds.records == rec
        assert 3 <= m.sum() <= 30, rec  # 10 s of ECG
        assert (ds.y[m] == y).all() and (ds.label[m] == ("ABN" if y else "NORM")).all()
        assert (ds.groups[m] == patient).all() and (ds.split[m] == split).all()
    assert set(ds.split) == {"search", "test"}
    assert not set(ds.groups[ds.split == "search"]) & set(ds.groups[ds.split == "test"])

    again = load_dataset("ptbxl", root=DATA, records=list(reversed(ids)), download=False)
    assert again.info["cache"]["hit"] and np.array_equal(again.X, ds.X)


@needs_ptbxl
def test_ptbxl_detects_beats_not_t_waves():
    # Record 1 is sinus rhythm at ~65 bpm; XQRS run directly at 100 Hz reports 22 "beats" (T waves).
    from ecg_data._wfdb_io import read_record
    from ecg_data.ptbxl import detect_r_peaks

    rec = read_record(PTBXL / "records100" / "00000" / "00001_lr")
    peaks = detect_r_peaks(rec.signal[:, 1], rec.fs)
    rr = np.diff(peaks) / rec.fs
    assert 9 <= len(peaks) <= 12 and rr.min() > 0.8


def _ptbxl_tables(tmp_path: Path, edit) -> Path:
    import pandas as pd

    db = pd.read_csv(PTBXL / "ptbxl_database.csv").head(40)
    edit(db)
    folder = tmp_path / "ptbxl"
    folder.mkdir()
    db.to_csv(folder / "ptbxl_database.csv", index=False)
    shutil.copy(PTBXL / "scp_statements.csv", folder)
    return folder


@needs_ptbxl
def test_ptbxl_patient_crossing_folds_is_refused(tmp_path):
    def leak(db):
        test_row = db.index[db["strat_fold"] == 10][0]
        db.loc[db.index[db["strat_fold"] != 10][0], "patient_id"] = db.loc[test_row, "patient_id"]

    folder = _ptbxl_tables(tmp_path, leak)
    with pytest.raises(DataError, match="leak"):
        load_dataset("ptbxl", path=folder)


@needs_ptbxl
def test_ptbxl_scp_codes_are_never_evaluated(tmp_path):
    """The scp_codes column is read as a literal: code in it would run with the user's rights."""
    pwned = tmp_path / "pwned"

    def inject(db):
        db.loc[db.index[3], "scp_codes"] = f"__import__('pathlib').Path({str(pwned)!r}).touch()"

    folder = _ptbxl_tables(tmp_path, inject)
    with pytest.raises(DataError, match="ecg_id 4: scp_codes"):
        load_dataset("ptbxl", path=folder)
    assert not pwned.exists()


def _set(row: int, column: str, value):
    def edit(db):
        db[column] = db[column].astype(object)
        db.loc[db.index[row], column] = value
    return edit


@needs_ptbxl
@pytest.mark.parametrize("edit, message", [
    # each was misreported: a pandas Series printed as a path, 'nan.hea: header file not found', every
    # requested ecg_id 'not in' the table, 'strat_fold np.float64(nan)'
    (lambda db: db.__setitem__("ecg_id", db["ecg_id"].replace(db["ecg_id"].iloc[-1], 3)),
     "ecg_id 3 is in more than one row"),
    (_set(1, "filename_lr", None), "ecg_id 2 has no filename_lr (empty;"),
    (_set(1, "ecg_id", "abc"), "data row 2 has ecg_id 'abc' (expected a whole number)"),
    (_set(1, "strat_fold", None), "ecg_id 2 has strat_fold empty (expected 1-10)"),
], ids=["repeated-ecg_id", "empty-filename_lr", "text-ecg_id", "empty-strat_fold"])
def test_a_broken_ptbxl_table_row_is_named(tmp_path, edit, message):
    folder = _ptbxl_tables(tmp_path, edit)
    with pytest.raises(DataError) as err:
        load_dataset("ptbxl", path=folder, records=["1", "2", "3"], use_cache=False)
    assert str(err.value).startswith(f"{folder / 'ptbxl_database.csv'}: ") and message in str(err.value)


@needs_ptbxl
def test_ptbxl_unknown_record():
    with pytest.raises(DataError, match="999999"):
        load_dataset("ptbxl", root=DATA, records=["1", "999999"], download=False)


def _ptbxl_copy(tmp_path: Path, n: int) -> Path:
    """``<tmp>/root/ptbxl``: the tables listing PTB-XL's first ``n`` records (all labelled), and those records."""
    (tmp_path / "root").mkdir()
    folder = _ptbxl_tables(tmp_path / "root", lambda db: None)
    lines = (folder / "ptbxl_database.csv").read_text(encoding="utf-8").splitlines(keepends=True)
    (folder / "ptbxl_database.csv").write_text("".join(lines[:n + 1]), encoding="utf-8")
    (folder / "records100" / "00000").mkdir(parents=True)
    for i in range(1, n + 1):
        for ext in ("hea", "dat"):
            shutil.copy(PTBXL / "records100" / "00000" / f"{i:05d}_lr.{ext}", folder / "records100" / "00000")
    return folder


@needs_ptbxl
def test_a_ptbxl_record_missing_its_signal_file_names_it_and_the_ways_on(tmp_path):
    """A record without its .dat stopped the load at that file ('signal file is missing'), with no way on: every
    incomplete record is named in one error, with --records/--on-bad-record skip and the data fetch command
    (the folder is named ptbxl, as fetch writes it); skip mode reads the rest."""
    folder = _ptbxl_copy(tmp_path, 5)
    (folder / "records100" / "00000" / "00002_lr.dat").unlink()
    (folder / "records100" / "00000" / "00004_lr.hea").unlink()
    with pytest.raises(RecordError) as err:
        load_dataset("ptbxl", path=folder, use_cache=False)
    msg = str(err.value)
    assert msg.startswith(f"{folder}: 2 of the 5 PTB-XL records asked for are incomplete"), msg
    assert ("2 has no records100/00000/00002_lr.dat; 4 has no records100/00000/00004_lr.hea" in msg
            and "--records with the complete ones (1,3,5) or --on-bad-record skip" in msg), msg
    assert f"complete the download with `ecg-automl data fetch ptbxl --root {folder.parent}`" in msg, msg
    ds = load_dataset("ptbxl", path=folder, on_bad_record="skip", use_cache=False)
    assert set(ds.records) == {"1", "3", "5"} and len(ds.info["skipped"]) == 2


@needs_ptbxl
def test_a_ptbxl_subset_copy_loads_the_records_present_and_says_how_many_are_not(tmp_path, caplog):
    """A copy holding some of the records its table lists (a subset: neither .hea nor .dat of the others) is not
    reported as broken: loading reads the records there and says how many of the table's are not (also when the
    arrays come from the cache). A record asked for by name that is not there is an error."""
    folder = _ptbxl_copy(tmp_path, 5)
    for i in (2, 5):
        for ext in ("hea", "dat"):
            (folder / "records100" / "00000" / f"0000{i}_lr.{ext}").unlink()
    for attempt in ("built", "cached"):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="ecg_data"):
            ds = load_dataset("ptbxl", path=folder)
        assert set(ds.records) == {"1", "3", "4"} and ds.info["not_in_copy"] == {"count": 2, "examples": [2, 5]}
        assert ds.info["cache"]["hit"] is (attempt == "cached")
        assert ("2 of the 5 records ptbxl_database.csv lists are not in" in caplog.text
                and "reading the 3 there" in caplog.text), caplog.text
    with pytest.raises(RecordError, match=r"1 of the 2 PTB-XL records asked for is incomplete .*: 2 has no "
                                          r"records100/00000/00002_lr\.hea"):
        load_dataset("ptbxl", path=folder, records=["1", "2"], use_cache=False)
    for i in (1, 3, 4):
        for ext in ("hea", "dat"):
            (folder / "records100" / "00000" / f"0000{i}_lr.{ext}").unlink()
    with pytest.raises(DataError, match="none of the 5 records .*ptbxl_database.csv lists is in"):
        load_dataset("ptbxl", path=folder, use_cache=False)


# ----------------------------------------------------------------------------------------------- PTB (ptbdb)

#: patient -> reason for admission (5 healthy, 5 not); patient002 has two records, patient011 no diagnosis.
PTB_PATIENTS = {
    "patient001": "Myocardial infarction", "patient002": "Healthy control", "patient003": "Myocardial infarction",
    "patient004": "Healthy control", "patient005": "Bundle branch block", "patient006": "Healthy control",
    "patient007": "Cardiomyopathy", "patient008": "Healthy control", "patient009": "Dysrhythmia",
    "patient010": "Healthy control", "patient011": "n/a",
}


def _mlii_at_1000hz(start_s: float, seconds: float = 10.0) -> np.ndarray:
    import wfdb

    rec = wfdb.rdrecord(str(MITDB / "100"), channels=[0, 1], sampfrom=int(start_s * 360),
                        sampto=int((start_s + seconds) * 360))
    return resample(rec.p_signal, 360, 1000)  # (samples, [MLII, V5])


def _write_ptb(folder: Path, record: str, signal: np.ndarray, comments: list[str]) -> None:
    import wfdb

    d = folder / record.split("/")[0]
    d.mkdir(parents=True, exist_ok=True)
    # PTB's leads are named in lower case; 'ii' is second, as in the real headers
    wfdb.wrsamp(record.split("/")[1], fs=1000, units=["mV", "mV"], sig_name=["i", "ii"],
                p_signal=np.column_stack([signal[:, 1], signal[:, 0]]), fmt=["16", "16"],
                comments=comments, write_dir=str(d))


@pytest.fixture(scope="module")
def ptb_folder(tmp_path_factory) -> Path:
    if not (MITDB / "100.dat").exists():
        pytest.skip(f"no MIT-BIH record 100 under {DATA}")
    folder = tmp_path_factory.mktemp("ptbdb")
    names = []
    for i, (patient, reason) in enumerate(PTB_PATIENTS.items()):
        n_records = 2 if patient == "patient002" else 1
        for k in range(n_records):
            name = f"{patient}/s{10 * (i + 1) + k:04d}_re"
            sig = _mlii_at_1000hz(start_s=15.0 * (2 * i + k))
            _write_ptb(folder, name, sig, ["age: 60", "sex: male", "ECG date: 01/10/1990", "Diagnose:",
                                           f"Reason for admission: {reason}", "Additional diagnoses: n/a"])
            names.append(name)
    (folder / "RECORDS").write_text("".join(f"{n}\n" for n in names))
    return folder


def test_ptbdb_reads_the_real_layout(ptb_folder):
    ds = load_dataset("ptbdb", path=ptb_folder)
    assert ds.X.shape[1:] == (256, 1) and ds.X.dtype == np.float32 and len(ds) > 50
    assert ds.info["excluded_no_diagnosis"] == 1 and "patient011" not in set(ds.groups)
    for patient, reason in PTB_PATIENTS.items():
        m = ds.groups == patient
        if patient == "patient011":
            continue
        assert 8 * (2 if patient == "patient002" else 1) <= m.sum() <= 15 * (2 if patient == "patient002" else 1)
        healthy = reason == "Healthy control"
        assert (ds.y[m] == (0 if healthy else 1)).all()
        assert (ds.label[m] == ("normal" if healthy else "abnormal")).all()
        assert len(set(ds.split[m])) == 1  # a patient is on one side only
    assert set(ds.records[ds.groups == "patient002"]) == {"patient002/s0020_re", "patient002/s0021_re"}
    test_patients = set(ds.groups[ds.split == "test"])
    assert len(test_patients) == 2  # 20 % of 10 labelled patients, one of each class
    assert set(ds.y[ds.split == "test"]) == {0, 1}
    assert test_patients == held_out_patients({p: int(r != "Healthy control") for p, r in PTB_PATIENTS.items()
                                               if r != "n/a"})
    # the split does not depend on the records filter
    one = read_ptbdb(ptb_folder, records=["s0010_re", "patient002/s0021_re"])
    for rec in np.unique(one.records):
        assert set(one.split[one.records == rec]) == set(ds.split[ds.records == rec])


def test_a_ptbdb_patient_s_side_does_not_depend_on_which_other_headers_are_there(ptb_folder, tmp_path):
    """The test part was a fold of a shuffled split over the patients whose headers could be read: one header missing
    moved 45 of 59 test patients (of 294) to the search side and 45 others the other way, silently, so a search
    on a partial copy was tested, after the copy was completed, on patients it had searched on."""
    labels = {f"patient{i:03d}": int(i % 5 != 0) for i in range(1, 295)}
    test = held_out_patients(labels)
    assert 0.15 < len(test) / len(labels) < 0.25 and {labels[p] for p in test} == {0, 1}
    for gone in ("patient001", "patient005", "patient150", sorted(test)[0]):
        rest = {p: y for p, y in labels.items() if p != gone}
        assert held_out_patients(rest) == test - {gone}, gone
    # end to end: a copy without one patient's header, read for other records, splits them as the complete one
    full = read_ptbdb(ptb_folder)
    folder = tmp_path / "ptbdb"
    shutil.copytree(ptb_folder, folder)
    (folder / "patient007" / "s0070_re.hea").unlink()
    part = read_ptbdb(folder, records=["s0010_re", "s0030_re", "s0040_re", "s0080_re", "s0100_re"])
    for rec in np.unique(part.records):
        assert set(part.split[part.records == rec]) == set(full.split[full.records == rec]), rec


def test_an_edited_ptbdb_records_list_misses_the_cache(ptb_folder, tmp_path, monkeypatch):
    """PTB reads its records, and from them its held-out patients, from RECORDS, which has no file ending the cache
    key looked at: trimming it (as a message of the data layer suggests) was served the full earlier arrays."""
    monkeypatch.setenv("ECG_AUTOML_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "ptbdb"
    shutil.copytree(ptb_folder, folder)
    full = load_dataset("ptbdb", path=folder)
    assert not full.info["cache"]["hit"] and "patient001" in set(full.groups)
    listing = folder / "RECORDS"
    listing.write_text("".join(f"{r}\n" for r in listing.read_text().split() if not r.startswith("patient001/")))
    trimmed = load_dataset("ptbdb", path=folder)
    assert not trimmed.info["cache"]["hit"] and "patient001" not in set(trimmed.groups)
    assert load_dataset("ptbdb", path=folder).info["cache"]["hit"]


def test_ptbdb_truncated_record(ptb_folder, tmp_path):
    folder = tmp_path / "ptbdb"
    shutil.copytree(ptb_folder, folder)
    dat = folder / "patient003" / "s0030_re.dat"
    dat.write_bytes(dat.read_bytes()[: dat.stat().st_size // 2])
    with pytest.raises(RecordError, match="s0030_re.dat") as err:
        load_dataset("ptbdb", path=folder)
    assert "truncated" in str(err.value)
    ds = read_ptbdb(folder, on_bad_record="skip")
    assert [s["record"] for s in ds.info["skipped"]] == ["patient003/s0030_re"]
    assert "patient003" not in set(ds.groups) and "patient001" in set(ds.groups)


def test_a_ptbdb_header_with_another_sampling_rate_is_refused(ptb_folder, tmp_path):
    """A header edited to 500 Hz loaded silently, its beats resampled from the wrong rate."""
    folder = tmp_path / "ptbdb"
    shutil.copytree(ptb_folder, folder)
    hea = folder / "patient003" / "s0030_re.hea"
    first, rest = hea.read_text().split("\n", 1)
    fields = first.split()
    fields[2] = "500"
    hea.write_text(" ".join(fields) + "\n" + rest)
    with pytest.raises(RecordError, match="sampling rate 500 Hz, but every PTB Diagnostic record is sampled at "
                                          "1000 Hz") as err:
        load_dataset("ptbdb", path=folder, use_cache=False)
    assert err.value.path == str(hea)


def test_ptbdb_records_missing_files_are_one_error_with_the_ways_on(ptb_folder, tmp_path):
    """Loading a PTB copy whose records lack their .dat or .hea stopped at the first missing file, with no way on:
    it is one error naming every incomplete record and its missing file, --records/--on-bad-record skip and the
    data fetch command (the folder is named ptbdb, as fetch writes it); skip mode reads the rest."""
    folder = tmp_path / "ptbdb"
    shutil.copytree(ptb_folder, folder)
    (folder / "patient003" / "s0030_re.dat").unlink()
    (folder / "patient007" / "s0070_re.dat").unlink()
    (folder / "patient009" / "s0090_re.hea").unlink()
    with pytest.raises(RecordError) as err:
        load_dataset("ptbdb", path=folder, use_cache=False)
    msg = str(err.value)
    assert "3 of the 11 PTB records asked for are incomplete" in msg, msg
    for gap in ("patient003/s0030_re has no patient003/s0030_re.dat", "patient007/s0070_re has no "
                "patient007/s0070_re.dat", "patient009/s0090_re has no patient009/s0090_re.hea"):
        assert gap in msg, msg
    assert "--records with the complete ones (patient001/s0010_re," in msg and "--on-bad-record skip" in msg
    assert f"ecg-automl data fetch ptbdb --root {tmp_path}" in msg
    ds = read_ptbdb(folder, on_bad_record="skip")
    assert sorted(s["record"] for s in ds.info["skipped"]) == [
        "patient003/s0030_re", "patient007/s0070_re", "patient009/s0090_re"]


def test_ptbdb_header_without_reason(ptb_folder, tmp_path):
    folder = tmp_path / "ptbdb"
    shutil.copytree(ptb_folder, folder)
    hea = folder / "patient005" / "s0050_re.hea"
    hea.write_text("".join(ln for ln in hea.read_text().splitlines(keepends=True) if "Reason" not in ln))
    with pytest.raises(RecordError, match="s0050_re.hea") as err:
        read_ptbdb(folder)
    assert "Reason for admission" in str(err.value)
    ds = read_ptbdb(folder, on_bad_record="skip")
    assert ds.info["skipped"][0]["path"].endswith("s0050_re.hea")


def test_ptbdb_an_empty_records_file_is_named(ptb_folder, tmp_path):
    """An empty RECORDS said 'neither a RECORDS file nor patient*/ *.hea headers', beside a RECORDS file."""
    folder = tmp_path / "ptbdb"
    shutil.copytree(ptb_folder, folder)
    (folder / "RECORDS").write_text("\n")
    with pytest.raises(DataError, match=r"its RECORDS file lists none: list the records, .*or remove it"):
        read_ptbdb(folder)


# ----------------------------------------------------------------------------------------------- heartbeat CSV

def _beat_rows(n: int, classes: list[int], seed: int) -> np.ndarray:
    """Kaggle-style rows: 187 samples at 125 Hz from an R peak on, scaled to [0, 1], zero-padded, + class."""
    rng = np.random.default_rng(seed)
    t = np.arange(187) / 125.0
    rows = []
    for i in range(n):
        beat = np.exp(-((t - 0.02) / 0.015) ** 2) + 0.3 * np.exp(-((t - 0.3) / 0.05) ** 2)
        beat = beat * (1 + 0.1 * rng.standard_normal()) + 0.01 * rng.standard_normal(187)
        beat[100 + int(rng.integers(0, 60)):] = 0.0
        beat = (beat - beat.min()) / (beat.max() - beat.min())
        rows.append(np.append(beat, classes[i % len(classes)]))
    return np.array(rows)


def _write_csv(path: Path, rows: np.ndarray, groups: list[str] | None = None) -> None:
    np.savetxt(path, rows, delimiter=",", fmt="%.18e")  # the Kaggle files' number format
    if groups is not None:
        Path(str(path) + ".groups").write_text("".join(f"{g}\n" for g in groups))


@pytest.fixture
def csv_folder(tmp_path) -> Path:
    folder = tmp_path / "heartbeat"
    folder.mkdir()
    _write_csv(folder / "mitbih_train.csv", _beat_rows(40, [0, 0, 1, 2, 3, 4], 0), [f"p{i % 4}" for i in range(40)])
    _write_csv(folder / "mitbih_test.csv", _beat_rows(20, [0, 2], 1), [f"q{i % 2}" for i in range(20)])
    return folder


def test_heartbeat_csv_folder_with_groups(csv_folder):
    ds = load_dataset("heartbeat-csv", path=csv_folder)
    assert ds.X.shape == (60, 256, 1) and ds.X.dtype == np.float32
    assert (ds.rr == 1.0).all() and ds.info["rr_available"] is False and ds.info["beat_level_split"] is False
    rows = np.loadtxt(csv_folder / "mitbih_train.csv", delimiter=",")
    train = ds.records == "mitbih_train"
    assert train.sum() == 40 and (ds.split[train] == "search").all() and (ds.split[~train] == "test").all()
    assert (ds.label[train] == rows[:, -1].astype(int).astype(str)).all()
    assert (ds.y[train] == (rows[:, -1] != 0)).all()
    assert set(ds.groups) == {"p0", "p1", "p2", "p3", "q0", "q1"}

    single = load_dataset("heartbeat-csv", path=csv_folder / "mitbih_test.csv", fs=125, window=187)
    assert len(single) == 20 and (single.split == "test").all()
    test_rows = np.loadtxt(csv_folder / "mitbih_test.csv", delimiter=",")
    at_centre = np.pad(test_rows[:, :94], ((0, 0), (93, 0)))  # 125 Hz: the row from sample 93 (the centre) on
    np.testing.assert_allclose(single.X[:, :, 0], normalise(at_centre), atol=1e-5)


def test_heartbeat_csv_records_refuse_a_name_that_is_no_file(csv_folder):
    """Only a list that matched no file at all was refused: a misspelt second name left its file out without a
    word, here the whole test part."""
    both = read_heartbeat_csv(csv_folder, records=["mitbih_train", "mitbih_test.csv"])  # a stem or a file name
    assert set(both.records) == {"mitbih_train", "mitbih_test"}
    with pytest.raises(DataError, match=r"\['mitbih_tset'\] is not among the CSV files at .*heartbeat "
                                        r"\(mitbih_test, mitbih_train\)"):
        read_heartbeat_csv(csv_folder, records=["mitbih_train", "mitbih_tset"])


def test_heartbeat_csv_patient_ids_may_be_uuids(csv_folder, monkeypatch, tmp_path):
    """Ids over 32 characters were refused, because the cache cut them there: a UUID (36) is a common patient id."""
    monkeypatch.setenv("ECG_AUTOML_CACHE", str(tmp_path / "cache"))
    ids = {name: [str(uuid.UUID(int=1000 * k + i % n)) for i in range(rows)]
           for k, (name, rows, n) in enumerate([("mitbih_train", 40, 4), ("mitbih_test", 20, 2)])}
    for name, groups in ids.items():
        (csv_folder / f"{name}.csv.groups").write_text("".join(f"{g}\n" for g in groups))
    first = load_dataset("heartbeat-csv", path=csv_folder)
    again = load_dataset("heartbeat-csv", path=csv_folder)
    assert again.info["cache"]["hit"]
    for ds in (first, again):
        assert set(ds.groups) == set(ids["mitbih_train"]) | set(ids["mitbih_test"]) and len(set(ds.groups)) == 6


def test_heartbeat_csv_needs_patient_ids(csv_folder, monkeypatch, caplog):
    Path(str(csv_folder / "mitbih_test.csv") + ".groups").unlink()
    with pytest.raises(DataError, match="no patient ids.*mitbih_test.csv.groups"):
        load_dataset("heartbeat-csv", path=csv_folder)
    monkeypatch.setenv("ECG_AUTOML_ALLOW_BEAT_SPLIT", "1")
    with caplog.at_level(logging.WARNING, logger="ecg_data"):
        ds = load_dataset("heartbeat-csv", path=csv_folder)
    assert ds.info["beat_level_split"] is True and "NO PATIENT IDS" in caplog.text
    test = ds.split == "test"
    assert len(set(ds.groups[test])) == 20 and set(ds.groups[~test]) == {"p0", "p1", "p2", "p3"}
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="ecg_data"):
        hit = load_dataset("heartbeat-csv", path=csv_folder)
    assert hit.info["cache"]["hit"] and "NO PATIENT IDS" in caplog.text  # the warning survives the cache
    # the switch is part of the cache key: turned off, the cached beat-level arrays are not handed out
    monkeypatch.delenv("ECG_AUTOML_ALLOW_BEAT_SPLIT")
    with pytest.raises(DataError, match="no patient ids"):
        load_dataset("heartbeat-csv", path=csv_folder)
    assert read_heartbeat_csv(csv_folder, allow_beat_level_split=True).info["beat_level_split"] is True


def test_heartbeat_csv_patient_ids_saved_with_a_byte_order_mark_are_the_same_patients(csv_folder):
    """A .groups file saved as "UTF-8 with BOM" (Notepad, Excel) read its first id as '\ufeffq0', another patient:
    a patient with beats in the test file and the others then passed the leak check."""
    test_ids = Path(str(csv_folder / "mitbih_test.csv") + ".groups")
    test_ids.write_text("".join(f"{g}\n" for g in ["p0"] + [f"q{i % 2}" for i in range(19)]), encoding="utf-8-sig")
    with pytest.raises(DataError, match=r"patient\(s\) p0 have beats in both the test file\(s\) and the others"):
        read_heartbeat_csv(csv_folder)
    test_ids.write_text("".join(f"{g}\n" for g in [f"q{i % 2}" for i in range(20)]), encoding="utf-8-sig")
    assert set(read_heartbeat_csv(csv_folder).groups) == {"p0", "p1", "p2", "p3", "q0", "q1"}


def test_the_beat_level_opt_in_does_not_hide_a_leak_the_given_ids_show(csv_folder):
    """ECG_AUTOML_ALLOW_BEAT_SPLIT=1 is for files without patient ids: with one such file beside two that have ids,
    the ids' own leak (patients on both sides) was no longer checked."""
    Path(str(csv_folder / "mitbih_test.csv") + ".groups").write_text("".join(f"p{i % 4}\n" for i in range(20)))
    _write_csv(csv_folder / "extra.csv", _beat_rows(10, [0, 1], 2))  # no ids
    with pytest.raises(DataError, match=r"patient\(s\) p0, p1, p2, p3 have beats in both the test file"):
        read_heartbeat_csv(csv_folder, allow_beat_level_split=True)


def test_heartbeat_csv_says_it_has_no_rr_intervals(csv_folder, small_mitdb):
    """The dataset object tells the search whether its rr array is real (it survives the cache and subsets)."""
    first = load_dataset("heartbeat-csv", path=csv_folder)
    hit = load_dataset("heartbeat-csv", path=csv_folder)
    assert hit.info["cache"]["hit"]
    assert first.rr_available is False and hit.rr_available is False and hit.search_part().rr_available is False
    assert small_mitdb.rr_available is True


def test_heartbeat_csv_arrays_of_another_window_layout_miss_the_cache(csv_folder, monkeypatch):
    """Arrays cached before the rows' R peak was put at the window centre are not handed out again."""
    from ecg_data import heartbeat_csv

    assert load_dataset("heartbeat-csv", path=csv_folder).info["cache"]["hit"] is False
    assert load_dataset("heartbeat-csv", path=csv_folder).info["cache"]["hit"] is True
    monkeypatch.setattr(heartbeat_csv, "WINDOW_LAYOUT", heartbeat_csv.WINDOW_LAYOUT - 1)
    assert load_dataset("heartbeat-csv", path=csv_folder).info["cache"]["hit"] is False


def test_heartbeat_csv_groups_sidecar_changes_miss_the_cache(csv_folder):
    first = load_dataset("heartbeat-csv", path=csv_folder)
    Path(str(csv_folder / "mitbih_test.csv") + ".groups").write_text("".join(f"r{i % 5}\n" for i in range(20)))
    second = load_dataset("heartbeat-csv", path=csv_folder)
    assert not second.info["cache"]["hit"] and set(second.groups) != set(first.groups)


def test_heartbeat_csv_patient_in_train_and_test(csv_folder):
    Path(str(csv_folder / "mitbih_test.csv") + ".groups").write_text("".join(f"p{i % 2}\n" for i in range(20)))
    with pytest.raises(DataError, match="p0, p1.*leak"):
        read_heartbeat_csv(csv_folder)


@pytest.mark.parametrize("bad_line, message", [
    (lambda good: good.rsplit(",", 1)[0], r"line 3: 187 columns, expected 188"),
    (lambda good: good.replace(",", ",abc,", 1).rsplit(",", 1)[0], r"line 3, column 2: 'abc' is not a number"),
    (lambda good: good.rsplit(",", 1)[0] + ",1.5", r"line 3: class '1.5' is not a whole number"),
])
def test_heartbeat_csv_malformed_line(csv_folder, bad_line, message):
    csv = csv_folder / "mitbih_train.csv"
    lines = csv.read_text().splitlines()
    lines[2] = bad_line(lines[2])
    csv.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=f"mitbih_train.csv, {message}"):
        read_heartbeat_csv(csv)


def test_heartbeat_csv_header_row_is_malformed(csv_folder):
    csv = csv_folder / "mitbih_train.csv"
    csv.write_text(",".join(f"c{i}" for i in range(188)) + "\n" + csv.read_text())
    with pytest.raises(DataError, match="line 1, column 1: 'c0' is not a number"):
        read_heartbeat_csv(csv)


def test_heartbeat_csv_numeric_header_row_is_refused(csv_folder):
    """pandas' ``to_csv(index=False)`` writes the header ``0,1,...,187``: it loaded as a beat of class 187."""
    csv = csv_folder / "mitbih_train.csv"
    csv.write_text(",".join(str(i) for i in range(188)) + "\n" + csv.read_text())
    with pytest.raises(DataError, match=r"mitbih_train.csv, line 1: class '187' is not one of the layout's classes "
                                        r"0-4 \(a header row\?"):
        read_heartbeat_csv(csv)
    lines = csv.read_text().splitlines()[1:]
    lines[4] = lines[4].rsplit(",", 1)[0] + ",5"
    csv.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"line 5: class '5' is not one of the layout's classes 0-4$"):
        read_heartbeat_csv(csv)
    # a data row on line 1 with a class out of range is a bad class, not a header (the hint said it might be)
    lines[0], lines[4] = lines[0].rsplit(",", 1)[0] + ",7", lines[3]
    csv.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"line 1: class '7' is not one of the layout's classes 0-4$"):
        read_heartbeat_csv(csv)
    # 1_0 is ten to Python's float(), not a number to a CSV reader
    lines[0] = "1_0," + lines[3].split(",", 1)[1]
    csv.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"line 1, column 1: '1_0' is not a number"):
        read_heartbeat_csv(csv)


def test_heartbeat_csv_ptb_file_holds_classes_0_and_1(tmp_path):
    """Kaggle's PTB files (ptbdb_normal.csv all 0, ptbdb_abnormal.csv all 1) loaded a class 2-4 as an abnormal
    beat, as in the MIT-BIH files: a file named ptbdb* now holds 0/1 only, the others 0-4 as before."""
    for name, classes in (("ptbdb_abnormal.csv", [1]), ("PTBDB_normal_test.csv", [0]), ("mine.csv", [0, 3])):
        _write_csv(tmp_path / name, _beat_rows(6, classes, 0), [f"p{i % 3}" for i in range(6)])
        assert len(read_heartbeat_csv(tmp_path / name)) == 6
    csv = tmp_path / "ptbdb_abnormal.csv"
    lines = csv.read_text().splitlines()
    lines[3] = lines[3].rsplit(",", 1)[0] + ",3"
    csv.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"ptbdb_abnormal.csv, line 4: class '3' is not one of a PTB file's "
                                        r"classes 0-1 \(its name begins with ptbdb; 0-4 are read from files named "
                                        r"otherwise\)$"):
        read_heartbeat_csv(csv)


@pytest.mark.parametrize("spoil, message", [
    (lambda g: g.write_bytes(b"p1\np\xe9\n"), r"mitbih_test.csv.groups, line 2: not UTF-8 text"),
    (lambda g: (g.unlink(), g.mkdir()), r"mitbih_test.csv.groups: cannot be read as the patient ids of mitbih_test.csv"),
])
def test_heartbeat_csv_unreadable_groups_sidecar(csv_folder, spoil, message):
    """A sidecar in Latin-1 or a folder named like one stopped with a UnicodeDecodeError / IsADirectoryError."""
    spoil(Path(str(csv_folder / "mitbih_test.csv") + ".groups"))
    with pytest.raises(DataError, match=message):
        load_dataset("heartbeat-csv", path=csv_folder)


def test_a_saved_heartbeat_csv_dataset_still_says_it_has_no_rr_intervals(csv_folder, monkeypatch, tmp_path):
    """BeatDataset.save / load kept the arrays but not info: a reloaded CSV dataset claimed real RR intervals
    (so search.fit fed the placeholders) and no longer said its split was beat-level."""
    from ecg_data import BeatDataset

    monkeypatch.setenv("ECG_AUTOML_ALLOW_BEAT_SPLIT", "1")
    Path(str(csv_folder / "mitbih_test.csv") + ".groups").unlink()
    ds = load_dataset("heartbeat-csv", path=csv_folder, use_cache=False)
    ds.save(tmp_path / "beats.npz")
    back = BeatDataset.load(tmp_path / "beats.npz")
    assert back.rr_available is False and back.info["beat_level_split"] is True
    assert BeatDataset.load(tmp_path / "beats.npz", {"note": 1}).info == {
        "rr_available": False, "beat_level_split": True, "note": 1}


def test_heartbeat_csv_r_peak_is_at_the_window_centre(csv_folder):
    """Each row of the layout begins at its R peak (a beat is cut from one R peak on for 1.2 RR and zero-padded to
    187 samples). The rows were centre-cropped, which at the default 180 Hz / 256 samples cut the R peak off every
    beat, and left it at the window's start, where a model's centred ``input_length`` crop (128 or 192 of 256)
    never saw the QRS at all. Now the row's first sample is the window's centre sample, as every source's R peak is."""
    from spaces.model import model_inputs

    rows = np.loadtxt(csv_folder / "mitbih_test.csv", delimiter=",")[:, :-1]
    peak = rows.argmax(axis=1)  # the fixture's R peak: 20 ms after the row's start
    for fs, window in ((180, 256), (250, 300), (125, 187), (125, 400)):
        ds = read_heartbeat_csv(csv_folder, records=["mitbih_test"], fs=fs, window=window)
        half = window // 2
        found = ds.X[:, :, 0].argmax(axis=1)
        np.testing.assert_allclose(found, half + np.round(peak * fs / 125.0), atol=1)
        # the window holds the row from its first sample on, zeros before it
        res = resample(rows.T, 125, fs).T[:, :window - half]
        expected = np.zeros((len(rows), window))
        expected[:, half:half + res.shape[1]] = res
        np.testing.assert_allclose(ds.X[:, :, 0], normalise(expected), atol=1e-5)
    default = read_heartbeat_csv(csv_folder, records=["mitbih_test"])  # 180 Hz, 256 samples
    crop = model_inputs({"input_length": 128, "rr_features": False}, default.X, default.rr)["ecg"]
    np.testing.assert_allclose(crop[:, :, 0].argmax(axis=1), 64 + np.round(peak * 180 / 125.0), atol=1)


def test_predict_places_heartbeat_csv_rows_as_the_search_did(csv_folder, monkeypatch):
    """``predict --csv`` with a heartbeat-CSV model gives the model the windows the search trained it on (it
    centre-cropped the rows itself, which would no longer match the source)."""
    from ecg_automl.tflite import predict as predict_mod

    seen = {}

    class Model:
        output_max = 1.0
        inputs = {"ecg": {"shape": [1, 128, 1]}}

        def predict(self, inputs):
            seen["ecg"] = inputs["ecg"]
            return np.full(len(inputs["ecg"]), 0.25)

    meta = {"dataset": "heartbeat-csv", "fs": 180.0, "window": 256, "input_length": 128, "rr_features": False,
            "threshold": 0.5}
    monkeypatch.setattr(predict_mod, "_open_model", lambda path, threads: (meta, Model()))
    pred = predict_mod.predict_csv("model.tflite", csv_folder / "mitbih_test.csv", has_label=True)
    assert len(pred.prob) == 20
    source = read_heartbeat_csv(csv_folder, records=["mitbih_test"], fs=180, window=256)
    np.testing.assert_allclose(seen["ecg"], source.X[:, 64:192, :], atol=1e-6)


def test_heartbeat_csv_test_files_in_a_word_and_other_case_csv_files_are_warned_about(tmp_path, caplog):
    """'train_latest.csv' was read as a test file (the letters 'test') and UPPER.CSV skipped, both silently. The
    rules stay (studies made on such folders rely on them) and each is said."""
    from ecg_data.heartbeat_csv import is_test_file

    assert all(is_test_file(Path(n)) for n in ("mitbih_test.csv", "TestData.csv", "mitbihtest.csv", "latest.csv"))
    folder = tmp_path / "names"
    folder.mkdir()
    _write_csv(folder / "train_latest.csv", _beat_rows(12, [0, 1], 0), [f"p{i % 3}" for i in range(12)])
    _write_csv(folder / "mitbih_train.csv", _beat_rows(12, [0, 1], 1), [f"q{i % 3}" for i in range(12)])
    _write_csv(folder / "MORE.CSV", _beat_rows(6, [0, 1], 2), [f"r{i % 2}" for i in range(6)])
    with caplog.at_level(logging.WARNING, logger="ecg_data"):
        ds = load_dataset("heartbeat-csv", path=folder)
    assert set(ds.records[ds.split == "test"]) == {"train_latest"} and set(ds.records) == {"train_latest",
                                                                                         "mitbih_train"}
    assert caplog.text.count("train_latest.csv is read as held-out test beats (its name contains 'test'); "
                             "rename it") == 1  # once, not also from the cache key's listing
    assert "MORE.CSV in" in caplog.text and "is not read (only files ending in .csv are)" in caplog.text
    assert "mitbih_train.csv is read" not in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="ecg_data"):  # a cache hit says it again, once
        assert load_dataset("heartbeat-csv", path=folder).info["cache"]["hit"]
    assert caplog.text.count("train_latest.csv is read as held-out test beats") == 1
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="ecg_data"):  # nor about a file `records` leaves out
        load_dataset("heartbeat-csv", path=folder, records=["mitbih_train"], use_cache=False)
    assert "train_latest" not in caplog.text


def test_a_heartbeat_csv_file_s_cache_key_is_that_file_not_every_file_of_its_folder(csv_folder, monkeypatch,
                                                                                     tmp_path):
    """Loading one CSV fingerprinted every .csv/.dat/... below its folder (a CSV kept in ~ walked all of home), so
    a change to another file there missed the cache; a file replaced within the same second kept its key."""
    monkeypatch.setenv("ECG_AUTOML_CACHE", str(tmp_path / "cache"))
    one = csv_folder / "mitbih_test.csv"
    assert not load_dataset("heartbeat-csv", path=one).info["cache"]["hit"]
    (csv_folder / "sub").mkdir()
    (csv_folder / "sub" / "x.dat").write_bytes(b"\0" * 10)
    assert load_dataset("heartbeat-csv", path=one).info["cache"]["hit"]
    st = one.stat()
    rows = np.loadtxt(one, delimiter=",")
    rows[0, 5] = 0.123456789  # same size (fixed-width numbers), same second
    np.savetxt(one, rows, delimiter=",", fmt="%.18e")
    import os
    os.utime(one, ns=(st.st_atime_ns, st.st_mtime_ns + 1000))
    assert one.stat().st_size == st.st_size and int(one.stat().st_mtime) == int(st.st_mtime)
    assert not load_dataset("heartbeat-csv", path=one).info["cache"]["hit"]


@needs_ptbxl
def test_ptbxl_records_without_a_label_and_a_table_not_comma_separated_are_named(tmp_path):
    """--records naming only records with no diagnostic statement said 'no beat windows from 0 record(s)'; a table
    separated by ';' or without ecg_id said 'Index ecg_id invalid'; a data root that is a file said the database
    was 'not under' it."""
    import pandas as pd

    from ecg_data import DatabaseNotFoundError
    from ecg_data.ptbxl import read_table

    unlabelled = [int(i) for i in read_table(PTBXL).query("y < 0").index[:2]]
    with pytest.raises(DataError, match=rf"ecg_id\(s\) \[{unlabelled[0]}, {unlabelled[1]}\] have no diagnostic "
                                        r"statement"):
        load_dataset("ptbxl", path=PTBXL, records=[str(i) for i in unlabelled])
    folder = tmp_path / "semicolon"
    folder.mkdir()
    pd.read_csv(PTBXL / "ptbxl_database.csv").head(5).to_csv(folder / "ptbxl_database.csv", sep=";", index=False)
    with pytest.raises(DataError, match="not comma-separated"):
        read_table(folder)
    pd.read_csv(PTBXL / "ptbxl_database.csv").head(5).drop(columns="ecg_id").to_csv(folder / "ptbxl_database.csv",
                                                                                     index=False)
    with pytest.raises(DataError, match=r"missing column\(s\) \['ecg_id'\]"):
        read_table(folder)
    (tmp_path / "afile").write_text("x")
    with pytest.raises(DatabaseNotFoundError, match=r"the data root .*afile \(--root\) is a file"):
        load_dataset("ptbxl", root=tmp_path / "afile")


def test_a_search_side_of_one_class_is_refused_before_the_study_is_written(csv_folder, tmp_path):
    """A heartbeat CSV whose search file held only normal beats wrote the study, then failed ten trials in a row
    (with --trials 1)."""
    from search import StudySettings
    from search.study import load_study_data
    from spaces import SearchSpace

    _write_csv(csv_folder / "mitbih_train.csv", _beat_rows(40, [0], 0), [f"p{i % 4}" for i in range(40)])
    space = SearchSpace.load("default")
    settings = StudySettings(dataset="heartbeat-csv", space_yaml=space.to_yaml(), folds=2,
                             data_path=str(csv_folder))
    with pytest.raises(DataError, match=r"the search side holds only normal beats \(40\).*add records or files "
                                        r"with abnormal beats"):
        load_study_data(settings, space)
