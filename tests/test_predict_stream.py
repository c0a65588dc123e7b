"""``predict`` reads a record a chunk at a time: its beats, RR features and windows must be the whole-record
path's (the one the models were trained with), with chunks small enough that a 30-minute MIT-BIH record is cut
into about 40 of them, so that a beat lost or counted twice at a chunk border would show."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from ecg_automl.tflite import predict as predict_mod
from ecg_data._wfdb_io import read_header, read_record
from ecg_data.errors import RecordError
from ecg_data.preprocess import beats_from_signal, fill_nans, rr_features
from ecg_data.ptbxl import detect_r_peaks
from ecg_data.stream import beat_windows_chunked, detect_r_peaks_chunked, spans

#: Seconds per chunk core in these tests (the default is 600): 30 min of MIT-BIH is ~40 chunks.
SMALL_CHUNK_S = 45.0
META = {"dataset": "mitdb", "fs": 180.0, "window": 192, "input_length": 128, "rr_features": True,
        "threshold": 0.5, "lead": "MLII", "leads": ["MLII"], "channels": 1, "filter": {"low": 0.5, "high": 40.0}}


class _StubModel:
    """Stands in for a TFLiteModel (no LiteRT, no TensorFlow): a fixed function of each beat's inputs, and it
    keeps every input it was given so that the test can compare them with the whole-record path's."""

    inputs = {"ecg": {"shape": [1, 128, 1]}, "rr": {"shape": [1, 14]}}
    output_max = 1.0

    def __init__(self):
        self.seen: list[dict[str, np.ndarray]] = []

    def predict(self, inputs):
        self.seen.append({k: np.array(v) for k, v in inputs.items()})
        z = inputs["ecg"][:, ::7, 0].sum(axis=1) * 0.3 + inputs["rr"].sum(axis=1) * 0.05 - 0.7
        return (1 / (1 + np.exp(-z))).astype(np.float32)

    def clipped_rows(self, inputs):
        return {}


def _whole_record(path, annotations=None):
    """The record's beats, windows and RR features as predict computed them before chunking: the whole signal
    in memory, XQRS on the whole gap-bridged lead (or the annotated beats), ``beats_from_signal``."""
    rec = read_record(path)
    if annotations:
        from ecg_data._wfdb_io import read_annotations
        from ecg_data.mitdb import AAMI

        samples, symbols = read_annotations(path, annotations)
        samples = samples[np.isin(symbols, list(AAMI))]
    else:
        samples = detect_r_peaks(fill_nans(rec.signal[:, 0]), rec.fs)
    windows, rr, kept = beats_from_signal(rec.signal[:, [0]], rec.fs, samples, fs=180.0, length=192)
    return samples, windows, rr, kept


@pytest.mark.parametrize("record", ["100", "232"])
def test_chunked_detection_finds_the_whole_record_beats(data_root, record):
    """XQRS run chunk by chunk (its thresholds and learning carried over the borders) finds exactly the R peaks
    it finds on the whole record: none lost or doubled at the ~40 borders."""
    path = data_root / "mitdb" / record
    head = read_header(path)
    assert len(list(spans(head.n_samples, SMALL_CHUNK_S * head.fs, 30 * head.fs))) >= 40
    whole = detect_r_peaks(fill_nans(read_record(path).signal[:, 0]), head.fs)
    chunked = detect_r_peaks_chunked(head, 0, chunk_s=SMALL_CHUNK_S)
    assert len(whole) > 1500
    np.testing.assert_array_equal(chunked, whole)


