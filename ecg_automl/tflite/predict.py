"""Classify the beats of a WFDB record or a CSV of beats with an exported ``.tflite`` model.

This is the Raspberry Pi path: LiteRT, numpy, scipy and wfdb only — never TensorFlow, scikit-learn,
pandas, Optuna or MLflow (a test checks the imports).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ecg_data import AAMI, ABNORMAL, heartbeat_csv, read_annotations, read_header
from ecg_data.errors import DataError
from ecg_data.preprocess import HIGH_CUT, HIGH_CUT_MAX, LOW_CUT, N_RR_FEATURES, normalise, resample, rr_features
from ecg_data.stream import (CHUNK_S, GAP_S, MissingRuns, Progress, beat_windows_chunked, detect_r_peaks_chunked,
                             full_window, missing_runs)

from ..argtypes import FS_HIGH, FS_LOW
from . import quality
from .convert import TFLiteError
from .runtime import TFLiteModel, unreachable_threshold_message
from .sidecar import edited_preparation, model_sha256, read_sidecar, sidecar_path

#: Names of the AAMI class Q beat symbols: annotated beats the models are not trained on, so never classified.
_Q_SYMBOLS = {"/": "paced", "f": "fusion of paced and normal", "Q": "unclassifiable"}
#: Common ECG sampling rates: a CSV row length that matches the model's window at one of them is named.
_COMMON_RATES = (100, 125, 128, 200, 250, 256, 257, 360, 400, 500, 1000)


@dataclass
class Prediction:
    """Per-beat probabilities of *abnormal* with the beats' sample positions, and a record summary."""

    source: str
    samples: np.ndarray
    prob: np.ndarray
    threshold: float
    reference: np.ndarray | None = None  # 1 = abnormal per the record's own annotations, when asked
    summary: dict[str, Any] = field(default_factory=dict)
    fs: float | None = None  # a record's sampling rate (None for CSV rows): ``samples / fs`` are seconds
    n_samples: int = 0  # a record's length in samples
    gaps: np.ndarray | None = None  # a record's gaps on the leads read, merged: (k, 2) start, stop samples

    @property
    def abnormal(self) -> np.ndarray:
        """Each beat's decision: probability at or above the model's threshold."""
        return self.prob >= self.threshold


#: Sources whose labels are a record's (its diagnosis), not a beat's: a model of theirs judges records.
RECORD_LABELLED = ("ptbxl", "ptbdb")


