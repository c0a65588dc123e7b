#!/usr/bin/env python
"""Record-level PTB-XL benchmark: one fixed config, NORM vs abnormal (MI/STTC/CD/HYP), tested once on fold 10.

Data: the PTB-XL subset under ``$ECG_AUTOML_DATA/ptbxl`` (records100, ecg_id 1-500, 100 Hz, 12 leads; the 12
records without a diagnostic statement are left out by the loader), read with ``load_dataset("ptbxl")``:
R peaks from XQRS on lead II, one 12-lead window per beat (256 samples at the project's 180 Hz, i.e. 1.42 s;
the 100 Hz records are resampled, which adds no information but keeps the model space of
``spaces/default.yaml``), every beat carrying its record's label. strat_fold 1-9 is the search part, fold 10
the test part; the two share no patient (``check_no_leak``, recorded as ``leak_check``).

For one config (``--config FILE.json``, default ``benchmarks/configs/ptbxl_default.json``: a mid-range point
of ``spaces/default.yaml``; or ``--study NAME --storage URL``: the study's best trial config) and each seed:

1. **threshold**: patient-grouped K-fold (``ecg_data.patient_kfold``, ``--folds``) over the search part; every
   search beat gets an out-of-fold probability. A record's probability is the **mean of its beats'
   probabilities** (``--aggregate median``: the median); the record-level decision threshold is the one that
   maximises record-level F1 on those out-of-fold record probabilities (and, for the beat-level reference
   figures, a beat-level threshold is chosen the same way on the out-of-fold beat probabilities).
2. **test**: train on the whole search part, predict every fold-10 beat, aggregate per record, and report the
   record-level accuracy, sensitivity, specificity, PPV, F1 and ROC-AUC of the abnormal class, the confusion
   matrix and the number of records/patients per part; the same figures per beat, for reference.

Medians over ``--seeds`` seeds (initialisation and folds change with the seed) and the per-seed results are
written to ``ptbxl_records_<mode>.json``, with ``ptbxl_records_<mode>.png`` (record-level metric bars with the
published figures as reference markers, the record-level ROC curves and a confusion matrix) in ``--out-dir``.
The published figures are context, not results: the full PTB-XL (21,799 records) binary NORM-vs-abnormal
accuracy 89.0 % and F1 84.4 %, on far more data than this 500-record subset.

    python benchmarks/ptbxl_records.py --quick        # 1 epoch, 2 folds, 1 seed (~1-2 min)
    python benchmarks/ptbxl_records.py                # the config's 8 epochs, 3 folds, 3 seeds (~8-11 min)
    python benchmarks/ptbxl_records.py --aggregate median --seeds 5

Runtimes on 2 cores shared with other jobs (load average 3-6.5): quick 41-100 s, full 462-635 s (``wall_seconds``
in the result files). Quick mode is a smoke run: after 1 epoch the out-of-fold threshold usually calls every test
record abnormal. Preprocessed arrays are cached in ``$ECG_AUTOML_CACHE`` (the first run adds ~10 s to build them).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

log = logging.getLogger("benchmarks.ptbxl_records")

DEFAULT_CONFIG = C.ROOT / "benchmarks" / "configs" / "ptbxl_default.json"
QUICK = {"epochs": 1, "folds": 2, "seeds": 1}
FULL = {"epochs": None, "folds": 3, "seeds": 3}
#: How a record's probability is made from its beats' probabilities.
AGGREGATES: dict[str, Callable[[np.ndarray], float]] = {"mean": np.mean, "median": np.median}
RATES = (("accuracy", "accuracy"), ("sensitivity", "sensitivity"), ("specificity", "specificity"),
         ("ppv", "PPV"), ("f1", "F1"), ("roc_auc", "ROC-AUC"))

#: Published figures, for context only: NOT measured here, on the full PTB-XL and not this 500-record subset.
CONTEXT = {
    "note": ("Context only, not results of this benchmark. Binary NORM-vs-abnormal figures reported for the full "
             "PTB-XL (21,799 records) as given in the benchmark's brief, not reproduced or re-derived here; "
             "this benchmark trains on 424 records of a 500-record subset and tests on 64, so the figures are "
             "not comparable as a ranking, only as an order of magnitude."),
    "dataset": "PTB-XL, all 21,799 records",
    "task": "binary NORM vs abnormal, record level",
    "accuracy": 0.890,
    "f1": 0.844,
    "records": 21799,
    "records_in_this_subset": 500,
}


# ---------------------------------------------------------------------------------------------------------
# records and metrics
# ---------------------------------------------------------------------------------------------------------
def record_level(records: np.ndarray, groups: np.ndarray, y: np.ndarray, prob: np.ndarray,
                 aggregate: str) -> dict[str, np.ndarray]:
    """Per-record label, patient, beat count and probability (``aggregate`` of its beats' probabilities)."""
    how = AGGREGATES[aggregate]
    ids, inverse = np.unique(records, return_inverse=True)
    rec_y = np.zeros(len(ids), dtype=np.int8)
    rec_prob = np.zeros(len(ids))
    rec_group = np.empty(len(ids), dtype=object)
    n_beats = np.zeros(len(ids), dtype=np.int64)
    for i, rec in enumerate(ids):
        m = inverse == i
        labels = np.unique(y[m])
        if len(labels) != 1:
            raise ValueError(f"record {rec}: its beats carry different labels {labels.tolist()}")
        rec_y[i], rec_prob[i], rec_group[i], n_beats[i] = labels[0], how(prob[m]), groups[m][0], m.sum()
    return {"records": ids, "y": rec_y, "prob": rec_prob, "groups": rec_group.astype(str), "beats": n_beats}


def summarise(y: np.ndarray, prob: np.ndarray, threshold: float) -> dict[str, Any]:
    """Abnormal-class metrics under the benchmark's names, the confusion matrix and the counts."""
    from search import binary_metrics, full_report

    rep = full_report(y, prob, threshold)
    a = rep["abnormal"]
    (tn, fp), (fn, tp) = rep["confusion_matrix"]
    return {
        "threshold": float(threshold),
        "metrics": {"accuracy": a["accuracy"], "sensitivity": a["recall"], "specificity": a["specificity"],
                    "ppv": a["precision"], "f1": a["f1"], "roc_auc": a["roc_auc"]},
        "confusion_matrix": {"tn": tn, "fp": fp, "fn": fn, "tp": tp,
                             "layout": "rows true (NORM, abnormal), columns predicted"},
        "n": rep["n"],
        "n_abnormal": int(np.sum(y)),
        "at_0.5": {k: v for k, v in binary_metrics(y, prob, 0.5).items() if k != "threshold"},
    }


def _flat(summary: dict[str, Any]) -> dict[str, float]:
    """The numbers of one summary that get a median over seeds."""
    out = dict(summary["metrics"])
    out["threshold"] = summary["threshold"]
    out.update({k: summary["confusion_matrix"][k] for k in ("tn", "fp", "fn", "tp")})
    return out


def _part_counts(ds) -> dict[str, int]:
    """Beats, records, patients and abnormal/normal records of one part."""
    ids, first = np.unique(ds.records, return_index=True)
    abnormal = int(np.sum(ds.y[first]))
    return {"beats": int(len(ds)), "records": int(len(ids)), "patients": int(len(np.unique(ds.groups))),
            "abnormal_beats": int(np.sum(ds.y)), "abnormal_records": abnormal, "normal_records": int(len(ids)) - abnormal}


# ---------------------------------------------------------------------------------------------------------
# the protocol
# ---------------------------------------------------------------------------------------------------------
def leak_check(data) -> dict[str, Any]:
    """Check that no patient has beats in both the search part (folds 1-9) and the test part (fold 10)."""
    from ecg_data import PatientLeakError, check_no_leak

    search_idx, test_idx = np.flatnonzero(data.split == "search"), np.flatnonzero(data.split == "test")
    shared = np.intersect1d(np.unique(data.groups[search_idx]), np.unique(data.groups[test_idx]))
    try:
        check_no_leak(data.groups, search_idx, test_idx)
    except PatientLeakError as exc:  # the protocol is void: say so and stop
        raise SystemExit(f"ptbxl: the search and test parts share patients ({exc}); no benchmark") from exc
    return {"check_no_leak": "passed", "no_leak": True, "patients_in_both_parts": int(len(shared)),
            "search_patients": int(len(np.unique(data.groups[search_idx]))),
            "test_patients": int(len(np.unique(data.groups[test_idx])))}


def oof_thresholds(config: dict, train, folds: int, seed: int, aggregate: str) -> dict[str, Any]:
    """Record- and beat-level thresholds maximising F1 on patient-grouped out-of-fold predictions of ``train``."""
    from ecg_data import grouped_splits, patient_kfold
    from search import best_threshold, binary_metrics, fit

    t0 = time.perf_counter()
    oof = np.full(len(train), np.nan)
    fold_info = []
    for k, (tr, va) in enumerate(grouped_splits(patient_kfold(folds, seed=seed), train.X, train.y, train.groups)):
        res = fit(config, train.subset(tr), train.subset(va), seed=seed * 1009 + k)
        oof[va] = res.val_prob
        val = train.subset(va)
        rec = record_level(val.records, val.groups, val.y, res.val_prob, aggregate)
        fold_info.append({"train_beats": int(len(tr)), "val_beats": int(len(va)), "val_records": int(len(rec["y"])),
                          "val_patients": int(len(np.unique(val.groups))),
                          "val_record_roc_auc": binary_metrics(rec["y"], rec["prob"])["roc_auc"],
                          "val_beat_roc_auc": binary_metrics(val.y, res.val_prob)["roc_auc"],
                          "train_seconds": res.seconds})
        C.clear_keras()
        log.info("  OOF fold %d/%d: %d train / %d val beats (%d val records), val record AUC %.3f (%.0f s)", k + 1,
                 folds, len(tr), len(va), len(rec["y"]), fold_info[-1]["val_record_roc_auc"], res.seconds)
    if np.isnan(oof).any():  # StratifiedGroupKFold puts every patient in one validation fold
        raise RuntimeError(f"{int(np.isnan(oof).sum())} search beats got no out-of-fold prediction")
    rec = record_level(train.records, train.groups, train.y, oof, aggregate)
    thr_rec, thr_beat = best_threshold(rec["y"], rec["prob"]), best_threshold(train.y, oof)
    strip = lambda m: {k: v for k, v in m.items() if k != "threshold"}  # noqa: E731
    return {"record_threshold": thr_rec, "beat_threshold": thr_beat, "folds": folds, "per_fold": fold_info,
            "oof_records": int(len(rec["y"])),
            "oof_record_at_threshold": strip(binary_metrics(rec["y"], rec["prob"], thr_rec)),
            "oof_beat_at_threshold": strip(binary_metrics(train.y, oof, thr_beat)),
            "seconds": time.perf_counter() - t0}


def run_seed(config: dict, data, seed: int, folds: int, aggregate: str) -> dict[str, Any]:
    """Out-of-fold thresholds on the search part, then train on it and test once on fold 10."""
    from search import fit, predict

    t0 = time.perf_counter()
    train, test = data.search_part(), data.test_part()
    log.info("seed %d: out-of-fold thresholds (%d patient-grouped folds, %d beats)", seed, folds, len(train))
    oof = oof_thresholds(config, train, folds, seed, aggregate)
    log.info("seed %d: training on folds 1-9 (%d beats, %d records), record threshold %.3f, beat threshold %.3f",
             seed, len(train), len(np.unique(train.records)), oof["record_threshold"], oof["beat_threshold"])
    res = fit(config, train, None, seed=seed)
    prob = predict(res.model, config, test)
    C.clear_keras()
    rec = record_level(test.records, test.groups, test.y, prob, aggregate)
    out = {
        "seed": seed,
        "train": _part_counts(train),
        "test": _part_counts(test),
        "oof": oof,
        "train_seconds": res.seconds,
        "train_beats_per_s": res.beats_per_s,
        "record": summarise(rec["y"], rec["prob"], oof["record_threshold"]),
        "beat": summarise(test.y, prob, oof["beat_threshold"]),
        "test_records": [{"ecg_id": str(r), "patient": str(g), "y": int(y), "prob": float(p), "beats": int(n)}
                         for r, g, y, p, n in zip(rec["records"], rec["groups"], rec["y"], rec["prob"], rec["beats"])],
        "seconds": time.perf_counter() - t0,
    }
    log.info("seed %d: fold 10, %d records: acc %.3f Se %.3f Sp %.3f PPV %.3f F1 %.3f AUC %.3f (%.0f s)", seed,
             len(rec["y"]), *(out["record"]["metrics"][k] for k, _ in RATES), out["seconds"])
    return out


def split_folds(path: Path, data) -> dict[str, list[int]]:
    """The strat_fold values (from ``ptbxl_database.csv``) of the records in each part."""
    from ecg_data.ptbxl import read_table

    table = read_table(path)
    out = {}
    for part in ("search", "test"):
        ids = np.unique(data.records[data.split == part]).astype(int)
        out[part] = sorted(int(f) for f in np.unique(table.loc[ids, "strat_fold"]))
    return out


# ---------------------------------------------------------------------------------------------------------
# plot
# ---------------------------------------------------------------------------------------------------------
def plot(result: dict[str, Any], path: Path) -> Path:
    """Record-level metric bars (per-seed dots, published markers), record-level ROC and a confusion matrix."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_curve

    res = result["results"]
    per_seed = res["per_seed"]
    fig, (ax, ax_roc, ax_cm) = plt.subplots(1, 3, figsize=(16, 6), gridspec_kw={"width_ratios": [2.3, 1, 1]})

    # metric bars: record level (dark) and beat level (light), per-seed record values as dots
    x = np.arange(len(RATES))
    width = 0.38
    rec_med = [res["record"]["median"].get(k, float("nan")) for k, _ in RATES]
    beat_med = [res["beat"]["median"].get(k, float("nan")) for k, _ in RATES]
    bars = ax.bar(x - width / 2, rec_med, width, color="#1f77b4", label=f"record level ({result['settings']['aggregate']} "
                                                                        f"of beat probabilities), median")
    beat_bars = ax.bar(x + width / 2, beat_med, width, color="#aec7e8", label="beat level (reference), median")
    for b, v in zip([*bars, *beat_bars], [*rec_med, *beat_med]):  # values at the foot, clear of the seed dots
        if np.isfinite(v):
            ax.text(b.get_x() + b.get_width() / 2, 0.02, f"{v:.3f}", ha="center", va="bottom", fontsize=8,
                    fontweight="bold", color="white" if b in bars and v >= 0.1 else "#08306b", rotation=90)
    if len(per_seed) > 1:
        for i, (k, _) in enumerate(RATES):
            vals = [s["record"]["metrics"][k] for s in per_seed]
            ax.scatter(np.full(len(vals), x[i] - width / 2), vals, s=14, color="black", zorder=3,
                       label="record level, each seed" if i == 0 else None)
    ctx = result["context_published_not_measured"]
    for i, (k, _) in enumerate(RATES):
        if k in ctx:
            ax.plot([x[i] - 0.45, x[i] + 0.45], [ctx[k], ctx[k]], color="#d62728", lw=2.2, ls="--", zorder=4,
                    label=(f"published, full PTB-XL ({ctx['records']:,} records): context, NOT measured"
                           if k == "accuracy" else None))
            ax.text(x[i] + 0.45, ctx[k] + 0.012, f"{ctx[k]:.3f}", color="#d62728", ha="right", va="bottom", fontsize=8)
    ax.set_xticks(x, [label for _, label in RATES])
    ax.set_ylim(0, 1.15)
    ax.set_ylabel("abnormal class (MI/STTC/CD/HYP) vs NORM, fold 10")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.07), ncol=2, frameon=False)

    # ROC curves of the record-level test predictions, one per seed, with the chosen operating point
    for s in per_seed:
        y = np.array([r["y"] for r in s["test_records"]])
        p = np.array([r["prob"] for r in s["test_records"]])
        if len(np.unique(y)) == 2:
            fpr, tpr, _ = roc_curve(y, p)
            line, = ax_roc.plot(fpr, tpr, lw=1.5, label=f"seed {s['seed']}: AUC {s['record']['metrics']['roc_auc']:.3f}")
            m = s["record"]["metrics"]
            ax_roc.plot(1 - m["specificity"], m["sensitivity"], "o", color=line.get_color(), ms=7)
    ax_roc.plot([0, 1], [0, 1], color="grey", lw=0.8, ls=":")
    ax_roc.set_xlabel("1 - specificity")
    ax_roc.set_ylabel("sensitivity")
    ax_roc.set_title("record-level ROC, fold 10\n(dot: out-of-fold threshold)", fontsize=10)
    ax_roc.set_xlim(-0.02, 1.02)
    ax_roc.set_ylim(-0.02, 1.02)
    ax_roc.set_aspect("equal")
    ax_roc.grid(alpha=0.3)
    ax_roc.legend(fontsize=8, loc="lower right")

    # confusion matrix of the seed with the median record-level F1
    f1s = [s["record"]["metrics"]["f1"] for s in per_seed]
    mid = per_seed[int(np.argsort(f1s)[(len(f1s) - 1) // 2])]
    cm = mid["record"]["confusion_matrix"]
    mat = np.array([[cm["tn"], cm["fp"]], [cm["fn"], cm["tp"]]])
    ax_cm.imshow(mat / np.maximum(mat.sum(axis=1, keepdims=True), 1), cmap="Blues", vmin=0, vmax=1)
    for (i, j), v in np.ndenumerate(mat):
        share = v / max(mat[i].sum(), 1)
        ax_cm.text(j, i, f"{v}\n({share:.0%} of row)", ha="center", va="center", fontsize=11,
                   color="white" if share > 0.6 else "black")
    ax_cm.set_xticks([0, 1], ["NORM", "abnormal"])
    ax_cm.set_yticks([0, 1], ["NORM", "abnormal"])
    ax_cm.set_xlabel("predicted")
    ax_cm.set_ylabel("true")
    ax_cm.set_title(f"records, fold 10, seed {mid['seed']}\n(median F1 seed, threshold "
                    f"{mid['record']['threshold']:.2f})", fontsize=10)

    s = result["settings"]
    d = result["data"]
    seeds = len(s["seeds"])
    fig.suptitle(f"PTB-XL subset (ecg_id 1-500, 100 Hz, 12 leads): NORM vs abnormal per record — {result['mode']} mode, "
                 f"median of {seeds} seed{'s' if seeds > 1 else ''}, {s['epochs']} epoch{'s' if s['epochs'] != 1 else ''}\n"
                 f"trained on strat_fold 1-9 ({d['search']['records']} records, {d['search']['patients']} patients), "
                 f"tested once on fold 10 ({d['test']['records']} records, {d['test']['patients']} patients); "
                 f"no patient in both parts", fontsize=11)
    return C.save_figure(fig, path)


# ---------------------------------------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options, with the mode's defaults filled in."""
    ap = C.parser(__doc__)
    ap.add_argument("--quick", action="store_true",
                    help=f"smoke mode: --epochs {QUICK['epochs']}, --folds {QUICK['folds']}, --seeds {QUICK['seeds']}")
    ap.add_argument("--config", type=C.config_file, default=None, help=f"model config JSON (default {DEFAULT_CONFIG.relative_to(C.ROOT)})")
    ap.add_argument("--study", default=None, help="take the best trial's config from this Optuna study (its threshold "
                                                  "is not used: thresholds are chosen on PTB-XL out-of-fold records)")
    ap.add_argument("--storage", default=None, help="the study's storage URL (with --study)")
    ap.add_argument("--seeds", type=C.at_least(1), default=None, help="repeats (full 3, quick 1); medians reported")
    ap.add_argument("--seed", type=C.at_least(0), default=0, help="first seed (seeds are SEED, SEED+1, ...)")
    ap.add_argument("--epochs", type=C.at_least(1), default=None, help="override the config's epochs (quick: 1)")
    ap.add_argument("--folds", type=C.at_least(2), default=None, help="patient-grouped folds for the out-of-fold thresholds "
                                                            "(full 3, quick 2)")
    ap.add_argument("--aggregate", choices=sorted(AGGREGATES), default="mean",
                    help="a record's probability from its beats' probabilities (default mean)")
    ap.add_argument("--out-dir", type=C.out_dir, default=C.DEFAULT_OUT, help=C.OUT_HELP)
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    if args.config is not None and args.study is not None:
        ap.error("give --config or --study, not both")
    if args.study is not None and not args.storage:
        ap.error("--study needs --storage (e.g. sqlite:///runs/optuna.db)")
    C.apply_mode(args, QUICK, FULL, parser=ap, argv=argv)
    if args.config is None and args.study is None:
        args.config = DEFAULT_CONFIG
    return args


def _ptbxl_dir() -> Path:
    """The PTB-XL folder, or a DatabaseNotFoundError naming it and how to get it (one line, exit 2)."""
    from ecg_data import data_root

    path = data_root() / "ptbxl"
    if not (path / "ptbxl_database.csv").exists():
        from ecg_data.errors import DatabaseNotFoundError

        raise DatabaseNotFoundError(f"PTB-XL data not found: {path} has no ptbxl_database.csv. Get it with "
                                    f"`ecg-automl data fetch ptbxl` (the 100 Hz records and the two tables from "
                                    f"PhysioNet, into $ECG_AUTOML_DATA/ptbxl), or set ECG_AUTOML_DATA to a folder "
                                    f"that holds ptbxl/.")
    return path


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and write its JSON and PNG."""
    args = parse_args(argv)
    result, t_start = C.start("ptbxl_records", args.mode, args.verbose, args.out_dir)
    ptbxl = _ptbxl_dir()

    from ecg_data import DataError, load_dataset

    config, _study_threshold, fs, window, config_source, study_info = C.resolve_config(args)
    if args.epochs is not None:
        config["epochs"] = int(args.epochs)
    seeds = [args.seed + i for i in range(args.seeds)]
    result.update({
        "config": config, "config_source": config_source, "study": study_info,
        "settings": {"seeds": seeds, "epochs": int(config["epochs"]), "folds": args.folds,
                     "aggregate": args.aggregate,
                     "aggregation": f"a record's probability is the {args.aggregate} of its beats' probabilities",
                     "threshold_selection": (f"maximum F1 on out-of-fold predictions of {args.folds} patient-grouped "
                                             f"folds of strat_fold 1-9 (record level on record probabilities; beat "
                                             f"level on beat probabilities)"),
                     "fs": fs, "window": window, "window_seconds": window / fs, "source_fs": 100.0,
                     "search_part": "strat_fold 1-9", "test_part": "strat_fold 10"},
        "context_published_not_measured": CONTEXT,
    })

    t0 = time.perf_counter()
    try:
        data = load_dataset("ptbxl", fs=fs, window=window, download=False)
    except DataError as exc:
        raise DataError(f"could not load PTB-XL from {ptbxl}: {exc}. Re-fetch it with `ecg-automl data fetch ptbxl`.") from exc
    result["data"] = {**data.summary(), "load_seconds": time.perf_counter() - t0,
                      "cache_hit": bool(data.info.get("cache", {}).get("hit")),
                      "channels": int(data.X.shape[2]), "rr_features_per_beat": int(data.rr.shape[1]),
                      "excluded_no_diagnosis": data.info.get("excluded_no_diagnosis"),
                      "skipped_few_beats": data.info.get("skipped_few_beats", {}).get("count"),
                      "protocol": data.info.get("protocol"), "path": str(ptbxl),
                      "strat_folds": split_folds(ptbxl, data)}
    result["leak_check"] = leak_check(data)
    log.info("ptbxl: %d beats of %d records (%d search / %d test records) in %.1f s; %d channels, %d RR features; "
             "config %s, %d epochs, seeds %s", len(data), len(np.unique(data.records)), result["data"]["search"]["records"],
             result["data"]["test"]["records"], result["data"]["load_seconds"], result["data"]["channels"],
             result["data"]["rr_features_per_beat"], config_source, config["epochs"], seeds)

    partial = args.out_dir / f"ptbxl_records_{args.mode}.partial.json"
    runs = C.seed_loop(seeds, lambda seed: run_seed(config, data, seed, args.folds, args.aggregate), partial, result,
                       t_start, key="per_seed")

    def level(key: str) -> dict[str, Any]:
        return {"median": C.median_of([_flat(r[key]) for r in runs]),
                "median_at_0.5": C.median_of([r[key]["at_0.5"] for r in runs]),
                "n": runs[0][key]["n"], "n_abnormal": runs[0][key]["n_abnormal"]}

    result["results"] = {"record": level("record"), "beat": level("beat"),
                         "oof_record_at_threshold": C.median_of([r["oof"]["oof_record_at_threshold"] for r in runs]),
                         "per_seed": runs}
    med = result["results"]["record"]["median"]
    result["headline"] = {f"record_{k}": med[k] for k, _ in RATES}
    result["headline"].update({"beat_f1": result["results"]["beat"]["median"]["f1"],
                               "beat_roc_auc": result["results"]["beat"]["median"]["roc_auc"],
                               "test_records": runs[0]["test"]["records"], "test_patients": runs[0]["test"]["patients"],
                               "no_leak": result["leak_check"]["no_leak"]})

    out_dir = args.out_dir
    png = plot(result, out_dir / f"ptbxl_records_{args.mode}.png")
    result["plot"] = str(png)
    C.finish(result, time.perf_counter() - t_start)
    js = C.write_json(out_dir / f"ptbxl_records_{args.mode}.json", result)
    C.drop_partial(partial)
    print_summary(result)
    print(f"wrote {js} and {png}")
    return 0


def print_summary(result: dict[str, Any]) -> None:
    """A short table of the medians for the terminal."""
    r = result["results"]
    d = result["data"]
    print(f"\nptbxl_records ({result['mode']}), median over seeds {result['settings']['seeds']}, "
          f"load avg start {result['machine']['loadavg_start']} end {result['machine']['loadavg_end']}, "
          f"{result['wall_seconds']:.0f} s")
    print(f"  search: {d['search']['records']} records / {d['search']['patients']} patients / {d['search']['beats']} beats; "
          f"test (fold 10): {d['test']['records']} records / {d['test']['patients']} patients / {d['test']['beats']} beats; "
          f"patients in both: {result['leak_check']['patients_in_both_parts']}")
    keys = [k for k, _ in RATES] + ["threshold"]
    print(f"  {'level':10s}" + "".join(f"{k[:11]:>12s}" for k in keys) + f"{'n':>7s}")
    for name in ("record", "beat"):
        print(f"  {name:10s}" + "".join(f"{r[name]['median'].get(k, float('nan')):12.4f}" for k in keys)
              + f"{r[name]['n']:7d}")
    c = result["context_published_not_measured"]
    print(f"  published context (full PTB-XL, {c['records']:,} records; NOT measured here): "
          f"accuracy {c['accuracy']:.3f}, F1 {c['f1']:.3f}")


if __name__ == "__main__":
    C.run(main)
