#!/usr/bin/env python
"""Which RR-interval (rhythm) features carry the inter-patient signal? A screen without the waveform.

The model family reads a beat window *and* the rhythm features of ``ecg_data.preprocess.rr_features``. Training
the network for every candidate feature set costs minutes per seed, so this benchmark asks the cheaper question
first: how well do the rhythm features *alone* tell abnormal (S/V/F) from normal beats of unseen patients? A
gradient-boosting classifier (scikit-learn's ``HistGradientBoostingClassifier``, balanced class weights) is
trained on the RR features of MIT-BIH DS1 and scored

* on DS1 out-of-fold predictions of ``--folds`` patient-grouped folds (``ecg_data.patient_kfold``): the
  figure a design decision may look at, since no DS2 patient is involved;
* once on the 22 held-out DS2 patients: ROC-AUC overall and of each AAMI class against N.

for each feature group (the nine columns the pipeline had until cache version 5, then with the slower trailing
reference, the irregularity columns, and all fourteen), over ``--seeds`` seeds (the boosting model's
``random_state`` changes with the seed; the patient-grouped DS1 folds do not: ``StratifiedGroupKFold`` uses the
seed only to break ties, and MIT-BIH DS1 has none, see ``ecg_data.patient_kfold``); medians are reported.
Writes ``rr_features_<mode>.json`` and ``rr_features_<mode>.png``.

    python benchmarks/rr_features.py --quick     # 1 seed, 50 boosting rounds (1-2 min on 2 cores)
    python benchmarks/rr_features.py             # 3 seeds, 200 rounds (about 5 min)
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

log = logging.getLogger("benchmarks.rr_features")

QUICK = {"seeds": 1, "rounds": 50}
FULL = {"seeds": 3, "rounds": 200}
#: Column groups of ``rr_features`` (see its docstring for what each column is).
GROUPS: dict[str, list[int]] = {
    "nine (pipeline version 5)": list(range(9)),
    "nine + trailing 32-beat reference": list(range(11)),
    "nine + irregularity": [*range(9), 11, 12, 13],
    "all fourteen (pipeline version 6)": list(range(14)),
}


def scores(data, cols: list[int], seed: int, folds: int, rounds: int) -> dict[str, Any]:
    """DS1 out-of-fold and DS2 ROC-AUC of a boosting model on the RR columns ``cols``."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import roc_auc_score

    from ecg_data import grouped_splits, patient_kfold

    def model():
        return HistGradientBoostingClassifier(max_iter=rounds, learning_rate=0.05, class_weight="balanced",
                                              random_state=seed)

    train, test = data.search_part(), data.test_part()
    x1, x2 = train.rr[:, cols], test.rr[:, cols]
    oof = np.full(len(train), np.nan)
    for tr, va in grouped_splits(patient_kfold(folds, seed=seed), x1, train.y, train.groups):
        oof[va] = model().fit(x1[tr], train.y[tr]).predict_proba(x1[va])[:, 1]
    p2 = model().fit(x1, train.y).predict_proba(x2)[:, 1]
    out = {"ds1_oof_roc_auc": float(roc_auc_score(train.y, oof)), "ds2_roc_auc": float(roc_auc_score(test.y, p2))}
    for cls in ("S", "V", "F"):
        m = np.isin(test.label, ["N", cls])
        out[f"ds2_roc_auc_N_vs_{cls}"] = float(roc_auc_score(test.y[m], p2[m]))
    return out