def _summary(pred: Prediction, output_max: float = float("inf"), meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """The numbers and the verdict of a prediction. A model trained on record labels (:data:`RECORD_LABELLED`) gets a
    record's verdict, its beats' mean p(abnormal) against the threshold: "abnormal beats present" for any one beat
    over it called a PTB-XL NORM record with 1 of 9 such beats abnormal, and an MI record with none normal."""
    n = len(pred.prob)
    flagged = int(pred.abnormal.sum())
    mean = float(pred.prob.mean()) if n else 0.0
    out: dict[str, Any] = {"beats": n, "abnormal_beats": flagged,
                           "abnormal_fraction": flagged / n if n else 0.0,
                           "mean_probability": mean,
                           "threshold": pred.threshold,
                           "verdict": "abnormal beats present" if flagged else "no abnormal beat found"}
    if meta is not None and meta.get("dataset") in RECORD_LABELLED and n:
        meaning = (meta.get("class_meaning") or {}).get("1", "abnormal record")
        out["record_decision"] = "abnormal" if mean >= pred.threshold else "normal"
        out["verdict"] = (f"{out['record_decision']} record: its beats' mean p(abnormal) {mean:.3f} is "
                          f"{'at or over' if mean >= pred.threshold else 'under'} the threshold (the model learned "
                          f"records' diagnoses, 1 = {meaning}: it judges the record, not each beat)")
    unreachable = unreachable_threshold_message(pred.threshold, output_max)
    if unreachable:  # "no abnormal beat" would be a statement the model cannot make
        out["warning"] = unreachable
        out["verdict"] = "unknown: the model cannot reach its threshold"
    if pred.reference is not None and n:
        ref, hat = pred.reference.astype(bool), pred.abnormal
        tp, tn = int((ref & hat).sum()), int((~ref & ~hat).sum())
        fp, fn = int((~ref & hat).sum()), int((ref & ~hat).sum())
        out["against_annotations"] = {
            "accuracy": (tp + tn) / n, "sensitivity": tp / (tp + fn) if tp + fn else None,
            "specificity": tn / (tn + fp) if tn + fp else None, "ppv": tp / (tp + fp) if tp + fp else None,
            "tp": tp, "fp": fp, "tn": tn, "fn": fn}
    return out


def _add_export_warning(summary: dict[str, Any], meta: dict[str, Any]) -> None:
    """``export_warning`` when the file's own export check flagged it (it lost F1 or ROC-AUC against the Keras model
    it came from); an unreachable threshold is said apart, as ``warning``, from the model itself."""
    v = meta.get("verification")
    if isinstance(v, dict) and v.get("flagged") and v.get("flag_reasons"):
        summary["export_warning"] = "its export check flagged this file: " + "; ".join(map(str, v["flag_reasons"]))


def _model_inputs(meta: dict[str, Any], windows: np.ndarray, rr: np.ndarray) -> dict[str, np.ndarray]:
    length, full = int(meta["input_length"]), windows.shape[1]
    start = (full - length) // 2
    inputs = {"ecg": windows[:, start:start + length, :]}
    if meta["rr_features"]:
        inputs["rr"] = rr
    return inputs


def _check_rr_width(model: TFLiteModel, model_path) -> None:
    """Refuse a model whose RR input has another width than the features this version computes (a model
    exported by an older ecg-automl), with a message that says what to do instead of a shape error."""
    if "rr" not in model.inputs:
        return
    width = int(model.inputs["rr"]["shape"][-1])
    if width != N_RR_FEATURES:
        raise TFLiteError(f"{model_path}: the model takes {width} RR-interval features, but this ecg-automl "
                          f"computes {N_RR_FEATURES}; it was exported by another version -- re-export it "
                          f"(ecg-automl export) or predict with the version that exported it")


def _open_model(model_path: str | Path, threads: int) -> tuple[dict[str, Any], TFLiteModel]:
    """The sidecar and the model of ``model_path``; a file that is no TFLite flatbuffer (a .keras model, say)
    is named as such before the sidecar is looked for."""
    path = Path(model_path)
    if path.exists() and not path.is_file():
        raise TFLiteError(f"{path}: not a file; predict takes a .tflite written by `ecg-automl export`")
    if path.is_file():
        with open(path, "rb") as fh:
            head = fh.read(8)
        if len(head) < 8 or head[4:8] != b"TFL3":
            hint = (" (a .keras model is converted with `ecg-automl export --study NAME --out model.tflite`)"
                    if path.suffix.lower() == ".keras" else "")
            raise TFLiteError(f"{path}: not a TFLite model (no TFL3 flatbuffer identifier); predict takes a .tflite "
                              f"written by `ecg-automl export`, with its .json sidecar beside it{hint}")
    meta = read_sidecar(model_path)
    _check_sidecar_sha(meta, path.read_bytes() if path.is_file() else b"", model_path)  # before the model is read
    model = TFLiteModel(model_path, threads=threads)
    _check_sidecar_matches(meta, model, model_path)
    edited = edited_preparation(meta)
    if edited:  # obeyed (the user may mean it), but said: the model then reads windows prepared otherwise
        logging.getLogger("ecg_automl").warning(
            "%s: its sidecar was edited since export: %s; beats are prepared as the sidecar now says, not as the "
            "model was trained on", sidecar_path(model_path).name, "; ".join(edited))
    _check_rr_width(model, model_path)
    return meta, model


def _check_sidecar_sha(meta: dict[str, Any], model_bytes: bytes, model_path) -> None:
    """Refuse a sidecar that records another model's SHA-256 (checked before the model is read: another valid
    .tflite, one of two outputs, say, failed in the reading instead of being named as another model)."""
    sha = meta.get("sha256")
    if sha is not None and sha != model_sha256(model_bytes):
        raise TFLiteError(f"{model_path}: its sidecar {sidecar_path(model_path).name} belongs to another model (the "
                          f"sidecar records SHA-256 {str(sha)[:12]}..., this file is {model_sha256(model_bytes)[:12]}"
                          f"...); export writes the two together: copy both, or export again")


def _check_sidecar_matches(meta: dict[str, Any], model: TFLiteModel, model_path) -> None:
    """Refuse a sidecar that belongs to another model by the inputs it describes (an older sidecar records no
    SHA-256: :func:`_check_sidecar_sha` judges the others first). Obeying it would prepare windows, or apply a
    threshold, that are another model's: a shape error at best, wrong decisions at worst."""
    side = sidecar_path(model_path).name
    ecg = model.inputs.get("ecg")
    mismatch = []
    if ecg is not None and len(ecg["shape"]) == 3:
        if int(ecg["shape"][1]) != int(meta["input_length"]):
            mismatch.append(f"the model reads {int(ecg['shape'][1])} samples, the sidecar says {meta['input_length']}")
        if "channels" in meta and int(ecg["shape"][2]) != int(meta["channels"]):
            mismatch.append(f"the model reads {int(ecg['shape'][2])} lead(s), the sidecar says {meta['channels']}")
    if ("rr" in model.inputs) != bool(meta["rr_features"]):
        mismatch.append(f"the model {'takes' if 'rr' in model.inputs else 'has no'} RR input, the sidecar says "
                        f"rr_features {bool(meta['rr_features'])}")
    if mismatch:
        raise TFLiteError(f"{model_path}: its sidecar {side} describes another model ({'; '.join(mismatch)}); "
                          f"export writes the two together: copy both, or export again")


def _model_channels(meta: dict[str, Any], model: TFLiteModel) -> int:
    """How many leads each window of the model holds (its ``ecg`` input's last axis)."""
    if "ecg" in model.inputs and len(model.inputs["ecg"]["shape"]) == 3:
        return int(model.inputs["ecg"]["shape"][-1])
    return int(meta.get("channels", 1))


# A Holter's modified limb leads (MLI, MLII, MLIII; MIT-BIH records MLII) and the standard limb leads of a
# 12-lead record (I, II, III) look along the same axis: each is the other's closest stand-in.
_LIMB_COUNTERPART = {"MLI": "I", "MLII": "II", "MLIII": "III", "I": "MLI", "II": "MLII", "III": "MLIII"}
_COUNTERPART_NOTE = "its closest counterpart (the same limb-lead axis, other electrode placement)"


def _find_lead(names: list[str], lead: str) -> int | None:
    """Index of ``lead`` among a record's signal names (case-insensitive), or None."""
    upper = [n.upper() for n in names]
    return upper.index(lead.upper()) if lead.upper() in upper else None


def _record_leads(meta: dict[str, Any], model_path, names: list[str], channels: int,
                  record: Path, lead: str | None = None) -> tuple[list[int], str | None]:
    """The record's channel indices that feed the model, in the order it was trained on, and a warning when a
    one-lead model has to read another lead than its own. A multi-lead model needs every lead it was trained on
    (named in the sidecar's ``leads``): a record without them, or a sidecar that does not name them, is refused.
    ``lead``: the record's lead a one-lead model reads instead of the one named like its own (a device whose lead
    is named "ECG" or "CH1"); a record without it is refused."""
    leads = meta.get("leads")
    have = ", ".join(names) or "none"
    if not names:
        raise DataError(f"{record}: the record has no signal to classify")
    if lead is not None and channels != 1:
        raise TFLiteError(f"{model_path}: --lead picks the one lead of a one-lead model, but this model takes "
                          f"{channels} leads ({', '.join(map(str, leads or ())) or 'unnamed'}), which it reads from "
                          f"the record by name")
    if channels == 1:
        wanted = str(leads[0] if leads else meta["lead"])
        if lead is not None:
            idx = _find_lead(names, lead)
            if idx is None:
                raise DataError(f"{record}: it has no lead {lead} (leads: {have})")
            if wanted == "first" or names[idx].upper() == wanted.upper():  # "first": the model names no lead
                return [idx], None
            return [idx], (f"the model was trained on lead {wanted}; lead {names[idx]} was read as asked (--lead)"
                           + (f", {_COUNTERPART_NOTE}" if names[idx].upper() == _LIMB_COUNTERPART.get(wanted.upper())
                              else "")
                           + f", so the predictions may differ from those on {wanted}")
        idx = _find_lead(names, wanted)
        if idx is not None or wanted == "first":
            return [idx or 0], None
        counterpart = _LIMB_COUNTERPART.get(wanted.upper())
        alt = _find_lead(names, counterpart) if counterpart else None
        if alt is not None:
            return [alt], (f"the model was trained on lead {wanted}, which {record} does not have (leads: {have}); "
                           f"lead {names[alt]}, {_COUNTERPART_NOTE}, was used instead, so the predictions may "
                           f"differ from those on {wanted}")
        return [0], (f"the model was trained on lead {wanted}, which {record} does not have (leads: {have}); "
                     f"lead {names[0]} was used instead, so the predictions may not be reliable")
    if not leads or len(leads) != channels:
        raise TFLiteError(f"{model_path}: the model takes {channels} leads, but its sidecar "
                          f"({sidecar_path(model_path).name}) does not name them (exported by an older ecg-automl); "
                          f"re-export it with `ecg-automl export` to predict on a record ({record} has "
                          f"{len(names)} lead(s): {have})")
    idx = [_find_lead(names, str(lead)) for lead in leads]
    missing = [str(lead) for lead, i in zip(leads, idx) if i is None]
    if missing:
        raise DataError(f"{record}: the model needs {channels} leads ({', '.join(map(str, leads))}); the record has "
                        f"{len(names)} ({have}), missing {', '.join(missing)}")
    return [int(i) for i in idx], None


def _seen_record_warning(meta: dict[str, Any], record: Path) -> str | None:
    """A warning when ``record`` bears the name of one of the records the model's search trained on (the
    sidecar's ``search_records``: MIT-BIH's DS1 records, PTB-XL's ecg_ids of strat_folds 1-9): results on it, and
    against its annotations above all, overstate what the model does on a patient it has not seen."""
    seen = {str(r) for r in meta.get("search_records") or ()}
    names = {r.rsplit("/", 1)[-1] for r in seen}  # PTB Diagnostic's are patient001/s0010_re
    ptbxl = meta.get("dataset") == "ptbxl" and re.fullmatch(r"0*(\d+)_(?:lr|hr)", record.name)
    if meta.get("dataset") == "mitdb" and record.name not in names:  # DS2's 202 is DS1's 201: one man, one tape
        from ecg_data.mitdb import SUBJECTS

        subject = SUBJECTS.get(record.name)
        same = sorted(n for n in names if subject is not None and SUBJECTS.get(n) == subject)
        if same:
            return (f"a record named {record.name} is of the same patient as MIT-BIH record {same[0]}, one of the "
                    f"{len(seen)} records whose patients this model was trained on: if it is that record, the "
                    f"results on it (against its annotations above all) overstate how the model does on patients it "
                    f"has not seen")
    if not names & {record.name, *(ptbxl.groups()[:1] if ptbxl else ())}:  # a PTB-XL file (00001_lr): its ecg_id
        return None
    return (f"a record named {record.name} is one of the {len(seen)} {meta.get('dataset', '')} records whose "
            f"patients this model was trained on: if it is that record, the results on it (against its annotations "
            f"above all) overstate how the model does on patients it has not seen")


def _skipped_note(symbols: np.ndarray | None, is_q: np.ndarray, no_window: int) -> dict[str, Any] | None:
    """Count of the found or annotated beats that were not classified, and why (None when none was dropped):
    ``class_q`` annotated AAMI class Q beats by kind, ``no_full_window`` beats at the record's ends."""
    class_q: dict[str, int] = {}
    if symbols is not None:
        for sym, name in _Q_SYMBOLS.items():
            n = int((symbols[is_q] == sym).sum())
            if n:
                class_q[f"{name} ({sym})"] = n
    count = sum(class_q.values()) + int(no_window)
    return {"count": count, "class_q": class_q, "no_full_window": int(no_window)} if count else None


def _skipped_text(k: dict[str, Any]) -> str:
    """One line for :func:`_skipped_note`'s count."""
    why = []
    if k["class_q"]:
        kinds = [f"{n} {name}" for name, n in k["class_q"].items()]
        q = sum(k["class_q"].values())
        why.append(f"{', '.join(kinds)} {'beat is' if q == 1 else 'beats are'} AAMI class Q, which the model is not "
                   "trained on")
    if k["no_full_window"]:
        n = k["no_full_window"]
        why.append(f"{n} {'is' if n == 1 else 'are'} too close to the record's start or end for a full window")
    return f"{k['count']} {'beat was' if k['count'] == 1 else 'beats were'} not classified: {'; '.join(why)}"


def _strip_extension(record: Path, annotations: str | None) -> Path:
    """``mitdb/208.dat`` (or .hea, .atr, .<annotations>, or .mat: a CinC-2021 record's signal file) ->
    ``mitdb/208``: wfdb wants the record name."""
    exts = {".dat", ".hea", ".atr", ".mat"} | ({f".{annotations.lower()}"} if annotations else set())
    return record.with_suffix("") if record.suffix.lower() in exts else record


#: The band-pass a record gets when the sidecar names none (``filter`` null: a heartbeat-CSV model): a raw record
#: needs its baseline wander and mains hum taken out, and this is the band every other source was trained with.
_RECORD_BAND = {"low": LOW_CUT, "high": HIGH_CUT}


def _record_band(meta: dict[str, Any]) -> dict[str, float]:
    """The sidecar's band-pass for a record's signal (``low``, ``high`` in Hz), or :data:`_RECORD_BAND` when it
    has none (``filter`` null or absent)."""
    band = meta.get("filter") or {}
    return {k: band.get(k, default) for k, default in _RECORD_BAND.items()}


def _unfiltered_training_warning(meta: dict[str, Any]) -> str | None:
    """A warning when the model was trained on windows ecg-automl did not filter (a heartbeat-CSV model, whose rows
    were preprocessed by the CSV's maker; an older sidecar of one still names the 0.5-40 Hz band): a record's
    beats, band-passed and cut by predict, may not look like its training rows. None for any other model."""
    heartbeat = meta.get("dataset") == "heartbeat-csv"
    if not heartbeat and not ("filter" in meta and meta["filter"] is None):
        return None
    band = _record_band(meta)
    rows = ("heartbeat-CSV rows, whose preprocessing (filtering included) was the CSV maker's, not ecg-automl's"
            if heartbeat else f"{meta.get('dataset', 'its')} windows that ecg-automl did not filter")
    return (f"this model was trained on {rows}; this record's beats were band-pass filtered {band['low']:g}-"
            f"{band['high']:g} Hz, cut and normalised by ecg-automl, so they may not look like its training rows, "
            f"and its decisions on them are not what its test figures describe")


def _check_filter(meta: dict[str, Any], model_path: str | Path, fs: float, record: Path) -> None:
    """Refuse, before the record is read, a sidecar band-pass that cannot be built at the record's own rate (the
    filter runs before resampling): its high cut-off is capped at HIGH_CUT_MAX x the rate, as in training, so a
    low cut-off at or above that cap was scipy's traceback 'Wn[0] must be less than Wn[1]'."""
    low, cap = _record_band(meta)["low"], HIGH_CUT_MAX * fs
    if low >= cap:
        raise TFLiteError(f"{sidecar_path(model_path)}: filter.low is {low:g} Hz, but {record} is sampled at "
                          f"{fs:g} Hz, where the band-pass stops at {cap:g} Hz ({HIGH_CUT_MAX:g} x the rate): "
                          f"classify a record sampled faster than {low / HIGH_CUT_MAX:.4g} Hz, or export the model "
                          f"again (export writes low 0.5 Hz)")


def predict_record(model_path: str | Path, record: str | Path, *, annotations: str | None = None,
                   threads: int = 1, chunk_s: float = CHUNK_S, progress: Progress | None = None,
                   lead: str | None = None) -> Prediction:
    """Classify every beat of a WFDB record (``record`` without extension; a .dat/.hea/.atr/.mat one is dropped).

    Beats are found with wfdb's XQRS detector, as on a device; with ``annotations='atr'`` the record's
    reference beat positions are used instead and the summary compares the model with their labels. The
    windows hold the leads the model was trained on (all 12 for a PTB-XL model); ``lead`` names the record's lead
    a one-lead model reads when the record names its leads otherwise (e.g. ``"ECG"``). The record is read
    ``chunk_s`` seconds at a time (see :mod:`ecg_data.stream`), so a 24-hour Holter recording fits in memory;
    ``progress(stage, samples_done, samples_total)`` is called after each chunk.
    """
    meta, model = _open_model(model_path, threads)
    record = _strip_extension(Path(record), annotations)
    head = read_header(record)
    _check_filter(meta, model_path, head.fs, record)
    shortest = int(np.ceil(float(meta["window"]) / float(meta["fs"]) * head.fs))
    if head.n_samples < shortest:  # the filters failed on it with scipy's "must be greater than padlen" traceback
        raise DataError(f"{record}: {head.n_samples} samples ({head.n_samples / head.fs:.2f} s), shorter than one beat "
                        f"window of this model ({float(meta['window']) / float(meta['fs']):.2f} s): no beat can be "
                        f"classified")
    channels, lead_warning = _record_leads(meta, model_path, head.sig_names, _model_channels(meta, model), record,
                                           lead)
    detect = _find_lead(head.sig_names, str(meta["lead"])) if len(channels) > 1 else None
    det_ch = channels[0] if detect is None else detect  # beats are found on the detection lead (II for PTB-XL)
    reference = None
    counted = sorted({*channels, det_ch})
    scan = quality.LeadScan(head.fs, [head.sig_names[c] for c in counted])  # flat and clipped, on the same pass
    missing = missing_runs(head, counted, chunk_s=chunk_s, observe=scan)  # lead-off gaps: bridged alike wherever chunks end
    empty = [name for name, s in scan.stats().items() if s["range_mv"] is None]
    if empty:  # with annotations its beats were classified as all-zero windows: "no abnormal beat found"
        raise DataError(f"{record}: lead {', '.join(empty)} holds no sample (every value is missing): no beat of it "
                        f"can be classified")
    in_gap = 0
    if annotations:
        samples, symbols = read_annotations(record, annotations, n_samples=head.n_samples, checked=AAMI)
        beat = np.isin(symbols, list(AAMI))
        samples, symbols = samples[beat], symbols[beat]
        keep_cls = np.array([AAMI[s] != "Q" for s in symbols], dtype=bool)
    else:
        # XQRS finds nothing in a signal with one NaN: a lead-off gap is bridged first, as the filter does
        samples = detect_r_peaks_chunked(head, det_ch, chunk_s=chunk_s, missing=missing, progress=progress)
        found = len(samples)
        samples = samples[~_inside(samples, missing.gaps(det_ch, _gap_len(head.fs)))]  # no signal: no beat
        in_gap = found - len(samples)
        symbols, keep_cls = None, np.ones(len(samples), dtype=bool)
    if len(samples) == 0:
        flat = scan.stats()[head.sig_names[det_ch]]
        why = (f": the lead is flat (spans under {quality.FLAT_MV:g} mV per second) for {flat['flat_s']:.0f} s of its "
               f"{head.n_samples / head.fs:.0f} s" if flat["flat_s"] else "")
        raise DataError(f"{record}: no beats found (lead {head.sig_names[det_ch]}){why}")
    fs_model, window = float(meta["fs"]), int(meta["window"])
    kept = full_window(samples, head.fs, head.n_samples, fs=fs_model, length=window)
    # the rhythm context needs every beat of the record, not its signal; a gap on the detection lead breaks it
    order = np.argsort(samples, kind="stable")
    sorted_beats = samples[order]
    det_gaps = missing.gaps(det_ch, _gap_len(head.fs))  # the detection lead's gaps: rhythm and signal checks
    rr = np.empty((len(samples), N_RR_FEATURES), dtype=np.float32)
    rr[order] = _rr_by_segment(sorted_beats, head.fs, det_gaps)
    use = keep_cls & kept
    beat_samples, rr = samples[use], rr[use]
    if symbols is not None:
        reference = np.isin([AAMI[s] for s in symbols[use]], ABNORMAL)
    skipped = _skipped_note(symbols, ~keep_cls, int((keep_cls & ~kept).sum()))
    if len(beat_samples) == 0:
        raise DataError(f"{record}: none of its {len(samples)} beats can be classified"
                        + (f" ({_skipped_text(skipped)})" if skipped else ""))
    shapes = quality.BeatScan(float(meta["fs"]))
    prob, clipped = _classify_chunked(meta, model, head, channels, counted, missing, beat_samples, rr, chunk_s,
                                      progress, shapes, channels.index(det_ch) if det_ch in channels else 0)
    pred = Prediction(str(record), beat_samples, prob, float(meta["threshold"]), reference, fs=head.fs,
                      n_samples=head.n_samples, gaps=_merged([missing.gaps(c, _gap_len(head.fs)) for c in counted]))
    lead_names = [head.sig_names[c] for c in channels]
    pred.summary = {**_summary(pred, model.output_max, meta),
                    "lead": lead_names[0] if len(lead_names) == 1 else ",".join(lead_names), "fs_record": head.fs,
                    "beat_source": f"annotations ({annotations})" if annotations else "XQRS detector"}
    if lead_warning:
        pred.summary["lead_warning"] = lead_warning
    seen = _seen_record_warning(meta, record)
    if seen:
        pred.summary["seen_in_training"] = seen
    unfiltered = _unfiltered_training_warning(meta)
    if unfiltered:
        pred.summary["preprocessing_warning"] = unfiltered
    _add_export_warning(pred.summary, meta)
    if skipped:
        pred.summary["skipped_beats"] = skipped
    if missing.total():
        pred.summary["missing_samples"] = missing.total()
    gaps = _gap_note(head, counted, det_ch, missing, samples, beat_samples, in_gap, fs_model, window)
    if gaps:
        pred.summary["gaps"] = gaps
    if clipped:
        pred.summary["clipped_inputs"] = clipped
    corr, negative = shapes.arrays()
    # the polarity hint only where it was measured to hold: lead II of 12-lead records points down in 49 of PTB-XL's
    # first 500 (axis deviation, bundle branch blocks), MLII in no MIT-BIH record
    trained_up = meta.get("dataset") == "mitdb" and str(meta["lead"]).upper() == "MLII"
    pred.summary["signal_quality"], warnings = quality.assess(
        scan.stats(), fs=head.fs, n_samples=head.n_samples, beats=sorted_beats,
        rhythm_breaks=_rhythm_breaks(sorted_beats, det_gaps), gaps=det_gaps,
        classified=np.sort(beat_samples), corr=corr, negative=negative,
        polarity_lead=str(meta["lead"]) if trained_up and len(channels) == 1 and not lead_warning else None)
    if warnings:
        pred.summary["quality_warnings"] = warnings
    if reference is not None:
        pred.summary["reference"] = "the record's annotations"
    return pred


def _gap_len(fs: float) -> int:
    """Samples in the shortest run of missing samples that counts as a gap (:data:`GAP_S`)."""
    return max(int(np.ceil(GAP_S * fs)), 1)


def _rhythm_breaks(samples: np.ndarray, runs: np.ndarray) -> np.ndarray:
    """Indices ``i`` of the sorted ``samples`` whose interval to the beat before holds a whole gap of ``runs``
    (``start, stop`` rows): no beat was found in the gap, so that interval is no RR interval but lost signal."""
    if not len(runs) or len(samples) < 2:
        return np.zeros(0, dtype=np.int64)
    j = np.searchsorted(samples, runs[:, 0], side="left")  # the first beat at or after each gap's start
    inner = (j > 0) & (j < len(samples))
    j, stop = j[inner], runs[inner, 1]
    return np.unique(j[samples[j] >= stop])


def _rr_by_segment(samples: np.ndarray, fs: float, runs: np.ndarray) -> np.ndarray:
    """RR features of the sorted ``samples`` with the rhythm broken at each gap of ``runs`` that no beat lies in:
    :func:`rr_features` of each stretch between gaps on its own, so the beats on either side of a lead-off get the
    features of a record's last and first beats (what the model was trained on), not a pause as long as the gap."""
    rr = np.empty((len(samples), N_RR_FEATURES), dtype=np.float32)
    bounds = [0, *_rhythm_breaks(samples, runs).tolist(), len(samples)]
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        rr[lo:hi] = rr_features(samples[lo:hi], fs)
    return rr


def _merged(runs: list[np.ndarray]) -> np.ndarray:
    """The union of several leads' ``start, stop`` runs as sorted, disjoint runs, (k, 2)."""
    rows = sorted(map(tuple, np.concatenate([np.reshape(r, (-1, 2)) for r in runs] or [np.zeros((0, 2))])))
    out: list[list[int]] = []
    for a, b in rows:
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], int(b))
        else:
            out.append([int(a), int(b)])
    return np.array(out, dtype=np.int64).reshape(-1, 2)


