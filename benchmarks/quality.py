#!/usr/bin/env python
"""Honest patient-wise quality of one fixed config versus the leaky beat-level random split (MIT-BIH).

For one config (``--config FILE.json``, default ``benchmarks/configs/quality_default.json``: a mid-range point
of ``spaces/default.yaml`` with RR-interval context; or ``--study NAME --storage URL``: the study's best trial
config and its validation-chosen threshold), on the 44 non-paced MIT-BIH records (AAMI, lead MLII):

(a) **inter-patient** (de Chazal DS1/DS2): train on DS1 (all search beats, or ``--max-beats`` drawn stratified
    by patient and class), choose the decision threshold on DS1 out-of-fold predictions of a patient-grouped
    K-fold (``ecg_data.patient_kfold``; or take it from the study), test once on every DS2 beat (``--ds2-beats``:
    a stratified subsample, as the quick run does): accuracy,
    sensitivity, specificity, PPV, F1, ROC-AUC of the abnormal class, the confusion matrix and the share of
    each AAMI class (N, S, V, F) flagged abnormal. The same for the model's int8 TFLite export (calibrated on
    DS1 beats, run with ``TFLiteModel``: LiteRT, one window at a time) at the same threshold.
(b) **beat-level random split**, the common leaky protocol: shuffle the beats of all 44 records (DS1+DS2),
    80/20 split, train the same config on the 80 %, test on the 20 % at threshold 0.5 (argmax, as that
    protocol usually does). Patients are on both sides: ``check_no_leak`` fails and the number of shared
    patients is recorded.

Each arm is repeated for ``--seeds`` seeds (initialisation, the ``--max-beats`` subsample and the random split
change with the seed; the patient-grouped DS1 folds do not when every DS1 beat is used: ``StratifiedGroupKFold``
uses the seed only to break ties, and MIT-BIH DS1 has none, see ``ecg_data.patient_kfold``) and the medians are
reported. Writes ``quality_<mode>.json`` and ``quality_<mode>.png``
(grouped bars of F1 / sensitivity / PPV / ROC-AUC) to ``--out-dir``.

    python benchmarks/quality.py --quick                 # ~4,000 training beats, 1 epoch, 1 seed, 5,000 DS2 beats (~1 min)
    python benchmarks/quality.py                         # all beats, the config's epochs, 3 seeds (~2 h 15 min:
                                                         # 8,020 s on 2 busy cores, results/quality_full.json)
    python benchmarks/quality.py --seeds 1 --config my.json
    python benchmarks/quality.py --study NAME --storage sqlite:///runs/optuna.db

Data: ``$ECG_AUTOML_DATA/mitdb`` (or the user cache), preprocessed arrays cached in ``$ECG_AUTOML_CACHE``.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

log = logging.getLogger("benchmarks.quality")

QUICK = {"max_beats": 4000, "epochs": 1, "seeds": 1, "members": 2, "ds2_beats": 5000}  # 2: the smoke run averages members as the full one
FULL = {"max_beats": None, "epochs": None, "seeds": 3, "members": 3, "ds2_beats": None}
BEAT_LEVEL_THRESHOLD = 0.5
TEST_FRACTION = 0.2
ARMS = ("inter_patient_keras", "inter_patient_int8", "inter_patient_keras_at_0.5", "beat_level_split")
ARM_LABELS = {
    "inter_patient_keras": "inter-patient, Keras\n(DS1 OOF threshold)",
    "inter_patient_int8": "inter-patient, int8 TFLite\n(same threshold)",
    "inter_patient_keras_at_0.5": "inter-patient, Keras\n(threshold 0.5)",
    "beat_level_split": "beat-level 80/20 split\n(patients leak, threshold 0.5)",
}

#: Published figures, for context only: NOT measured here, and mostly for the 4-class AAMI task (N/S/V/F),
#: while this project detects "abnormal" (S, V or F) against N.
CONTEXT = {
    "note": ("Context only, not results of this benchmark. Published MIT-BIH figures, mostly for the 4-class "
             "AAMI task (per-class sensitivity/PPV of S and V), whereas this benchmark measures one binary "
             "'abnormal (S/V/F) vs normal' detector; the per-AAMI-class 'flagged abnormal' rates here are the "
             "closest analogue of a class sensitivity. Ranges as given in the benchmark's brief."),
    "inter_patient_de_chazal_style": (
        "Inter-patient (de Chazal et al. 2004 DS1/DS2 protocol and later work): S-class (SVEB) PPV about "
        "38-93 %, V-class (VEB) sensitivity about 77-87 %; de Chazal et al. (IEEE TBME 51(7), 2004) "
        "themselves: S sensitivity 75.9 %, S PPV 38.5 %, V sensitivity 77.7 %, V PPV 81.9 %."),
    "beat_level_random_split": (
        "Beat-level (intra-patient) random splits of MIT-BIH commonly report about 99 % accuracy, because beats "
        "of the same patient are in training and test."),
}


# ---------------------------------------------------------------------------------------------------------
# metrics
# ---------------------------------------------------------------------------------------------------------
def summarise(y: np.ndarray, prob: np.ndarray, threshold: float, labels: np.ndarray) -> dict[str, Any]:
    """Abnormal-class metrics under the benchmark's names, the confusion matrix and AAMI-class detection."""
    from search import binary_metrics, full_report

    rep = full_report(y, prob, threshold, labels=labels)
    a = rep["abnormal"]
    (tn, fp), (fn, tp) = rep["confusion_matrix"]
    metrics = {"accuracy": a["accuracy"], "sensitivity": a["recall"], "specificity": a["specificity"],
               "ppv": a["precision"], "f1": a["f1"], "roc_auc": a["roc_auc"]}
    return {
        "threshold": float(threshold),
        "metrics": metrics,
        "confusion_matrix": {"tn": tn, "fp": fp, "fn": fn, "tp": tp,
                             "layout": "rows true (normal, abnormal), columns predicted"},
        "aami_flagged_abnormal": {k: v["flagged_abnormal"] for k, v in rep.get("by_label", {}).items()},
        "aami_counts": {k: v["n"] for k, v in rep.get("by_label", {}).items()},
        "n": rep["n"],
        "n_abnormal": int(np.sum(y)),
        "at_0.5": {k: v for k, v in binary_metrics(y, prob, 0.5).items() if k != "threshold"},
    }


