"""``ecg-automl export``: rebuild a trial's model, convert it, verify it, time it, write .tflite + sidecar."""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ecg_data import HIGH_CUT, LOW_CUT

from .convert import MODES, ExportFlagged, TFLiteError, TFLiteInputError, _check_mode, convert, op_list
from .runtime import TFLiteModel
from .sidecar import NORMALISATION, write_model
from .verify import format_verification, verify

if TYPE_CHECKING:  # the search stack: imported by export_trial when it runs
    from ecg_data import BeatDataset
    from search import TrackingConfig

log = logging.getLogger("search")



#: What output 0/1 means for each built-in source (the sidecar's ``class_meaning``: every model's said AAMI
#: beat classes before, also a PTB-XL model's, whose labels are records' diagnoses).
_CLASS_MEANING = {
    "mitdb": {"0": "normal beat (AAMI N: N, L, R, e, j)", "1": "abnormal beat (AAMI S, V, F)"},
    "ptbxl": {"0": "normal record (PTB-XL NORM only)", "1": "abnormal record (PTB-XL MI, STTC, CD or HYP)"},
    "ptbdb": {"0": "healthy control (PTB Diagnostic)", "1": "patient (any other reason for admission)"},
    "heartbeat-csv": {"0": "normal (class 0 of the CSV)", "1": "abnormal (any other class of the CSV)"},
}

#: The band-pass every built-in source but the heartbeat CSVs applies before cutting windows (the sidecar's ``filter``).
BAND = {"low": LOW_CUT, "high": HIGH_CUT, "type": "butterworth-3"}
#: Sources whose windows ecg-automl does not band-pass, and why: their sidecar's ``filter`` is null, with this note.
_UNFILTERED = {"heartbeat-csv": "ecg-automl applied no filter: the heartbeat-CSV rows come preprocessed by the CSV's "
                                "maker; ecg-automl only resampled them, placed them in the window and z-scored them"}

def _tflite_path(text: str) -> str:
    """argparse type: an output path ending in .tflite (the sidecar goes beside it as .json)."""
    if Path(text).suffix.lower() != ".tflite":
        raise argparse.ArgumentTypeError(f"{text!r} does not end in .tflite: export writes a TFLite flatbuffer "
                                         f"(and a .json sidecar beside it), e.g. --out model.tflite")
    return text


def _trial_spec(text: str) -> str:
    """argparse type: ``best`` or a trial number, 0 or more (``-1`` exported the last trial, as a Python index)."""
    if text == "best":
        return text
    from ecg_automl.argtypes import int_at_least

    try:
        return str(int_at_least(0)(text))
    except argparse.ArgumentTypeError as exc:
        raise argparse.ArgumentTypeError(f"takes best or a trial number: {exc}") from None


def _runs(text: str) -> int:
    """argparse type: the timed invocations, a multiple of 10 from 10 on (``--runs 25`` was timed as 20 runs)."""
    from ecg_automl.argtypes import int_at_least

    why = "the latency is timed in rounds of 10"
    value = int_at_least(10, why)(text)
    if value % 10:
        raise argparse.ArgumentTypeError(f"must be a multiple of 10 ({why}), not {value}")
    return value