def _inside(samples: np.ndarray, runs: np.ndarray) -> np.ndarray:
    """Mask of the ``samples`` that lie in one of the ``runs`` (``start, stop`` rows, sorted, disjoint)."""
    if not len(runs) or not len(samples):
        return np.zeros(len(samples), dtype=bool)
    k = np.searchsorted(runs[:, 0], samples, side="right") - 1
    return (k >= 0) & (samples < runs[np.maximum(k, 0), 1])


def _gap_note(head, counted: list[int], det_ch: int, missing: MissingRuns, found: np.ndarray, beats: np.ndarray,
              in_gap: int, fs_model: float, window: int) -> dict[str, Any] | None:
    """The record's gaps (runs of missing samples of :data:`GAP_S` or more on the leads read) and the beats they
    touch: found beats left out because they lay inside one, and classified ``beats`` whose window overlaps one or
    that are the last beat before or the first after a gap on the detection lead ``det_ch`` with no ``found`` beat
    in it (the rhythm restarts there, see :func:`_rr_by_segment`: the RR interval on that side is unknown and is
    given the value a record's first or last beat gets). None if no gap."""
    runs = [(c, int(a), int(b)) for c in counted for a, b in missing.gaps(c, _gap_len(head.fs))]
    if not runs:
        return None
    runs.sort(key=lambda r: (r[1], r[0]))
    half = int(np.ceil(window / 2 * head.fs / fs_model)) + 1
    both = np.array([[a, b] for _, a, b in runs], dtype=np.int64)
    near = np.zeros(len(beats), dtype=bool)
    for a, b in both:  # a window [beat - half, beat + half] that overlaps [a, b)
        near |= (beats + half >= a) & (beats - half < b)
    found = np.sort(found)
    k = np.searchsorted(found, beats)
    prev = found[np.maximum(k - 1, 0)]
    nxt = found[np.minimum(k + 1, len(found) - 1)]
    for a, b in missing.gaps(det_ch, _gap_len(head.fs)):  # a beat whose interval to a neighbour held a gap
        near |= ((k > 0) & (prev < a) & (beats >= b)) | ((k + 1 < len(found)) & (beats < a) & (nxt >= b))
    seconds = [(b - a) / head.fs for _, a, b in runs]
    longest = int(np.argmax(seconds))
    return {"count": len(runs), "seconds": float(sum(seconds)), "longest_s": float(seconds[longest]),
            "longest_at_s": runs[longest][1] / head.fs, "min_gap_s": GAP_S, "beats_inside_dropped": int(in_gap),
            "beats_next_to_gap": int(near.sum()),
            "runs": [{"lead": head.sig_names[c], "start": a, "stop": b} for c, a, b in runs[:50]]}