def flat(summary: dict[str, Any]) -> dict[str, float]:
    """The numbers that get a median over seeds."""
    out = dict(summary["metrics"])
    out["threshold"] = summary["threshold"]
    out.update({f"flagged_{k}": v for k, v in summary["aami_flagged_abnormal"].items()})
    out.update({k: summary["confusion_matrix"][k] for k in ("tn", "fp", "fn", "tp")})
    return out


# ---------------------------------------------------------------------------------------------------------
# the two protocols
# ---------------------------------------------------------------------------------------------------------
def oof_threshold(config: dict, train, folds: int, seed: int) -> dict[str, Any]:
    """Decision threshold maximising F1 on patient-grouped out-of-fold predictions of ``train``."""
    from ecg_data import grouped_splits, patient_kfold
    from search import best_threshold, binary_metrics, fit

    t0 = time.perf_counter()
    oof = np.full(len(train), np.nan)
    fold_of = np.full(len(train), -1)
    fold_f1 = []
    for k, (tr, va) in enumerate(grouped_splits(patient_kfold(folds, seed=seed), train.X, train.y, train.groups)):
        res = fit(config, train.subset(tr), train.subset(va), seed=seed * 1009 + k)
        oof[va] = res.val_prob
        fold_of[va] = k
        fold_f1.append(binary_metrics(train.y[va], res.val_prob)["f1"])
        C.clear_keras()
        log.info("  OOF fold %d/%d: %d train / %d val beats, val F1@0.5 %.3f (%.0f s)", k + 1, folds, len(tr),
                 len(va), fold_f1[-1], res.seconds)
    seen = ~np.isnan(oof)
    thr = best_threshold(train.y[seen], oof[seen], fold_of[seen])
    m = binary_metrics(train.y[seen], oof[seen], thr)
    return {"threshold": thr, "folds": folds, "fold_f1_at_0.5": fold_f1,
            "rule": "median over folds of each fold's F1-maximising threshold (search.best_threshold)",
            "per_fold_thresholds": [best_threshold(train.y[fold_of == k], oof[fold_of == k]) for k in range(folds)],
            "pooled_threshold_not_used": best_threshold(train.y[seen], oof[seen]),
            "oof_at_threshold": {k: v for k, v in m.items() if k != "threshold"},
            "seconds": time.perf_counter() - t0}