def add_export_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``ecg-automl export`` and its options (defaults stated in each help string)."""
    from ecg_automl.argtypes import study_name
    from ecg_automl.argtypes import non_empty, non_negative_int, positive_int
    from ecg_automl.defaults import DEFAULT_STORAGE

    p = sub.add_parser("export", help="export a trial's model to TFLite, verified against Keras and timed")
    p.add_argument("--study", required=True, type=study_name, help="name of the study to export from")
    p.add_argument("--storage", default=DEFAULT_STORAGE, help=f"Optuna RDB URL (default {DEFAULT_STORAGE})")
    p.add_argument("--trial", type=_trial_spec, default="best",
                   help="best (the final model of the study; default) or a trial number (the trial's own model; "
                        "for the trial the final model was made from, the final model); a multi-objective study has "
                        "no final model: its best is the one trial of its Pareto front, if the front holds one")
    p.add_argument("--mode", choices=MODES, default="int8",
                   help="TFLite mode (default int8, the Raspberry Pi deployment)")
    p.add_argument("--out", required=True, type=_tflite_path,
                   help="output .tflite path (the .json sidecar goes beside it)")
    p.add_argument("--verify-beats", type=non_negative_int, default=20000,
                   help="held-out beats to verify on (evenly spaced; 0 = all; default 20000)")
    p.add_argument("--runs", type=_runs, default=300,
                   help="timed invocations for the latency, a multiple of 10: it is timed in rounds of 10 (default 300)")
    p.add_argument("--threads", type=positive_int, default=1,
                   help="LiteRT threads for the timing (the Raspberry Pi 4 estimate is always a 1-thread one, from "
                        "a 1-thread timing; default 1)")
    p.add_argument("--strict", action="store_true",
                   help="write nothing and exit 1 when the export is flagged (an earlier export at --out stays): it "
                        "loses more than 1 F1 point or 0.02 of ROC-AUC against Keras, decides more than 5 %% of the "
                        "beats otherwise, is an fp32 file more than 0.001 off, or its int8 output cannot reach the "
                        "decision threshold")
    p.add_argument("--retrain", action="store_true",
                   help="with --trial N: train the trial's config once on all search patients first (a search's "
                        "default final model; not a --final-members or --final-model folds ensemble, which the "
                        "final model of that trial is), instead of exporting the trial's own last-fold model (or "
                        "the final model made from it)")
    p.add_argument("--tf-threads", type=positive_int, default=None, metavar="N",
                   help="TensorFlow threads for a retrain (--retrain, or a trial whose model is stored nowhere; "
                        "default: its own choice, one per CPU): the retrained weights depend on the count, so pass "
                        "the study's (its trials record tf_threads) to repeat its training")
    p.add_argument("--latency-target", default=None, metavar="URL",
                   help="also time the file on a bench-server (http://HOST:PORT), e.g. the Pi a study measured on")
    p.add_argument("--mlflow-config", type=non_empty("an MLflow settings file"), default=None,
                   help="MLflow settings file (default: ./mlflow.yaml if present)")
    p.add_argument("--tracking-uri", type=non_empty("a tracking URI"), default=None,
                   help="MLflow tracking URI (overrides mlflow.yaml and $MLFLOW_TRACKING_URI)")
    p.add_argument("--experiment", type=non_empty("an experiment name"), default=None,
                   help="MLflow experiment name (overrides mlflow.yaml)")
    p.add_argument("--no-mlflow", action="store_true", help="do not fetch from or log to MLflow")


def _dominating_trial(study: Any, trial: Any) -> Any:
    """A trial of a multi-objective study's Pareto front that dominates ``trial`` (as good on every objective, better
    on one), or None: ``trial`` is on the front, or the study has one objective."""
    if len(study.directions) < 2 or trial.values is None:
        return None
    sign = [1 if d.name == "MAXIMIZE" else -1 for d in study.directions]

    def better_or_equal(a, b):  # a's values at least as good as b's on every objective
        return all(s * x >= s * y for s, x, y in zip(sign, a, b))

    for t in sorted(study.best_trials, key=lambda t: t.number):
        if t.number != trial.number and better_or_equal(t.values, trial.values) and t.values != trial.values:
            return t
    return None


def _trial_model(study, trial, settings, data, tracker, *, best: bool = False, retrain: bool = False):
    """The trained Keras model of ``trial`` with its origin and decision threshold: the study's final model
    for the best trial (at the final test's threshold: a fold ensemble's is chosen on its own out-of-fold
    predictions), else the trial's logged model (MLflow), else a retrain of its config on all search patients
    (said so), both at the trial's threshold. ``best`` (``--trial best``, which means the final model): a study
    without one is warned about, with what is exported instead. A KerasTuner trial recorded before its runs
    held a model (no :data:`~search.tracking.MODEL_IN_MLFLOW`) is retrained, as is any trial with ``retrain``."""
    import keras

    threshold = float(trial.user_attrs.get("threshold", 0.5))
    final = study.user_attrs.get("final") or {}
    problem = None  # why the final model's file cannot be exported
    if final.get("trial") == trial.number and not retrain:
        from search import describe_final_model, final_model_problem

        origin = f"final model ({describe_final_model(final)})"
        final_threshold = float(final.get("abnormal", {}).get("threshold", threshold))
        problem = final_model_problem(final)
        if problem is None:
            try:
                return keras.models.load_model(final["model_path"], safe_mode=True), origin, final_threshold
            except Exception as exc:  # a damaged file was a traceback saying "File not found"
                said = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
                problem = f"cannot be read as a Keras model (damaged? Keras says: {said})"
        logged = _final_model_from_mlflow(study, tracker)
        if logged is not None:  # the study run holds the same final model (Tracker.log_model)
            model, run_id = logged
            print(f"note: study {study.study_name!r}'s final model file {final.get('model_path')} {problem}: "
                  f"exporting the copy logged to its MLflow run {run_id}", file=sys.stderr)
            return model, f"{origin} from MLflow run {run_id}", final_threshold
    if best:
        _refuse_final_in_progress(study, trial)
    from search.tracking import MODEL_IN_MLFLOW

    # a KerasTuner trial says whether its run holds its model (MODEL_IN_MLFLOW); one recorded before it said
    # so holds none: not asked for it
    keras_tuner = "keras_tuner.trial_id" in trial.user_attrs and MODEL_IN_MLFLOW not in trial.user_attrs
    run_id = trial.user_attrs.get("mlflow_run_id")
    from_mlflow = tracker is not None and run_id and trial.user_attrs.get(MODEL_IN_MLFLOW, not keras_tuner)
    if best or problem is not None:  # --trial N of the final model's trial, too: it was exported without a word
        print(f"warning: {_no_final_model(study, trial, final, problem)}: exporting {'best ' if best else ''}trial "
              f"{trial.number}'s own model instead ({'from MLflow, or retrained' if from_mlflow else 'retrained'}), "
              f"at its validation threshold {threshold:.4g}; for the final model, rerun the search command (with no "
              f"--no-final): it resumes the study and makes the final model", file=sys.stderr)
    if from_mlflow and not retrain:
        try:
            with tempfile.TemporaryDirectory() as tmp:
                path = tracker.client.download_artifacts(run_id, "model/model.keras", tmp)
                model = keras.models.load_model(path, safe_mode=True)
            print(f"note: trial {trial.number}'s own model is its last fold's, trained on about "
                  f"{settings.folds - 1}/{settings.folds} of the search patients"
                  + (f" of a {settings.max_beats}-beat subsample" if settings.max_beats else "")
                  + "; --retrain trains its config on all search patients first (as a search's final model)",
                  file=sys.stderr)
            return model, f"trial model from MLflow run {run_id}", threshold
        except Exception as exc:
            log.warning("could not fetch trial %d's model from MLflow (%s); retraining it", trial.number, exc)
    from search.training import fit, tf_threads

    why = ("asked with --retrain" if retrain else "a KerasTuner trial of an older version stores no model"
           if keras_tuner else "--no-mlflow: its model logged to MLflow is not fetched"
           if tracker is None and run_id and trial.user_attrs.get(MODEL_IN_MLFLOW, True) else "its model is not stored")
    epochs = trial.user_attrs["config"].get("epochs")
    print(f"retraining trial {trial.number} on all search patients"
          f"{f' for {epochs} epoch(s)' if isinstance(epochs, int) else ''} ({why}) ...", file=sys.stderr)
    if retrain and final.get("trial") == trial.number and int(final.get("members", 1)) > 1:
        from search import describe_final_model

        print(f"note: study {study.study_name!r}'s final model of trial {trial.number} is "
              f"{describe_final_model(final)}, at threshold {float(final.get('abnormal', {}).get('threshold', 0.5)):.4g}"
              f": --retrain exports one model of its config instead, at the trial's threshold {threshold:.4g} "
              f"(--trial {trial.number} without --retrain exports the final model)", file=sys.stderr)
    # seed and thread count in the origin: the retrained weights depend on both (docs/REPRODUCIBILITY.md)
    threads = tf_threads()
    origin = f"retrained (seed {settings.seed}, {threads} TensorFlow thread{'' if threads == 1 else 's'})"
    return fit(trial.user_attrs["config"], data.search_part(), None, seed=settings.seed).model, origin, threshold


def _refuse_final_in_progress(study, trial) -> None:
    """TFLiteError while a search that may still be alive makes ``study``'s final model of ``trial``: exporting the
    trial's own model instead, as for a study without a final model, handed out a lesser model (and told the user to
    rerun the search, which would have trained a second final model beside the first)."""
    from search.final_marker import final_in_progress, marker_since

    marker, alive = final_in_progress(study)
    if marker is None or alive is False or marker.get("trial") != trial.number:
        return
    when = marker_since(marker)
    unseen = "" if alive else (" (on another host or in another container: whether it still runs cannot be seen "
                               "from here; `ecg-automl sync` on its host clears a search that died)")
    raise TFLiteError(f"study {study.study_name!r}'s final model (of trial {trial.number}) is being made by its search "
                      f"{marker.get('worker', '?')} since {when}{unseen}: export --trial best when that search has "
                      f"ended, or --trial {trial.number} for the trial's own model now")


def _final_model_from_mlflow(study, tracker):
    """(model, run id) of the final model logged on ``study``'s MLflow run (``model/final_model.keras``), for a
    study whose file of it is gone or not its own; None without MLflow, when the run holds none, or when the run's
    copy is not of the study's final model (its tag :data:`~search.tracking.FINAL_MODEL_TAG`: a resume with
    --no-mlflow made a new final model, the run kept the old one, and it was exported under the new trial's config
    and threshold)."""
    import keras

    from search.tracking import FINAL_MODEL_TAG

    run_id = study.user_attrs.get("mlflow_parent_run_id")
    final = study.user_attrs.get("final") or {}
    if tracker is None or not run_id or not final.get("model_sha256"):  # (a study saved before: cannot tell)
        return None
    try:
        if tracker.client.get_run(run_id).data.tags.get(FINAL_MODEL_TAG) != final["model_sha256"]:
            log.info("study %s's run %s holds another final model than the study's, or none", study.study_name,
                     run_id)
            return None
        with tempfile.TemporaryDirectory() as tmp:
            path = tracker.client.download_artifacts(run_id, "model/final_model.keras", tmp)
            return keras.models.load_model(path, safe_mode=True), run_id
    except Exception as exc:
        log.info("study %s's run %s holds no final model to fetch (%s)", study.study_name, run_id, exc)
        return None


def _no_final_model(study, trial, final: dict, problem: str | None = None) -> str:
    """Why ``study`` has no final model of its best ``trial`` to export, in words (``problem``: why its file is
    not it, from :func:`search.final_model_problem` or the load)."""
    from search.final_marker import FINAL_KILLED, final_in_progress, marker_since

    name = study.study_name
    marker, alive = final_in_progress(study)  # a search that died making it, not yet cleared by a sync or search
    killed = study.user_attrs.get(FINAL_KILLED) or (marker if alive is False else None) or {}
    if killed.get("trial") == trial.number and final.get("trial") != trial.number:
        when = marker_since(killed)
        return (f"study {name!r} has no final model (its search, {killed.get('worker', '?')}, was stopped while "
                f"making it on {when})")
    if not final:
        return (f"study {name!r} has no final model (its search ran with --no-final, or stopped before the final "
                f"test)")
    if final.get("trial") != trial.number:
        return (f"the final model of study {name!r} is of trial {final.get('trial')}, but its best trial is now "
                f"{trial.number} (trials were added after the final test)")
    return f"the final model of study {name!r}, {final.get('model_path')}, {problem or 'is gone (moved or deleted)'}"


#: The leads each dataset's windows hold, in channel order (what ``predict`` reads from a record).
_DATASET_LEADS = {
    "mitdb": ("MLII",),
    "ptbdb": ("ii",),
    "ptbxl": ("I", "II", "III", "AVR", "AVL", "AVF", "V1", "V2", "V3", "V4", "V5", "V6"),
}


def dataset_leads(dataset: str, channels: int) -> list[str] | None:
    """The lead names of a dataset's ``channels``-lead windows, recorded in the sidecar so that ``predict`` reads
    the same leads from a record; None when unknown (a CSV dataset) or when the count does not match."""
    leads = _DATASET_LEADS.get(dataset)
    return list(leads) if leads and len(leads) == channels else None


def _members(model) -> int:
    """How many models ``model`` averages (``spaces.build_ensemble`` names each member's output
    ``m<i>_abnormal``); 1 for a plain model."""
    return sum(1 for layer in model.layers if layer.name.startswith("m") and layer.name.endswith("_abnormal")) or 1


def _check_out(out: str | Path) -> None:
    """TFLiteError when ``out`` cannot be the .tflite written: a folder, or in a folder that cannot be written (it
    was a traceback after the conversion and the timing)."""
    from search import why_not_writable

    if Path(out).exists() and not Path(out).is_file():
        raise TFLiteError(f"{out}: not a file (a folder?); --out names the .tflite to write")
    why = why_not_writable(Path(out).parent)
    if why:
        raise TFLiteError(f"--out {out} cannot be written ({why}): name a .tflite in a folder you can write to")


def export_model(model: Any, config: dict[str, Any], data: BeatDataset, out: str | Path, *, mode: str,
                 threshold: float, seed: int = 0, verify_beats: int = 20000, runs: int = 300, threads: int = 1,
                 about: dict[str, Any] | None = None, latency_target: str | None = None,
                 strict: bool = False) -> dict[str, Any]:
    """Convert a trained ``build_model(config)`` model (or ``build_ensemble``) to ``out`` in ``mode``, with the
    ``.json`` sidecar :func:`predict_record` and ``ecg-automl predict`` read; returns the sidecar's content.

    ``data``: the dataset the model was trained on, as ``load_dataset`` gives it: int8 is calibrated on 500 beats of
    its search part, the file is checked against the model on (up to ``verify_beats`` of) its test part at
    ``threshold`` (the decision threshold chosen on validation data), and the sidecar names its rate, window, leads
    and search records. ``about`` adds keys to the sidecar (``export_trial``: study, trial, model origin).
    ``latency_target`` (a bench-server's http://HOST:PORT) also times the file on that device: ``latency.device_*``.
    ``strict``: a file the check flags is not written (an earlier export at ``out`` stays): :class:`ExportFlagged`."""
    from search import why_no_folder
    from search.training import predict
    from spaces import model_inputs

    from .gate import reference_clock
    from .pi_estimate import calibration_record, estimate_pi4_ms, extrapolation_note
    from .stats import model_stats

    _check_mode(mode)
    _check_out(out)
    if latency_target is not None:  # an unreachable device is said before the conversion and the timing
        from .bench_server import check_target

        check_target(latency_target)
    out = Path(out)
    search, test = data.search_part(), data.test_part()
    if not len(search) or not len(test):  # int8 calibrates on the one, the file is checked on the other
        raise TFLiteError(f"{data.name}: the data has no {'search' if not len(search) else 'test'} beats: give the "
                          f"dataset the model was trained on with its held-out test patients, as load_dataset "
                          f"gives it (e.g. MIT-BIH with DS2 records among its records)")
    if not 0 <= threshold <= 1:
        raise TFLiteError(f"threshold must be a probability from 0 to 1, not {threshold!r}")
    rng = np.random.default_rng(seed)
    rep_idx = rng.choice(len(search), size=min(500, len(search)), replace=False)
    rep = model_inputs(config, search.X[rep_idx], search.rr[rep_idx])
    flat = convert(model, config, mode, rep if mode == "int8" else None)  # written with its sidecar at the end

    if verify_beats and len(test) > verify_beats:
        test = test.subset(np.linspace(0, len(test) - 1, verify_beats).astype(int))
    keras_prob = predict(model, config, test)
    runner = TFLiteModel(flat, threads=threads)
    tflite_prob = runner.predict(model_inputs(config, test.X, test.rr))
    check = verify(keras_prob, tflite_prob, test.y, threshold, mode, runner.output_max)
    # one timing: the raw median/p90/mean of the invokes, and host_ms with the host's slow stretches divided out
    # (as the latency gate does): what the Pi estimate was calibrated on
    steady = reference_clock(mode, threads).measure(flat, rounds=max(1, runs // 10), warmup=20)
    lat = {k: steady[k] for k in ("median_ms", "p90_ms", "mean_ms", "n_runs", "threads")}
    lat.update(host_ms=steady["host_ms"], host_slowdown=steady["slowdown"])
    # the Pi fit maps a 1-thread host timing to a 1-thread Pi one (docs/PI_LATENCY.md): at another --threads the
    # file is timed at 1 thread for it too (an estimate from a 2-thread timing was neither a 1- nor a 2-thread Pi's)
    pi_host = steady
    if threads != 1:
        pi_host = reference_clock(mode, 1).measure(flat, rounds=max(1, runs // 10), warmup=20)
        lat["pi4_host_ms"] = pi_host["host_ms"]
    if latency_target is not None:
        from .bench_server import remote_latency

        remote = remote_latency(latency_target, flat, runs=runs, threads=threads)
        lat.update(device_median_ms=remote["median_ms"], device_p90_ms=remote["p90_ms"],
                   device_target=latency_target, device=remote.get("device"))
    meta = {
        **(about or {}), "mode": mode,
        "dataset": data.name, "fs": float(data.fs), "window": int(data.X.shape[1]), "lead": "MLII",
        "channels": int(data.X.shape[2]), "input_length": int(config["input_length"]),
        "rr_features": bool(config["rr_features"]), "filter": None if data.name in _UNFILTERED else dict(BAND),
        "normalisation": NORMALISATION,
        "class_meaning": _CLASS_MEANING.get(data.name, {"0": "normal", "1": "abnormal"}),
        "threshold": threshold, "config": config, "members": _members(model),
        "size_kb": len(flat) / 1024, "ops": sorted(set(op_list(flat))),
        "latency": {**lat,
                    "pi4_estimate_ms": estimate_pi4_ms(pi_host["host_ms"], "int8" if mode == "int8" else "float32"),
                    "pi4_estimate_note": extrapolation_note(pi_host["host_ms"], "int8" if mode == "int8" else "float32"),
                    "pi4_calibration": calibration_record()},
        "verification": check, "io": runner.io_details(), **model_stats(model),
    }
    if mode == "dynamic":  # the converter leaves weights too small to gain float: on small models that is all of them
        meta["int8_weight_tensors"] = sum(np.dtype(d["dtype"]) == np.int8
                                          for d in runner._interp.get_tensor_details())
    if data.name in _UNFILTERED:  # said in words: a null filter alone reads like a sidecar that lost it
        meta["filter_note"] = _UNFILTERED[data.name]
    if data.name != "mitdb":
        meta["lead"] = "II" if data.name in ("ptbxl", "ptbdb") else "first"
    # the records of the patients the search trained on: predict warns when asked about one of them
    meta["search_records"] = sorted({str(r) for r in search.records})
    leads = dataset_leads(data.name, meta["channels"])
    if leads:
        meta["leads"] = leads
    if strict and check["flagged"]:  # before the write: it replaced the last good export, and predict used it
        raise ExportFlagged(out, meta)
    try:
        write_model(out, flat, meta)
    except OSError as exc:  # a full disk, a folder made read-only since the check above
        raise TFLiteError(f"--out {out} cannot be written ({why_no_folder(out.parent, exc)})") from None
    return meta


def export_trial(study_name: str, storage: str, trial_spec: str | int, mode: str, out: str | Path, *,
                 tracking: TrackingConfig | None = None, verify_beats: int = 20000, runs: int = 300,
                 threads: int = 1, retrain: bool = False, latency_target: str | None = None,
                 strict: bool = False) -> dict[str, Any]:
    """Export one trial of a study; returns the sidecar content (metrics, verification, latency, ops).

    ``trial_spec`` is ``"best"`` (its final model, when the search made one) or a trial number; ``mode`` one of
    :data:`MODES`. ``out`` gets the ``.tflite`` and its ``.json`` sidecar, which :func:`predict_record` reads;
    ``tracking`` logs both on the trial's MLflow run. ``retrain``: a trial number's config trained on all search
    patients, instead of the trial's own model (its last fold's, trained on fewer); ``latency_target``: see
    :func:`export_model`."""
    from search import Tracker, TrackingError, open_study
    from search import load_study_data
    from spaces import SearchSpace

    _check_mode(mode)  # found now, not after the data and the retraining
    _check_out(out)  # found now, not after the data, the model, the conversion and the timing
    study, settings = open_study(study_name, storage, None, heartbeat=None)
    tracker = Tracker(tracking) if tracking is not None else None
    if tracker is not None:
        try:
            tracker.ping()
        except TrackingError as e:  # the file is what the user came for: made without MLflow, as before
            print(f"warning: {e}: the export is not logged to MLflow, and a trial model MLflow holds is retrained "
                  f"instead of fetched (--no-mlflow says so without this warning)", file=sys.stderr)
            tracker = None
    if tracker is not None:  # run from another folder, the default store there is not the study's: export made a
        try:  # new, empty one, could not fetch the trial's model (retrained it) or log the file there
            tracker.require_study_run(study)
        except TrackingError as e:
            raise TrackingError(f"{e}, or --no-mlflow to export without MLflow") from None
    if trial_spec == "best":
        from optuna.trial import TrialState

        if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            states = sorted({t.state.name.lower() for t in study.get_trials(deepcopy=False)})
            raise TFLiteError(f"study {study_name!r} has no completed trial to export ({len(study.trials)} trials"
                              + (f": {', '.join(states)}" if states else "") + "); run or resume the search first")
        if len(study.directions) > 1 and len(study.best_trials) > 1:  # several trials on the front: the user picks
            label = {"quality": settings.metric, "latency": "latency ms", "size": "size KB"}
            names = [label.get(n, n) for n in settings.objectives]
            front = ", ".join(f"{t.number} ({', '.join(f'{n} {v:.4g}' for n, v in zip(names, t.values))})"
                              for t in sorted(study.best_trials, key=lambda t: t.number))
            raise TFLiteError(f"study {study_name!r} is multi-objective: it has no single best trial but a Pareto "
                              f"front, trials {front}; pass --trial N for the one to export")
        if retrain and len(study.directions) == 1:  # best of a multi-objective study is its front's one member
            raise TFLiteInputError("--retrain retrains one trial's config: give --trial N (--trial best of this study "
                                   "means its final model, which its search trains)")
        trial = study.best_trials[0] if len(study.directions) > 1 else study.best_trial
    else:
        try:
            number = int(trial_spec)
            if number < 0:  # not a Python index from the end
                raise IndexError(number)
            trial = study.trials[number]
        except (ValueError, IndexError):
            raise TFLiteError(f"no trial {trial_spec!r} in study {study_name!r} ({len(study.trials)} trials)") from None
    if trial.state.name == "RUNNING":  # "not COMPLETE" alone, for the trial of a search killed with kill -9
        from search._process import worker_alive

        worker = str(trial.user_attrs.get("worker", ""))
        alive = worker_alive(worker) if worker else None
        now = {True: f"its search, {worker}, is training it now: export it when that is done",
               False: f"its search, {worker}, is no longer running (killed?): run the search command again, which "
                      f"marks the trial failed once its heartbeat is stale (2 min by default) and trains it anew",
               None: "a search may be training it (on another host?): export it when that is done"}[alive]
        raise TFLiteError(f"trial {trial.number} is RUNNING, not COMPLETE: nothing to export; {now}")
    if trial.state.name != "COMPLETE":
        why = trial.user_attrs.get("prune_reason") or trial.user_attrs.get("fail_reason")
        raise TFLiteError(f"trial {trial.number} is {trial.state.name}, not COMPLETE: nothing to export"
                          + (f" ({why})" if why else ""))
    dominating = _dominating_trial(study, trial)
    if dominating is not None:
        label = {"quality": settings.metric, "latency": "latency ms", "size": "size KB"}
        names = [label.get(n, n) for n in settings.objectives]

        def values(t: Any) -> str:
            return ", ".join(f"{n} {v:.4g}" for n, v in zip(names, t.values))

        print(f"note: trial {trial.number} ({values(trial)}) is not on study {study_name!r}'s Pareto front: trial "
              f"{dominating.number} ({values(dominating)}) is as good or better on every objective", file=sys.stderr)
    config = trial.user_attrs["config"]
    data = load_study_data(settings, SearchSpace.from_yaml(settings.space_yaml))
    if not len(data.test_part()):  # found now, not after minutes of retraining (only a search with a final test
        # refuses such data up front: a --no-final or multi-objective one runs on it)
        where = f" (its --records {','.join(settings.records)} are all search records)" if settings.records else ""
        raise TFLiteError(f"study {study_name!r}: its {data.name} data has no held-out test patient{where}, and export "
                          f"checks the file against the model on them: start a study whose records include some")
    # best of a multi-objective study is its front's one member: such a study never has a final model to miss
    model, origin, threshold = _trial_model(study, trial, settings, data, tracker,
                                            best=trial_spec == "best" and len(study.directions) == 1, retrain=retrain)

    about = {"study": study_name, "trial": trial.number, "model_origin": origin}
    if settings.latency_target and latency_target is None:  # in the sidecar too (it was in the return value only)
        about["note_latency"] = (f"study {study_name!r} measured latency on the bench-server "
                                 f"{settings.latency_target}; this file was timed on this host (and the Pi 4 "
                                 f"estimated): add --latency-target {settings.latency_target} to time it on that device")
    meta = export_model(model, config, data, out, mode=mode, threshold=threshold, seed=settings.seed,
                        verify_beats=verify_beats, runs=runs, threads=threads, latency_target=latency_target,
                        about=about, strict=strict)
    if tracker is not None:
        run_id = trial.user_attrs.get("mlflow_run_id")
        out = Path(out)
        tracker.log_artifact(run_id, out, f"tflite/{mode}")
        tracker.log_artifact(run_id, out.with_suffix(".json"), f"tflite/{mode}")
        tracker.log_metrics(run_id, {f"tflite.{mode}.size_kb": meta["size_kb"],
                                     f"tflite.{mode}.median_ms": meta["latency"]["median_ms"],
                                     f"tflite.{mode}.f1": meta["verification"]["tflite"]["f1"],
                                     f"tflite.{mode}.max_abs_dprob": meta["verification"]["max_abs_dprob"]})
    return meta


def cmd_export(args: argparse.Namespace) -> int:
    """``ecg-automl export``: a study's trial as a checked ``.tflite`` with its sidecar, logged to MLflow."""
    from ecg_automl.cli import _tracking

    from search import set_threads

    tracking = _tracking(args)  # None with --no-mlflow, which refuses the other MLflow options
    set_threads(args.tf_threads)  # before TensorFlow starts: a retrain's weights depend on the count
    existed = Path(args.out).is_file()
    try:
        meta = export_trial(args.study, args.storage, args.trial, args.mode, args.out, tracking=tracking,
                            verify_beats=args.verify_beats, runs=args.runs, threads=args.threads, retrain=args.retrain,
                            latency_target=args.latency_target, strict=args.strict)
        written = True
    except ExportFlagged as flagged:
        meta, written = flagged.meta, False
    lat = meta["latency"]
    if written:
        print(f"wrote {args.out} ({meta['size_kb']:.1f} KB, {args.mode}) from trial {meta['trial']} "
              f"({meta['model_origin']})" + (", replacing the earlier export there and its sidecar" if existed else ""))
    else:
        print(f"did not write {args.out} (--strict, and the check below flagged it: {meta['size_kb']:.1f} KB, "
              f"{args.mode}, from trial {meta['trial']}, {meta['model_origin']})"
              + ("; the earlier export there is unchanged" if existed else ""))
    print(f"  ops: {', '.join(meta['ops'])}")
    print(f"  params {meta['params']}, MACs/beat {meta['macs']}")
    io = meta["io"]
    quantised = {**io["inputs"], "output": io["output"]}
    if any("scale" in d for d in quantised.values()):  # an int8 model: what a caller must (de)quantise with
        print("  integer I/O (real = scale * (q - zero_point)): " + "; ".join(
            f"{name} {d['dtype']} scale {d['scale']:.6g} zero point {d['zero_point']} (range {d['range'][0]:.4g} to "
            f"{d['range'][1]:.4g})" for name, d in quantised.items() if "scale" in d))
    print(f"  latency ({lat['threads']} thread, {lat['n_runs']} runs): median {lat['median_ms']:.3f} ms, "
          f"p90 {lat['p90_ms']:.3f} ms; with the host's slowdown ({lat['host_slowdown']:.2f}x) divided out "
          f"{lat['host_ms']:.3f} ms; Raspberry Pi 4 estimate {lat['pi4_estimate_ms']:.3f} ms"
          + (f" (1 thread, from {lat['pi4_host_ms']:.3f} ms here at 1 thread)" if "pi4_host_ms" in lat else "")
          + (f", {lat['pi4_estimate_note']}" if lat.get("pi4_estimate_note") else ""))
    if meta.get("int8_weight_tensors") == 0:
        print("note: --mode dynamic quantised no weight tensor (the converter leaves tensors too small to gain "
              "float), so this file is the fp32 model; int8 quantises them all", file=sys.stderr)
    if "device_median_ms" in lat:
        board = (lat.get("device") or {}).get("model") or (lat.get("device") or {}).get("machine", "?")
        print(f"  on the bench-server {lat['device_target']} ({board}): median {lat['device_median_ms']:.3f} ms, "
              f"p90 {lat['device_p90_ms']:.3f} ms")
    if meta.get("note_latency"):
        print(f"note: {meta['note_latency']}", file=sys.stderr)
    cal = lat.get("pi4_calibration", {})
    if cal and not cal["matches_this_host"]:
        print(f"  (the Pi estimate's host->Pi fit was measured on {cal['host_cpu']}, this machine is "
              f"{cal['this_host_cpu']}: see docs/PI_LATENCY.md, 'Another host')")
    print(format_verification(meta["verification"]))
    check = meta["verification"]
    if check["flagged"]:
        why = check["threshold_unreachable"] or "; ".join(check.get("flag_reasons") or [f"{args.mode} F1 drop over 1 point"])
        print(f"warning: {why}", file=sys.stderr)
        if args.strict:
            return 1
    return 0