def _classify_chunked(meta: dict[str, Any], model: TFLiteModel, head, channels: list[int], counted: list[int],
                      missing: MissingRuns, beats: np.ndarray, rr: np.ndarray, chunk_s: float,
                      progress: Progress | None, shapes: quality.BeatScan | None = None,
                      shape_lead: int = 0) -> tuple[np.ndarray, dict[str, int]]:
    """The model's probability for each of ``beats`` (with their ``rr`` rows) and the rows per input it clipped,
    one chunk of the record at a time (only the chunk's windows are held); ``missing`` bridges the gaps.
    ``shapes`` sees each chunk's windows of lead ``shape_lead`` (an index into ``channels``) in sample order."""
    order = np.argsort(beats, kind="stable")  # annotation files are sorted; the chunks need it
    band = _record_band(meta)
    prob = np.zeros(len(beats), dtype=np.float32)  # what TFLiteModel.predict returns
    clipped: dict[str, int] = {}
    for idx, windows in beat_windows_chunked(
            head, channels, beats[order], fs=float(meta["fs"]), length=int(meta["window"]),
            low=band["low"], high=band["high"], chunk_s=chunk_s, missing=missing,
            progress=progress):
        if not len(idx):
            continue
        rows = order[idx]
        if shapes is not None:
            shapes(windows[:, :, shape_lead])
        inputs = _model_inputs(meta, windows, rr[rows])
        prob[rows] = model.predict(inputs)
        for k, n in model.clipped_rows(inputs).items():
            clipped[k] = clipped.get(k, 0) + n
    return prob, {k: n for k, n in clipped.items() if n}