def member_seed(seed: int, members: int) -> int:
    """First training seed of benchmark seed ``seed``'s members (``fit_final`` trains seeds ``first + i``):
    ``seed * members`` so that the seeds' ensembles share no member (with ``seed`` they did: {0, 1, 2},
    {1, 2, 3}, {2, 3, 4} for 3 members)."""
    return seed * members


def inter_patient(config: dict, data, seed: int, max_beats: int | None, folds: int,
                  threshold: float | None, members: int = 1, ds2_beats: int | None = None) -> dict[str, Any]:
    """Train on DS1 (``members`` seeds averaged into one model, as ``search --final-members``), threshold
    from DS1 OOF (or given), test on DS2 (or ``ds2_beats`` of it): Keras and int8 TFLite."""
    from ecg_automl.tflite import TFLiteModel, convert, measure_latency
    from ecg_data import subsample_beats
    from search import fit_final, predict
    from spaces import model_inputs

    train, test = data.search_part(), C.ds2_part(data.test_part(), ds2_beats, seed)
    if max_beats:
        train = train.subset(subsample_beats(train.y, train.groups, max_beats, seed=seed))
    # the protocol itself: no DS2 patient in training but the one de Chazal's split shares (raises otherwise)
    C.check_inter_patient(train, test)
    out: dict[str, Any] = {"seed": seed, "train_beats": len(train), "test_beats": len(test),
                           "test_beats_total": int((data.split == "test").sum()),
                           "train_patients": int(len(np.unique(train.groups))),
                           "test_patients": int(len(np.unique(test.groups)))}
    if threshold is None:
        log.info("seed %d: DS1 out-of-fold threshold (%d patient-grouped folds, %d beats)", seed, folds, len(train))
        out["oof"] = oof_threshold(config, train, folds, seed)
        threshold = out["oof"]["threshold"]
        out["threshold_source"] = f"DS1 out-of-fold predictions, {folds} patient-grouped folds"
    else:
        out["threshold_source"] = "given (study best trial)"
    log.info("seed %d: training on DS1 (%d beats, %d patients, %d member(s)), threshold %.3f", seed, len(train),
             out["train_patients"], members, threshold)
    model, fits = fit_final(config, train, seed=member_seed(seed, members), members=members)
    out["members"] = members
    out["member_seeds"] = [member_seed(seed, members) + i for i in range(members)]
    out["train_seconds"] = sum(f.seconds for f in fits)
    out["train_beats_per_s"] = float(np.median([f.beats_per_s for f in fits]))
    t0 = time.perf_counter()
    prob = predict(model, config, test)
    out["keras_predict_seconds"] = time.perf_counter() - t0
    if members > 1:  # each member alone, at the same threshold: what the average adds
        out["members_keras"] = [summarise(test.y, predict(f.model, config, test), threshold, test.label)["metrics"]
                                for f in fits]
    out["keras"] = summarise(test.y, prob, threshold, test.label)
    if "oof" in out:  # the rule used before: one threshold on the pooled out-of-fold predictions
        pooled = out["oof"]["pooled_threshold_not_used"]
        out["keras_at_pooled_oof_threshold_not_used"] = {"threshold": pooled,
                                                         **summarise(test.y, prob, pooled, test.label)["metrics"]}
    log.info("seed %d: DS2 Keras  F1 %.3f Se %.3f PPV %.3f AUC %.3f", seed, *(out["keras"]["metrics"][k] for k in
                                                                             ("f1", "sensitivity", "ppv", "roc_auc")))

    t0 = time.perf_counter()
    flatbuffer = convert(model, config, "int8", model_inputs(config, train.X, train.rr))
    out["int8_convert_seconds"] = time.perf_counter() - t0
    out["int8_size_kb"] = len(flatbuffer) / 1024
    lat = measure_latency(flatbuffer, n_runs=300, warmup=20, threads=1)
    out["int8_latency_ms"] = {"median": lat["median_ms"], "p90": lat["p90_ms"], "threads": 1, "runs": lat["n_runs"]}
    t0 = time.perf_counter()
    prob8 = TFLiteModel(flatbuffer, threads=1).predict(model_inputs(config, test.X, test.rr))
    out["int8_predict_seconds"] = time.perf_counter() - t0
    out["int8"] = summarise(test.y, prob8, threshold, test.label)
    out["int8_vs_keras"] = {"decision_agreement": float(np.mean((prob8 >= threshold) == (prob >= threshold))),
                            "max_abs_dprob": float(np.max(np.abs(prob8 - prob))),
                            "median_abs_dprob": float(np.median(np.abs(prob8 - prob)))}
    log.info("seed %d: DS2 int8   F1 %.3f Se %.3f PPV %.3f AUC %.3f (agreement with Keras %.4f)", seed,
             *(out["int8"]["metrics"][k] for k in ("f1", "sensitivity", "ppv", "roc_auc")),
             out["int8_vs_keras"]["decision_agreement"])
    C.clear_keras()
    return out