def plot(result: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [("ds1_oof_roc_auc", "DS1 out-of-fold"), ("ds2_roc_auc", "DS2 (held out)"),
            ("ds2_roc_auc_N_vs_S", "DS2 N vs S"), ("ds2_roc_auc_N_vs_V", "DS2 N vs V"),
            ("ds2_roc_auc_N_vs_F", "DS2 N vs F")]
    groups = list(result["medians"])
    fig, ax = plt.subplots(figsize=(10, 4.8))
    width = 0.8 / len(groups)
    x = np.arange(len(keys))
    for i, g in enumerate(groups):
        vals = [result["medians"][g][k] for k, _ in keys]
        bars = ax.bar(x + (i - (len(groups) - 1) / 2) * width, vals, width, label=g)
        for b, v in zip(bars, vals):
            ax.text(b.get_x() + b.get_width() / 2, v + 0.003, f"{v:.3f}", ha="center", va="bottom", fontsize=6)
    ax.set_xticks(x, [label for _, label in keys])
    ax.set_ylim(0.5, 1.02)
    ax.set_ylabel("ROC-AUC, abnormal vs normal (RR features only)")
    ax.set_title(f"MIT-BIH rhythm features alone, gradient boosting, median of {len(result['settings']['seeds'])} "
                 f"seed(s) ({result['mode']})", fontsize=10)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.08), ncol=4, frameon=False)
    ax.grid(axis="y", alpha=0.3)
    return C.save_figure(fig, path)


def parse_args(argv=None) -> argparse.Namespace:
    ap = C.parser(__doc__)
    ap.add_argument("--quick", action="store_true", help=f"smoke run: {QUICK}")
    ap.add_argument("--seeds", type=C.at_least(1), default=None, help="repeats (full 3, quick 1); medians reported")
    ap.add_argument("--rounds", type=C.at_least(1), default=None, help="boosting rounds (full 200, quick 50)")
    ap.add_argument("--folds", type=C.at_least(2), default=3, help="patient-grouped DS1 folds for the out-of-fold figure (default 3)")
    return C.parse_mode(ap, argv, QUICK, FULL)


def main(argv=None) -> int:
    args = parse_args(argv)
    result, t_start = C.start("rr_features", args.mode, args.verbose, args.out_dir)
    from ecg_data import N_RR_FEATURES, load_dataset

    data = load_dataset("mitdb", fs=180.0, window=256)
    if N_RR_FEATURES != 14:
        raise SystemExit(f"this benchmark's column groups are for 14 RR features, the pipeline has {N_RR_FEATURES}")
    seeds = list(range(args.seeds))
    result.update({"settings": {"seeds": seeds, "rounds": args.rounds, "folds": args.folds,
                                "model": "HistGradientBoostingClassifier(learning_rate=0.05, class_weight=balanced)",
                                "groups": GROUPS},
                   "data": data.summary()})
    per_group: dict[str, list[dict[str, Any]]] = {}
    for name, cols in GROUPS.items():
        per_group[name] = [scores(data, cols, s, args.folds, args.rounds) for s in seeds]
        med = C.median_of(per_group[name])
        log.info("%-36s DS1 OOF %.4f  DS2 %.4f  (N vs S %.3f, V %.3f, F %.3f)", name, med["ds1_oof_roc_auc"],
                 med["ds2_roc_auc"], med["ds2_roc_auc_N_vs_S"], med["ds2_roc_auc_N_vs_V"], med["ds2_roc_auc_N_vs_F"])
    result["per_seed"] = per_group
    result["medians"] = {name: C.median_of(runs) for name, runs in per_group.items()}
    C.finish(result, time.perf_counter() - t_start)
    js = C.write_json(args.out_dir / f"rr_features_{args.mode}.json", result)
    png = plot(result, args.out_dir / f"rr_features_{args.mode}.png")
    print(f"RR features alone ({args.mode}, medians of {len(seeds)} seed(s)): ROC-AUC")
    print(f"  {'features':38s}{'DS1 OOF':>9s}{'DS2':>8s}{'N-vs-S':>8s}{'N-vs-V':>8s}{'N-vs-F':>8s}")
    for name, m in result["medians"].items():
        print(f"  {name:38s}{m['ds1_oof_roc_auc']:9.4f}{m['ds2_roc_auc']:8.4f}{m['ds2_roc_auc_N_vs_S']:8.3f}"
              f"{m['ds2_roc_auc_N_vs_V']:8.3f}{m['ds2_roc_auc_N_vs_F']:8.3f}")
    print(f"wrote {js} and {png}")
    return 0


if __name__ == "__main__":
    C.run(main)
