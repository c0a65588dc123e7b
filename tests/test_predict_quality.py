"""``predict`` on input that is no ECG it can trust: noise, a flat or clipped lead, an inverted signal, a header whose
sampling rate is not the data's. Each is made from 3 minutes of a real MIT-BIH record and must be called out, and
the real record itself must not be (tests/test_predict_stream's stub model stands in for a .tflite)."""

from __future__ import annotations

import numpy as np
import pytest
import wfdb
from test_predict_stream import META, SMALL_CHUNK_S, _StubModel

from ecg_automl.tflite import predict as predict_mod
from ecg_automl.tflite import quality
from ecg_data._wfdb_io import read_header
from ecg_data.stream import missing_runs

MINUTES = 3


@pytest.fixture
def stub(monkeypatch):
    monkeypatch.setattr(predict_mod, "_open_model", lambda model_path, threads: (META, _StubModel()))


def _write(tmp_path, name, sig, fs=360):
    wfdb.wrsamp(name, fs=fs, units=["mV", "mV"], sig_name=["MLII", "V5"], p_signal=sig, fmt=["16", "16"],
                adc_gain=[200.0, 200.0], baseline=[0, 0], write_dir=str(tmp_path))
    return tmp_path / name


@pytest.fixture
def real(data_root):
    """The first minutes of MIT-BIH 119 (sinus rhythm with ventricular bigeminy: neighbouring beats differ)."""
    return wfdb.rdrecord(str(data_root / "mitdb" / "119"), sampto=360 * 60 * MINUTES).p_signal


def _warnings(path, **kw):
    pred = predict_mod.predict_record("stub.tflite", path, chunk_s=SMALL_CHUNK_S, **kw)
    return pred, pred.summary.get("quality_warnings", [])


def test_a_real_record_with_bigeminy_gets_no_signal_warning(stub, real, tmp_path):
    pred, warn = _warnings(_write(tmp_path, "clean", real))
    assert warn == [], warn
    q = pred.summary["signal_quality"]
    assert 50 < q["median_heart_rate_bpm"] < 100 and q["beat_similarity"] > 0.9, q
    assert q["negative_qrs_fraction"] < 0.5 and q["leads"]["MLII"]["flat_s"] == 0


def test_noise_at_an_ecg_amplitude_is_called_out(stub, real, tmp_path):
    """Random samples as large as the real lead's: XQRS finds ~180 "beats" a minute in them, which were classified
    without a word."""
    rng = np.random.default_rng(1)
    pred, warn = _warnings(_write(tmp_path, "noise", rng.normal(0, real.std(axis=0), real.shape)))
    assert pred.summary["beats"] > 300
    assert any("neighbouring beats hardly look alike" in w for w in warn), warn


def test_a_flat_lead_with_a_few_spikes_is_flat_and_too_slow(stub, real, tmp_path):
    sig = np.full_like(real, -0.2)
    for a in (10_000, 30_000, 50_000):
        sig[a:a + 4] = 2.0
    pred, warn = _warnings(_write(tmp_path, "spikes", sig))
    text = " ".join(warn)
    assert "lead MLII is flat" in text and "median heart rate of the beats found is" in text, warn
    assert "the record has no beat for" in text


def test_a_flat_lead_names_its_flatness_when_no_beat_is_found(stub, real, tmp_path):
    with pytest.raises(predict_mod.DataError, match=r"no beats found \(lead MLII\): the lead is flat"):
        _warnings(_write(tmp_path, "flat", np.full_like(real, 0.01)))


def test_a_lead_clipped_at_a_rail_is_called_out(stub, real, tmp_path):
    """The R peaks cut at an ADC rail: 3% of the samples at the lead's highest or lowest value (a real lead has a
    handful there)."""
    rail = np.percentile(real[:, 0], 97)
    pred, warn = _warnings(_write(tmp_path, "clipped", np.clip(real, -rail, rail)))
    assert any("the signal looks clipped" in w for w in warn), warn
    assert pred.summary["signal_quality"]["leads"]["MLII"]["clipped_fraction"] > 0.025