def beat_level(config: dict, data, seed: int, max_beats: int | None) -> dict[str, Any]:
    """The leaky protocol: all beats of all records shuffled, 80/20 split, threshold 0.5."""
    from ecg_data import PatientLeakError, check_no_leak, subsample_beats
    from search import fit, predict

    pool = data
    if max_beats:  # so that the 80 % training part has about as many beats as the inter-patient training set
        pool = data.subset(subsample_beats(data.y, data.groups, int(round(max_beats / (1 - TEST_FRACTION))), seed=seed))
    rng = np.random.default_rng(10_000 + seed)
    order = rng.permutation(len(pool))
    n_test = int(round(TEST_FRACTION * len(pool)))
    test_idx, train_idx = np.sort(order[:n_test]), np.sort(order[n_test:])
    shared = np.intersect1d(np.unique(pool.groups[train_idx]), np.unique(pool.groups[test_idx]))
    leak: dict[str, Any] = {"patients_total": int(len(np.unique(pool.groups))),
                            "patients_on_both_sides": int(len(shared)),
                            "test_beats_of_patients_also_in_training": int(np.isin(pool.groups[test_idx], shared).sum()),
                            "test_beats": int(len(test_idx))}
    try:
        check_no_leak(pool.groups, train_idx, test_idx)
        leak["check_no_leak"] = "passed"
    except PatientLeakError as exc:
        leak["check_no_leak"] = f"failed: {exc}"
    train, test = pool.subset(train_idx), pool.subset(test_idx)
    log.info("seed %d: beat-level split, %d train / %d test beats, %d of %d patients on both sides", seed,
             len(train), len(test), leak["patients_on_both_sides"], leak["patients_total"])
    res = fit(config, train, None, seed=seed)
    prob = predict(res.model, config, test)
    out = {"seed": seed, "train_beats": len(train), "test_beats": len(test), "leak": leak,
           "train_seconds": res.seconds, "train_beats_per_s": res.beats_per_s,
           "threshold_source": f"fixed {BEAT_LEVEL_THRESHOLD} (argmax, as the beat-level protocol usually does)",
           "keras": summarise(test.y, prob, BEAT_LEVEL_THRESHOLD, test.label)}
    log.info("seed %d: beat-level F1 %.3f Se %.3f PPV %.3f AUC %.3f", seed,
             *(out["keras"]["metrics"][k] for k in ("f1", "sensitivity", "ppv", "roc_auc")))
    C.clear_keras()
    return out