@pytest.mark.parametrize("record,annotations", [("100", None), ("232", "atr")])
def test_chunked_predict_matches_the_whole_record_path(data_root, monkeypatch, record, annotations):
    """End to end through predict_record: the same beats, the same RR features bit for bit (they use the
    neighbouring beats and the whole record's median RR), and windows equal to float32 rounding (the band-pass
    filter's start in each chunk's overlap leaves ~1e-13 mV); each beat is classified exactly once."""
    stub = _StubModel()
    monkeypatch.setattr(predict_mod, "_open_model", lambda model_path, threads: (META, stub))
    path = data_root / "mitdb" / record
    calls = []
    pred = predict_mod.predict_record("stub.tflite", path, annotations=annotations, chunk_s=SMALL_CHUNK_S,
                                      progress=lambda stage, done, total: calls.append((stage, done, total)))
    samples, windows, rr, kept = _whole_record(path, annotations)
    np.testing.assert_array_equal(pred.samples, samples[kept])
    assert pred.summary["beats"] == int(kept.sum())
    seen_rr = np.concatenate([s["rr"] for s in stub.seen])
    seen_ecg = np.concatenate([s["ecg"] for s in stub.seen])
    assert len(stub.seen) >= 40 and len(seen_rr) == int(kept.sum())  # every beat once, over many chunks
    order = np.argsort(pred.samples, kind="stable")  # chunks classify in sample order
    np.testing.assert_array_equal(seen_rr, rr[order])
    np.testing.assert_allclose(seen_ecg, windows[order][:, 32:160], rtol=0, atol=2e-5)
    np.testing.assert_allclose(pred.prob, _StubModel().predict({"ecg": windows[:, 32:160], "rr": rr}),
                               rtol=0, atol=1e-5)
    stages = {c[0] for c in calls}
    assert stages == ({"classifying beats"} if annotations else {"finding beats", "classifying beats"})
    assert calls[-1][1] == calls[-1][2]


