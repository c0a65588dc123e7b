"""``predict`` reads a record a chunk at a time: its beats, RR features and windows must be the whole-record
path's (the one the models were trained with), with chunks small enough that a 30-minute MIT-BIH record is cut
into about 40 of them, so that a beat lost or counted twice at a chunk border would show."""

from __future__ import annotations

import numpy as np
import pytest

from ecg_automl.tflite import predict as predict_mod
from ecg_data._wfdb_io import read_header, read_record
from ecg_data.preprocess import beats_from_signal, fill_nans
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


def test_a_beat_belongs_to_exactly_one_chunk(data_root):
    """Beats right at chunk borders (and the record's first and last samples) are windowed once each."""
    head = read_header(data_root / "mitdb" / "100")
    core = int(SMALL_CHUNK_S * head.fs)
    beats = np.array(sorted({400, core - 1, core, core + 1, 2 * core, 5 * core - 1, head.n_samples - 400}))
    got = [idx for idx, _, _ in beat_windows_chunked(head, [0], beats, fs=180.0, length=192, chunk_s=SMALL_CHUNK_S)]
    np.testing.assert_array_equal(np.concatenate(got), np.arange(len(beats)))