# ---------------------------------------------------------------------------------------------------------
# plot
# ---------------------------------------------------------------------------------------------------------
def plot(result: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = [("f1", "F1"), ("sensitivity", "sensitivity"), ("ppv", "PPV"), ("roc_auc", "ROC-AUC")]
    arms = [a for a in ARMS if a in result["results"]]
    colors = {"inter_patient_keras": "#1f77b4", "inter_patient_int8": "#2ca02c",
              "inter_patient_keras_at_0.5": "#9ecae1", "beat_level_split": "#d62728"}
    fig, ax = plt.subplots(figsize=(10, 6))
    width = 0.8 / len(arms)
    x = np.arange(len(metrics))
    for i, arm in enumerate(arms):
        med = result["results"][arm]["median"]
        vals = [med.get(m, float("nan")) for m, _ in metrics]
        bars = ax.bar(x + (i - (len(arms) - 1) / 2) * width, vals, width, label=ARM_LABELS[arm], color=colors[arm])
        for b, v in zip(bars, vals):
            if np.isfinite(v):
                ax.text(b.get_x() + b.get_width() / 2, v + 0.01, f"{v:.2f}", ha="center", va="bottom", fontsize=7)
    ax.set_xticks(x, [label for _, label in metrics])
    ax.set_ylim(0, 1.1)
    ax.set_ylabel("abnormal class (S/V/F vs N)")
    s = result["settings"]
    seeds = len(s["seeds"])
    ax.set_title(f"MIT-BIH, one config: patient-wise (DS1→DS2) vs beat-level random split\n"
                 f"{result['mode']} mode, median of {seeds} seed{'s' if seeds > 1 else ''}, "
                 f"{s['epochs']} epoch{'s' if s['epochs'] != 1 else ''}, "
                 f"train beats {result['results']['inter_patient_keras']['train_beats']} (inter-patient) / "
                 f"{result['results']['beat_level_split']['train_beats']} (beat-level)"
                 + (f", tested on {C.ds2_name(result['results']['inter_patient_keras']['per_seed'][0])}"
                    if s.get("ds2_beats", "all") != "all" else ""), fontsize=10)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.07), ncol=4, frameon=False)
    ax.grid(axis="y", alpha=0.3)
    return C.save_figure(fig, path)