def test_an_inverted_mlii_lead_is_called_out(stub, real, tmp_path):
    _, warn = _warnings(_write(tmp_path, "inverted", -real))
    assert any("the QRS points down in 100% of the beats" in w for w in warn), warn


def test_a_header_rate_that_is_not_the_datas_gives_an_impossible_heart_rate(stub, real, tmp_path):
    """360 Hz samples whose header says 100 Hz: the beats (about 70 bpm) come at 19 bpm."""
    _, warn = _warnings(_write(tmp_path, "fs100", real, fs=100))
    assert any("median heart rate of the beats found is 19 bpm" in w and "(100 Hz)" in w for w in warn), warn


def test_annotated_beats_get_the_checks_too(stub, real, tmp_path, data_root):
    """With --annotations the beats are the reference's, the signal checks run all the same (a clean record)."""
    _, warn = _warnings(data_root / "mitdb" / "119", annotations="atr")
    assert warn == [], warn


def test_the_lead_scan_does_not_depend_on_the_chunks(real, tmp_path):
    """Flat and clipped counts, on 1-s blocks aligned to the record, are the same whatever the chunk size."""
    sig = real.copy()
    sig[20_000:27_500] = sig[:, 0].max()  # ~21 s at the rail, across a 45 s chunk border at 16,200 x k
    path = _write(tmp_path, "rail", sig)
    head = read_header(path)
    got = []
    for chunk_s in (7.3, SMALL_CHUNK_S, 600.0):
        scan = quality.LeadScan(head.fs, ["MLII", "V5"])
        missing_runs(head, [0, 1], chunk_s=chunk_s, observe=scan)
        got.append(scan.stats())
    assert got[0] == got[1] == got[2]
    assert 19 <= got[0]["MLII"]["flat_s"] <= 21 and 19 <= got[0]["MLII"]["longest_flat_s"] <= 21


def test_a_stretch_without_beats_counts_no_gap():
    """A gap of missing samples is reported as a gap: the stretch without beats is the signal around it."""
    fs, beats = 100.0, np.array([100, 200, 3300, 3400])
    lead = {"MLII": {"flat_s": 0.0, "longest_flat_s": 0.0, "clipped_fraction": 0.0, "clipped_s": 0.0,
                     "range_mv": [-1, 1]}}
    kw = dict(fs=fs, n_samples=3500, beats=beats, rhythm_breaks=np.array([2]), classified=beats,
              corr=np.ones(4), negative=np.zeros(4, bool), polarity_lead=None)
    q, warn = quality.assess(lead, gaps=np.array([[300, 3200]]), **kw)
    assert q["longest_without_beat_s"] == pytest.approx(2.0) and warn == []
    q, warn = quality.assess(lead, gaps=np.zeros((0, 2), np.int64), **kw)
    assert q["longest_without_beat_s"] == pytest.approx(31.0) and "no beat for 31 s (from 2 s)" in warn[0]


def test_predict_strict_exits_1_on_a_signal_warning_and_says_it_on_stderr(stub, real, tmp_path, capsys):
    from ecg_automl.cli import main

    rng = np.random.default_rng(2)
    path = _write(tmp_path, "noise", rng.normal(0, real.std(axis=0), real.shape))
    assert main(["predict", "m.tflite", "--record", str(path), "--json"]) == 0
    err = capsys.readouterr().err
    assert f"warning: {path}: neighbouring beats hardly look alike" in err
    assert main(["predict", "m.tflite", "--record", str(path), "--strict"]) == 1
    out = capsys.readouterr().out
    assert "WARNING (signal): neighbouring beats hardly look alike" in out
    assert main(["predict", "m.tflite", "--record", str(_write(tmp_path, "clean", real)), "--strict"]) == 0