def test_predict_refuses_a_signal_file_that_does_not_match_its_header(data_root, tmp_path, monkeypatch):
    """Training's reader checks each signal against its header's checksums, but predict reads a record a chunk at a
    time and did not: another record's .dat (every MIT-BIH one has the same size) was classified as this record's
    ECG, and one damaged sample went unseen. The first pass over the chunks now sums them, before any beat is
    classified; only the leads predict reads are checked."""
    stub = _StubModel()
    monkeypatch.setattr(predict_mod, "_open_model", lambda model_path, threads: (META, stub))
    for name in ("100.hea", "100.atr"):
        shutil.copy(data_root / "mitdb" / name, tmp_path / name)
    dat = tmp_path / "100.dat"
    shutil.copy(data_root / "mitdb" / "105.dat", dat)
    with pytest.raises(RecordError) as err:
        predict_mod.predict_record("stub.tflite", tmp_path / "100", chunk_s=SMALL_CHUNK_S)
    assert err.value.path == str(dat)
    assert err.value.problem.startswith("signal 'MLII' does not match its header (100.hea): its samples sum to "
                                        "checksum "), err.value.problem
    assert err.value.problem.endswith("Remove it and copy or download it again"), err.value.problem
    assert stub.seen == []  # refused before any beat was classified
    # format 212 packs two samples in three bytes: the first byte of a triple is the low 8 bits of MLII's sample
    original = (data_root / "mitdb" / "100.dat").read_bytes()
    for offset, lead in ((len(original) // 2 // 3 * 3, "MLII"), (len(original) // 2 // 3 * 3 + 2, None)):
        changed = bytearray(original)
        changed[offset] ^= 0x01  # one sample, off by one digital unit, in a chunk in the middle of the record
        dat.write_bytes(bytes(changed))
        if lead is None:  # the other lead (V5) changed: predict does not read it
            assert predict_mod.predict_record("stub.tflite", tmp_path / "100", chunk_s=SMALL_CHUNK_S).summary["beats"]
            continue
        with pytest.raises(RecordError, match=f"signal '{lead}' does not match its header"):
            predict_mod.predict_record("stub.tflite", tmp_path / "100", chunk_s=SMALL_CHUNK_S)


def test_a_beat_belongs_to_exactly_one_chunk(data_root):
    """Beats right at chunk borders (and the record's first and last samples) are windowed once each."""
    head = read_header(data_root / "mitdb" / "100")
    core = int(SMALL_CHUNK_S * head.fs)
    beats = np.array(sorted({400, core - 1, core, core + 1, 2 * core, 5 * core - 1, head.n_samples - 400}))
    got = [idx for idx, _ in beat_windows_chunked(head, [0], beats, fs=180.0, length=192, chunk_s=SMALL_CHUNK_S)]
    np.testing.assert_array_equal(np.concatenate(got), np.arange(len(beats)))


def _low_rate_record(data_root, tmp_path, record: str, fs: int, minutes: float = 4.0):
    """The first ``minutes`` of a real MIT-BIH record resampled from 360 Hz to ``fs`` (a Holter's or PTB-XL's
    rate, below XQRS's 300 Hz) and written as a WFDB record in ``tmp_path``."""
    from fractions import Fraction

    import wfdb
    from scipy.signal import resample_poly

    rec = read_record(data_root / "mitdb" / record)
    ratio = Fraction(fs, int(rec.fs))
    x = resample_poly(rec.signal[: int(minutes * 60 * rec.fs)], ratio.numerator, ratio.denominator, axis=0)
    name = f"{record}_{fs}"
    wfdb.wrsamp(name, fs=fs, units=["mV", "mV"], sig_name=rec.sig_names, p_signal=x, fmt=["16", "16"],
                adc_gain=[200.0, 200.0], baseline=[0, 0], write_dir=str(tmp_path))
    return tmp_path / name


#: A core length that is no multiple of the resamplers' steps at 100, 128 and 250 Hz (5, 32, 5 and 25 samples):
#: chunk borders fall where a misaligned polyphase resampler would shift the signal by a fraction of a sample.
ODD_CHUNK_S = 20.01


@pytest.mark.parametrize("fs", [100, 128, 250])
def test_low_rate_record_in_many_chunks_matches_the_whole_record_path(data_root, tmp_path, monkeypatch, fs):
    """Below 300 Hz XQRS runs on the lead upsampled to 300 Hz and the windows are resampled to the model's
    180 Hz, one chunk at a time: each chunk must start on the resamplers' phase, so that its samples are the
    whole-record resampling's. With ~12 chunks of 20.01 s: the same R peaks (mapped back to the record's rate),
    the same RR features and windows to float rounding."""
    path = _low_rate_record(data_root, tmp_path, "208", fs)
    head = read_header(path)
    assert len(list(spans(head.n_samples, ODD_CHUNK_S * fs, 30 * fs))) >= 12
    whole = detect_r_peaks(fill_nans(read_record(path).signal[:, 0]), fs)
    assert len(whole) > 350
    np.testing.assert_array_equal(detect_r_peaks_chunked(head, 0, chunk_s=ODD_CHUNK_S), whole)
    stub = _StubModel()
    monkeypatch.setattr(predict_mod, "_open_model", lambda model_path, threads: (META, stub))
    pred = predict_mod.predict_record("stub.tflite", path, chunk_s=ODD_CHUNK_S)
    samples, windows, rr, kept = _whole_record(path)
    np.testing.assert_array_equal(pred.samples, samples[kept])
    assert len(stub.seen) >= 12
    np.testing.assert_array_equal(np.concatenate([s["rr"] for s in stub.seen]), rr)
    np.testing.assert_allclose(np.concatenate([s["ecg"] for s in stub.seen]), windows[:, 32:160], rtol=0, atol=2e-5)


def _gap_record(data_root, tmp_path, start_s: int = 60, stop_s: int = 130):
    """The first 4 minutes of MIT-BIH 208 at 128 Hz with MLII missing (NaN) from ``start_s`` to ``stop_s``: the
    record's path and the gap's first and stop samples."""
    import wfdb

    src = _low_rate_record(data_root, tmp_path, "208", 128)
    rec = read_record(src)
    x = rec.signal.copy()
    a, b = start_s * 128, stop_s * 128
    x[a:b, 0] = np.nan
    wfdb.wrsamp("gap", fs=128, units=["mV", "mV"], sig_name=rec.sig_names, p_signal=x, fmt=["16", "16"],
                adc_gain=[200.0, 200.0], baseline=[0, 0], write_dir=str(tmp_path))
    return tmp_path / "gap", a, b


def _cut_at_gap(samples: np.ndarray, fs: float, a: int, b: int) -> np.ndarray:
    """RR features of ``samples`` (none in ``[a, b)``) as two records cut at the gap would give them: the beats
    before it as one record ending there, the beats after it as one starting at ``b``."""
    assert not ((samples >= a) & (samples < b)).any()
    before, after = samples[samples < a], samples[samples >= b]
    return np.concatenate([rr_features(before, fs), rr_features(after - b, fs)])


def test_beats_next_to_a_lead_off_gap_get_the_rr_features_of_a_record_cut_there(data_root, tmp_path, monkeypatch):
    """A lead-off gap is no pause of the heart: the beats on either side of it get the RR features they would get
    as the last beat of a record that ends at the gap and the first of one that starts after it (the beats
    between gaps form records of their own), not an RR interval 70 s long; the beats' windows are unchanged."""
    path, a, b = _gap_record(data_root, tmp_path)
    stub = _StubModel()
    monkeypatch.setattr(predict_mod, "_open_model", lambda model_path, threads: (META, stub))
    pred = predict_mod.predict_record("stub.tflite", path, chunk_s=45.0)
    samples, _, spanning, kept = _whole_record(path)
    got = np.concatenate([s["rr"] for s in stub.seen])
    np.testing.assert_array_equal(got, _cut_at_gap(samples, 128, a, b)[kept])
    last, first = int(np.searchsorted(pred.samples, a)) - 1, int(np.searchsorted(pred.samples, b))
    assert first == last + 1 and pred.samples[first] - pred.samples[last] > (b - a)
    assert spanning[last, 1] == 10.0 and spanning[first, 0] == 10.0  # across the gap: 70 s, clipped to 10 s
    assert got[last, 1] < 3.0 and got[first, 0] < 3.0  # post-RR, pre-RR in seconds: a heart beat's, not the gap's


def test_the_rhythm_breaks_only_at_a_gap_no_beat_lies_in():
    """Beats the annotations put inside a gap (their rhythm is known) keep it whole; a gap at the record's ends,
    or one between two beats, splits it once."""
    beats = np.array([100, 400, 700, 1000, 1300, 5000, 5300])
    runs = np.array([[0, 50], [1400, 4000], [4100, 4500]])  # before the first beat; two between 1300 and 5000
    np.testing.assert_array_equal(predict_mod._rhythm_breaks(beats, runs), [5])
    np.testing.assert_array_equal(predict_mod._rhythm_breaks(beats, np.array([[650, 1200]])), [])
    rr = predict_mod._rr_by_segment(beats, 100.0, runs)
    np.testing.assert_array_equal(rr[:5], rr_features(beats[:5], 100.0))
    np.testing.assert_array_equal(rr[5:], rr_features(beats[5:], 100.0))


def test_a_lead_off_gap_across_chunk_borders_gives_the_same_beats_whatever_the_chunks(data_root, tmp_path,
                                                                                     monkeypatch):
    """A 70 s lead-off gap (NaN, longer than the 30 s overlap) that crosses chunk borders: each chunk bridges it
    with the whole lead's straight line (its ends read from beyond the chunk), not with the nearest value it
    holds, so two chunk sizes and the whole-record path give the same beats, RR features and windows (float
    rounding). No beat is reported inside the gap, and the summary names the gap and the beats next to it."""
    path, a, b = _gap_record(data_root, tmp_path)
    samples, windows, _, kept = _whole_record(path)
    rr = _cut_at_gap(samples, 128, a, b)[kept]  # the rhythm restarts after the gap (see the test below)
    preds = {}
    for chunk_s in (45.0, 61.3):
        stub = _StubModel()
        monkeypatch.setattr(predict_mod, "_open_model", lambda model_path, threads, stub=stub: (META, stub))
        pred = predict_mod.predict_record("stub.tflite", path, chunk_s=chunk_s)
        np.testing.assert_array_equal(pred.samples, samples[kept])
        np.testing.assert_array_equal(np.concatenate([s["rr"] for s in stub.seen]), rr)
        np.testing.assert_allclose(np.concatenate([s["ecg"] for s in stub.seen]), windows[:, 32:160],
                                   rtol=0, atol=2e-5)
        preds[chunk_s] = pred
    np.testing.assert_allclose(preds[45.0].prob, preds[61.3].prob, rtol=0, atol=1e-6)
    pred = preds[45.0]
    assert not ((pred.samples >= a) & (pred.samples < b)).any()
    gaps = pred.summary["gaps"]
    assert gaps["count"] == 1 and gaps["runs"] == [{"lead": "MLII", "start": a, "stop": b}]
    assert gaps["beats_inside_dropped"] == 0 and gaps["beats_next_to_gap"] >= 2
    assert pred.summary["missing_samples"] == b - a
    assert "1 gap(s) of missing signal" in predict_mod.format_prediction(pred)

    found = predict_mod.detect_r_peaks_chunked  # a beat the detector reported inside the gap is left out
    monkeypatch.setattr(predict_mod, "detect_r_peaks_chunked",
                        lambda *args, **kw: np.sort(np.append(found(*args, **kw), (a + b) // 2)))
    pred = predict_mod.predict_record("stub.tflite", path, chunk_s=45.0)
    np.testing.assert_array_equal(pred.samples, preds[45.0].samples)
    assert pred.summary["gaps"]["beats_inside_dropped"] == 1