# ---------------------------------------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------------------------------------
def parse_args(argv=None) -> argparse.Namespace:
    ap = C.parser(__doc__)
    ap.add_argument("--quick", action="store_true",
                    help=f"smoke mode: --max-beats {QUICK['max_beats']}, --epochs {QUICK['epochs']}, --seeds {QUICK['seeds']}, "
                         f"--members {QUICK['members']}, --ds2-beats {QUICK['ds2_beats']}")
    ap.add_argument("--config", type=C.config_file, default=None, help=f"model config JSON (default {C.DEFAULT_CONFIG.relative_to(C.ROOT)})")
    ap.add_argument("--study", default=None, help="take the best trial's config and threshold from this Optuna study")
    ap.add_argument("--storage", default=None, help="the study's storage URL (with --study)")
    ap.add_argument("--seeds", type=C.at_least(1), default=None, help="repeats per arm (full 3, quick 1); medians reported")
    ap.add_argument("--seed", type=C.at_least(0), default=0, help="first seed (seeds are SEED, SEED+1, ...)")
    ap.add_argument("--max-beats", type=C.at_least(1), default=None,
                    help="inter-patient training beats drawn from DS1 (and ~that many beat-level training beats); "
                         "full: all, quick: 4000")
    ap.add_argument("--epochs", type=C.at_least(1), default=None, help="override the config's epochs (quick: 1)")
    ap.add_argument("--folds", type=C.at_least(2), default=3,
                    help="patient-grouped folds for the DS1 out-of-fold threshold (default 3)")
    ap.add_argument("--members", type=C.at_least(1), default=None,
                    help="inter-patient model = average of this many seeds' models, as `search --final-members` "
                         "(full 3, quick 2); the threshold still comes from single fold models")
    C.add_ds2_beats_option(ap, QUICK["ds2_beats"])
    ap.add_argument("--records", default=None, help="comma-separated MIT-BIH records (default: all 44 non-paced)")
    ap.add_argument("--out-dir", type=C.out_dir, default=C.DEFAULT_OUT, help=C.OUT_HELP)
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    if args.config is not None and args.study is not None:
        ap.error("give --config or --study, not both")
    if args.study is not None and not args.storage:
        ap.error("--study needs --storage (e.g. sqlite:///runs/optuna.db)")
    C.apply_mode(args, QUICK, FULL, parser=ap, argv=argv)
    if args.seeds < 1 or args.members < 1:
        ap.error("--seeds and --members must be at least 1")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    result, t_start = C.start("quality", args.mode, args.verbose, args.out_dir)

    from ecg_data import DS1, DS2, load_dataset

    config, threshold, fs, window, config_source, study_info = C.resolve_config(args)
    if args.epochs is not None:
        config["epochs"] = int(args.epochs)

    records = [r.strip() for r in args.records.split(",")] if args.records else None
    if records is not None and (not set(records) & set(DS1) or not set(records) & set(DS2)):
        raise SystemExit("--records must include DS1 and DS2 records (inter-patient training and test)")
    seeds = [args.seed + i for i in range(args.seeds)]
    result.update({
        "config": config, "config_source": config_source, "study": study_info,
        "settings": {"seeds": seeds, "max_beats": args.max_beats, "ds2_beats": args.ds2_beats or "all",
                     "epochs": int(config["epochs"]), "members": args.members,
                     "folds": args.folds if threshold is None else None, "records": records or "all 44 non-paced",
                     "fs": fs, "window": window, "beat_level_test_fraction": TEST_FRACTION,
                     "beat_level_threshold": BEAT_LEVEL_THRESHOLD, "tflite_threads": 1},
        "context_published_not_measured": CONTEXT,
    })

    t0 = time.perf_counter()
    data = load_dataset("mitdb", fs=fs, window=window, records=records)
    result["data"] = {**data.summary(), "load_seconds": time.perf_counter() - t0,
                      "cache_hit": bool(data.info.get("cache", {}).get("hit"))}
    log.info("mitdb: %d beats (%d DS1, %d DS2) loaded in %.1f s; config %s, %d epochs, seeds %s",
             len(data), int((data.split == "search").sum()), int((data.split == "test").sum()),
             result["data"]["load_seconds"], config_source, config["epochs"], seeds)

    partial = args.out_dir / f"quality_{args.mode}.partial.json"
    runs = C.seed_loop(seeds, lambda seed: {
        "inter_patient": inter_patient(config, data, seed, args.max_beats, args.folds, threshold, args.members,
                                       args.ds2_beats),
        "beat_level": beat_level(config, data, seed, args.max_beats)}, partial, result, t_start)
    runs_inter, runs_beat = [r["inter_patient"] for r in runs], [r["beat_level"] for r in runs]

    def arm(runs, key):
        per_seed = [{**{k: v for k, v in r.items() if k not in ("keras", "int8")}, **r[key]} for r in runs]
        med = C.median_of([flat(r[key]) for r in runs])
        return {"median": med, "train_beats": int(np.median([r["train_beats"] for r in runs])),
                "test_beats": int(np.median([r["test_beats"] for r in runs])), "per_seed": per_seed}

    results = {"inter_patient_keras": arm(runs_inter, "keras"), "inter_patient_int8": arm(runs_inter, "int8")}
    at05 = [dict(r["keras"]["at_0.5"]) for r in runs_inter]
    for m in at05:
        m["sensitivity"], m["ppv"], m["threshold"] = m.pop("recall"), m.pop("precision"), 0.5
    results["inter_patient_keras_at_0.5"] = {"median": C.median_of(at05), "train_beats": results["inter_patient_keras"]["train_beats"],
                                             "test_beats": results["inter_patient_keras"]["test_beats"],
                                             "note": "the same DS2 predictions as inter_patient_keras at threshold 0.5, "
                                                     "for a like-for-like comparison with the beat-level split"}
    pooled = [r["keras_at_pooled_oof_threshold_not_used"] for r in runs_inter if "keras_at_pooled_oof_threshold_not_used" in r]
    if pooled:
        results["inter_patient_keras_at_pooled_oof_threshold"] = {
            "median": C.median_of(pooled), "train_beats": results["inter_patient_keras"]["train_beats"],
            "test_beats": results["inter_patient_keras"]["test_beats"],
            "note": "the same DS2 predictions at the threshold the pooled DS1 out-of-fold predictions give (the "
                    "rule before the median over folds; not used)"}
    results["beat_level_split"] = arm(runs_beat, "keras")
    results["beat_level_split"]["leak"] = {
        "patients_on_both_sides": int(np.median([r["leak"]["patients_on_both_sides"] for r in runs_beat])),
        "patients_total": int(np.median([r["leak"]["patients_total"] for r in runs_beat])),
        "check_no_leak_failed": all(r["leak"]["check_no_leak"].startswith("failed") for r in runs_beat),
    }
    results["int8_vs_keras"] = C.median_of([r["int8_vs_keras"] for r in runs_inter])
    result["results"] = results
    result["headline"] = {
        "inter_patient_f1": results["inter_patient_keras"]["median"]["f1"],
        "inter_patient_int8_f1": results["inter_patient_int8"]["median"]["f1"],
        "beat_level_f1": results["beat_level_split"]["median"]["f1"],
        "inter_patient_roc_auc": results["inter_patient_keras"]["median"]["roc_auc"],
        "beat_level_roc_auc": results["beat_level_split"]["median"]["roc_auc"],
        "beat_level_patients_on_both_sides": results["beat_level_split"]["leak"]["patients_on_both_sides"],
        "inter_patient_int8_ms_median_1_thread": float(np.median([r["int8_latency_ms"]["median"] for r in runs_inter])),
        "inter_patient_int8_size_kb": float(np.median([r["int8_size_kb"] for r in runs_inter])),
        "members": args.members,
    }

    out_dir = args.out_dir
    png = plot(result, out_dir / f"quality_{args.mode}.png")
    result["plot"] = str(png)
    C.finish(result, time.perf_counter() - t_start)
    js = C.write_json(out_dir / f"quality_{args.mode}.json", result)
    C.drop_partial(partial)
    print_summary(result)
    print(f"wrote {js} and {png}")
    return 0