def _csv_windows(rows: np.ndarray, meta: dict[str, Any], fs_in: float) -> tuple[np.ndarray, int]:
    """CSV rows (n, samples) at ``fs_in`` Hz as the model's normalised windows (n, window, 1), and how many samples
    of each window the rows fill (the rest is zero-padding)."""
    fs_model, window = float(meta["fs"]), int(meta["window"])
    if meta.get("dataset") == "heartbeat-csv":
        # rows of the layout it was trained on begin at the R peak, at any rate: placed in the window as the search
        # placed them (at another --csv-fs the centre crop below cut the R peak off, without a word); the zeros
        # before the R peak are the layout's own, those after a short row's end are padding
        after = int(round(rows.shape[1] * fs_model / fs_in))
        return heartbeat_csv.windows_of(rows, fs_model, window, fs_in), window // 2 + min(after, window - window // 2)
    # each row is resampled alone: "antireflect" continues it past both ends, where zeros (scipy's default) pulled
    # its first and last samples towards 0 (rows at 360 Hz differed from the record's own windows by up to 1.2
    # z-units there, and changed 34 of 300 decisions on MIT-BIH 213)
    beats = resample(rows.T, fs_in, fs_model, padtype="antireflect").T if fs_in != fs_model else rows
    covered = min(beats.shape[1], window)
    if beats.shape[1] < window:  # padded with NaN: the z-score is the rows' own (zeros lowered its spread), and
        pad = window - beats.shape[1]  # normalise then sets the padding to 0
        beats = np.pad(beats, ((0, 0), (pad // 2, pad - pad // 2)), constant_values=np.nan)
    start = (beats.shape[1] - window) // 2
    return normalise(beats[:, start:start + window, None]), covered


def _csv_rows(csv_path: str | Path) -> np.ndarray:
    """The CSV's rows as a 2-D float array; an empty or non-numeric file is a clear error."""
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # numpy warns on an empty file; that is reported below
            # utf-8-sig: a CSV saved by Excel begins with a byte-order mark ("'\ufeff1.0' is not a number"); the
            # search's reader (pandas) takes such a file
            rows = np.loadtxt(csv_path, delimiter=",", dtype=np.float64, ndmin=2, encoding="utf-8-sig")
    except FileNotFoundError:
        raise
    except (ValueError, OSError) as exc:
        where = _locate_parse_error(csv_path) if isinstance(exc, ValueError) else None
        raise DataError(f"{csv_path}, {where}" if where else f"{csv_path}: not a numeric CSV of beats ({exc})") from None
    if rows.size == 0:
        raise DataError(f"{csv_path}: no beats (the file holds no rows); a CSV for predict holds one beat per row")
    return rows


def _data_lines(csv_path: str | Path):
    """``(line number from 1, text)`` of each line of the CSV that np.loadtxt reads as a row: the text before a
    ``#`` of every line where that is not empty (as ``data info`` counts lines, blank and comment lines count)."""
    with open(csv_path, encoding="utf-8-sig", errors="replace") as fh:
        for lineno, line in enumerate(fh, start=1):
            text = line.rstrip("\r\n").split("#", 1)[0]
            if text:
                yield lineno, text


def _locate_parse_error(csv_path: str | Path) -> str | None:
    """``line N[, column C]: what is wrong`` for the first line np.loadtxt could not read, or None."""
    width = None
    for lineno, text in _data_lines(csv_path):
        if not text.strip():
            return f"line {lineno}: holds no number (only spaces)"
        fields = text.split(",")
        if width is not None and len(fields) != width:
            return f"line {lineno}: {len(fields)} columns, the lines above have {width}"
        width = len(fields)
        for col, value in enumerate(fields, start=1):
            try:
                heartbeat_csv.csv_number(value)
            except ValueError:
                return f"line {lineno}, column {col}: {value.strip()[:40]!r} is not a number"
    return None


def _check_finite(csv_path, rows: np.ndarray, has_label: bool) -> None:
    """Refuse rows that hold NaN or inf, naming the first one's line: the model gives them a probability all the same
    (an all-NaN row came out abnormal), and a NaN label compares as abnormal."""
    bad = ~np.isfinite(rows)
    bad_rows = bad.any(axis=1)
    if not bad_rows.any():
        return
    i = int(np.argmax(bad_rows))
    col = int(np.argmax(bad[i]))
    where = _row_place(csv_path, rows, i)
    count = f"{int(bad_rows.sum())} of {len(rows)} rows hold NaN or inf values"
    if has_label and col == rows.shape[1] - 1:
        raise DataError(f"{csv_path}, {where}: label {rows[i, col]} is not a finite number (0 = normal, other "
                        f"numbers abnormal); {count}")
    raise DataError(f"{csv_path}, {where}, column {col + 1}: {rows[i, col]} is not a finite number; {count}, which "
                    f"the model cannot classify: drop or repair them")


def _row_place(csv_path, rows: np.ndarray, i: int) -> str:
    """``line N`` of row ``i`` of the CSV (blank and comment lines counted), or ``row i+1`` where they do not match."""
    lines = [n for n, _ in _data_lines(csv_path)]
    return f"line {lines[i]}" if len(lines) == len(rows) else f"row {i + 1}"


def _row_length_error(csv_path, n: int, window: int, fs: float, has_label: bool) -> DataError:
    """The error for CSV rows that are not the model's window long while no --csv-fs says their rate."""
    implied = n * fs / window
    known = [r for r in _COMMON_RATES if abs(implied - r) <= 0.005 * r]
    hint = (f"; {n} samples is the model's window at {known[0]} Hz: if that is the CSV's rate, pass --csv-fs "
            f"{known[0]}" if known else "; if the rows are at another rate, pass it with --csv-fs")
    if n == window + 1 and not has_label:
        hint = "; if the last column is each beat's label, pass --csv-has-label"
    return DataError(f"{csv_path}: rows hold {n} samples, but the model takes beats of {window} samples at "
                     f"{fs:g} Hz centred on the R peak{hint}")


def _check_heartbeat_rows(csv_path, n: int, has_label: bool) -> None:
    """A heartbeat-CSV model reads rows of that layout (187 samples at 125 Hz) unless --csv-fs says otherwise;
    a label column left in would be read as a 188th sample."""
    if n == heartbeat_csv.N_SAMPLES:
        return
    hint = ("; if the last column is each beat's class (as in mitbih_test.csv), pass --csv-has-label"
            if n == heartbeat_csv.N_COLUMNS and not has_label else
            "; if the rows are at another rate, pass it with --csv-fs")
    raise DataError(f"{csv_path}: rows hold {n} samples, but this model was trained on heartbeat-CSV rows of "
                    f"{heartbeat_csv.N_SAMPLES} samples at {heartbeat_csv.FS_IN:g} Hz{hint}")


def predict_csv(model_path: str | Path, csv_path: str | Path, *, fs: float | None = None,
                has_label: bool = False, threads: int = 1) -> Prediction:
    """Classify a CSV of beats, one window per row (optionally a last column with a 0 = normal label),
    centred on the R peak. Without ``fs`` each row must be exactly the model's window at the model's rate
    (for a model trained on heartbeat CSVs, that layout's 187 samples at 125 Hz, which begin at the R peak and are
    placed in the window as the search placed them); with it, rows are resampled from ``fs`` and centre-cropped or
    zero-padded to the window. RR context is not available in this format:
    models that need it are refused, as are multi-lead models."""
    meta, model = _open_model(model_path, threads)
    if meta["rr_features"]:
        raise TFLiteError(f"{model_path}: this model uses RR-interval context, which a CSV of isolated beats "
                          f"does not have; classify a WFDB record instead")
    channels = _model_channels(meta, model)
    if channels != 1:
        raise TFLiteError(f"{model_path}: the model takes {channels} leads per beat, but a CSV row holds one; "
                          f"classify a WFDB record instead")
    if fs is not None and not FS_LOW <= fs <= FS_HIGH:  # 0.001 resampled for hours, 1e9 failed in scipy
        raise DataError(f"the CSV's sampling rate must be in [{FS_LOW}, {FS_HIGH}] Hz, not {fs}")
    rows = _csv_rows(csv_path)
    _check_finite(csv_path, rows, has_label)
    if len(rows) and rows.shape[1] > 2 and np.array_equal(rows[0], np.arange(rows.shape[1])):
        # pandas' to_csv writes column numbers as a header: it was classified as a beat (of class 187 with a label)
        raise DataError(f"{csv_path}, {_row_place(csv_path, rows, 0)}: 0, 1, 2, ..., {rows.shape[1] - 1} is a header "
                        f"row of column numbers, "
                        f"not a beat: remove it (or write the CSV with header=False)")
    labels = None
    if has_label:
        if rows.shape[1] < 2:
            raise DataError(f"{csv_path}: rows hold {rows.shape[1]} column(s): no samples besides the label column")
        bad = np.flatnonzero((rows[:, -1] < 0) | (rows[:, -1] != np.round(rows[:, -1])))
        if len(bad):
            raise DataError(f"{csv_path}, {_row_place(csv_path, rows, int(bad[0]))}: label {rows[bad[0], -1]:g} is not "
                            f"a whole number >= 0 (0 = normal, any other class = abnormal): is the last column a "
                            f"label?")
        labels, rows = rows[:, -1] != 0, rows[:, :-1]
    fs_model, window = float(meta["fs"]), int(meta["window"])
    if meta.get("dataset") == "heartbeat-csv":  # trained on such rows: they are its input
        if fs is None:
            _check_heartbeat_rows(csv_path, rows.shape[1], has_label)
            fs = heartbeat_csv.FS_IN
        elif fs == heartbeat_csv.FS_IN and rows.shape[1] == heartbeat_csv.N_COLUMNS and not has_label:
            # that layout's rate with its class column left on: a 188th sample sent the rows to the centre crop
            # below, which cut off the R peak the rows begin at
            _check_heartbeat_rows(csv_path, rows.shape[1], has_label)
    if fs is None and rows.shape[1] != window:
        raise _row_length_error(csv_path, rows.shape[1], window, fs_model, has_label)
    fs_in = float(fs or fs_model)
    windows, covered = _csv_windows(rows, meta, fs_in)
    prob = model.predict(_model_inputs(meta, windows, np.zeros((len(windows), 0), np.float32)))  # no RR: refused above
    pred = Prediction(str(csv_path), np.arange(len(prob)), prob, float(meta["threshold"]), labels)
    pred.summary = {**_summary(pred, model.output_max, meta), "beat_source": "CSV rows"}
    _add_export_warning(pred.summary, meta)
    reads = int(meta.get("input_length") or window)  # the centred part of the window the model reads
    if min(covered, reads) < 0.9 * reads:  # an input mostly of zeros is not what the model learned from
        pred.summary["padding_warning"] = (
            f"each row holds {rows.shape[1]} samples at {fs_in:g} Hz ({rows.shape[1] / fs_in:.2f} s), "
            f"{100 * min(covered, reads) / reads:.0f} % of the {reads / fs_model:.2f} s the model reads: the rest was "
            f"zero-padded, which the model never saw in training; is --csv-fs the rows' rate?")
    elif covered < window:  # the model reads all it needs, but training z-scored each beat over the whole window
        pred.summary["padding_warning"] = (
            f"each row holds {rows.shape[1]} samples at {fs_in:g} Hz ({rows.shape[1] / fs_in:.2f} s), less than the "
            f"{window / fs_model:.2f} s window over which training z-scored each beat: the rows were z-scored over "
            f"their own samples, so decisions can differ from those on the record's beats; give rows of "
            f"{window / fs_model:.2f} s (or classify the WFDB record)")
    seen = _seen_record_warning(meta, Path(csv_path).with_suffix(""))  # a heartbeat-CSV file the search read
    if seen:
        pred.summary["seen_in_training"] = seen
    if labels is not None:
        pred.summary["reference"] = "the CSV's labels"
    return pred


#: Summary keys of warnings about the model and its input (a threshold it cannot reach, another lead read, a record
#: the search trained on, rows the model's training never filtered, a file its export check flagged), in the order
#: they are printed; the signal's own warnings are the list ``quality_warnings``.
MODEL_WARNING_KEYS = ("warning", "lead_warning", "seen_in_training", "preprocessing_warning", "padding_warning",
                      "export_warning")


def summary_warnings(summary: dict[str, Any]) -> list[str]:
    """Every warning of a prediction's summary, the model's and input's first, then the signal's ("signal: ..."), as
    the printed report gives them: what a plot of the prediction must show too."""
    return ([str(summary[k]) for k in MODEL_WARNING_KEYS if k in summary]
            + [f"signal: {w}" for w in summary.get("quality_warnings", [])])


def format_prediction(pred: Prediction, max_beats: int = 50) -> str:
    """Per-beat table (first ``max_beats``) and the summary, for the terminal."""
    s = pred.summary
    against = s.get("reference", "the record's annotations")
    verb = "labelled" if "label" in against else "annotated"
    lines = [f"{'beat':>6} {'sample':>9} {'p(abnormal)':>12}  decision"]
    for i in range(min(len(pred.prob), max_beats)):
        ref = ""
        if pred.reference is not None:
            ref = f"  ({verb} abnormal)" if pred.reference[i] else f"  ({verb} normal)"
        lines.append(f"{i:>6} {int(pred.samples[i]):>9} {pred.prob[i]:>12.3f}  "
                     f"{'ABNORMAL' if pred.abnormal[i] else 'normal'}{ref}")
    if len(pred.prob) > max_beats:
        lines.append(f"   ... {len(pred.prob) - max_beats} more beats (--all or --json for every beat)")
    flagged = "over the threshold" if "record_decision" in s else "abnormal"  # a record model's beats are not judged
    lines.append(f"{pred.source}: {s['beats']} beats, {s['abnormal_beats']} {flagged} "
                 f"({100 * s['abnormal_fraction']:.1f}%) at threshold {s['threshold']:.3f}: {s['verdict']}")
    origin = {"XQRS detector": "R peaks found by wfdb's XQRS detector (no annotations read)"}.get(
        s.get("beat_source", ""), f"the R peaks of the {s.get('beat_source')}")
    if s.get("beat_source", "CSV rows") != "CSV rows":
        lines.append(f"  beats at: {origin}")
    lines += [f"  WARNING: {s[k]}" for k in MODEL_WARNING_KEYS if k in s]
    lines += [f"  WARNING (signal): {w}" for w in s.get("quality_warnings", [])]
    if "skipped_beats" in s:
        lines.append(f"  note: {_skipped_text(s['skipped_beats'])}")
    for name, n in s.get("clipped_inputs", {}).items():
        what = "RR-interval features (long pauses, say)" if name == "rr" else "window samples"
        lines.append(f"  note: {n} beats have {what} outside what the int8 model's {name!r} input can hold; they "
                     f"were clipped to its range, so those beats may be misread (a float export reads them as they are)")
    if s.get("missing_samples"):
        lines.append(f"  note: {s['missing_samples']} samples of the leads read are missing (NaN); they were "
                     f"interpolated linearly, so beats in those gaps may be misread")
    if "gaps" in s:
        g = s["gaps"]
        lines.append(f"  WARNING: {g['count']} gap(s) of missing signal of {g['min_gap_s']:g} s or more ({g['seconds']:.1f} s "
                     f"in all, the longest {g['longest_s']:.1f} s at {g['longest_at_s']:.1f} s): no beat is reported "
                     f"inside them ({g['beats_inside_dropped']} found there were left out); the rhythm restarts after "
                     f"each gap, as at a record's start; {g['beats_next_to_gap']} beats were classified with a window "
                     f"that reaches into a gap or without the RR interval on its side, so they may be misread")
    if "against_annotations" in s:
        a = s["against_annotations"]
        fmt = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
        lines.append(f"  against {against}: accuracy {fmt(a['accuracy'])}, sensitivity "
                     f"{fmt(a['sensitivity'])}, specificity {fmt(a['specificity'])}, PPV {fmt(a['ppv'])}")
    return "\n".join(lines)