def print_summary(result: dict[str, Any]) -> None:
    r = result["results"]
    print(f"\nquality ({result['mode']}), median over seeds {result['settings']['seeds']}, "
          f"load avg start {result['machine']['loadavg_start']} end {result['machine']['loadavg_end']}, "
          f"{result['wall_seconds']:.0f} s")
    keys = ("accuracy", "sensitivity", "specificity", "ppv", "f1", "roc_auc", "threshold")
    print(f"  {'arm':44s}" + "".join(f"{k[:11]:>12s}" for k in keys) + f"{'train':>8s}{'test':>8s}")
    for name, a in r.items():
        if "median" not in a:
            continue
        print(f"  {name:44s}" + "".join(f"{a['median'].get(k, float('nan')):12.4f}" for k in keys)
              + f"{a['train_beats']:8d}{a['test_beats']:8d}")
    for name in ("inter_patient_keras", "inter_patient_int8", "beat_level_split"):
        m = r[name]["median"]
        print(f"  {name:30s} flagged abnormal: " + "  ".join(f"{c} {m[f'flagged_{c}']:.3f}" for c in "NSVF"
                                                             if f"flagged_{c}" in m))
    h = result["headline"]
    print(f"  inter-patient model: {h['members']} member(s); int8 {h['inter_patient_int8_size_kb']:.1f} KB, "
          f"{h['inter_patient_int8_ms_median_1_thread']:.3f} ms per beat at 1 thread (median)")
    leak = r["beat_level_split"]["leak"]
    print(f"  beat-level split: {leak['patients_on_both_sides']} of {leak['patients_total']} patients on both sides "
          f"(check_no_leak failed: {leak['check_no_leak_failed']})")


if __name__ == "__main__":
    C.run(main)
