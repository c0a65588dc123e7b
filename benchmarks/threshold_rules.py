#!/usr/bin/env python
"""Which rule should choose the decision threshold from DS1 out-of-fold predictions? Judged on DS1 alone.

The search and the fold ensemble pick the threshold as the median over folds of each fold's F1-best threshold
(``search.best_threshold`` with the folds). Rerun with other training seeds, that threshold moved between 0.70
and 0.93 while the DS2 ranking (ROC-AUC, the DS2-optimal F1) stayed put (docs/RESULTS.md section 7), so F1 at
the chosen threshold moved by 0.03. This benchmark compares that rule with smoother ones **without looking at
DS2 to choose**: for each seed it trains the K patient-grouped fold models on DS1 (``search.fit_fold_models``,
as ``benchmarks/fold_ensemble.py`` does) and scores each rule by *leave one fold out*: the rule sees the
out-of-fold predictions of K-1 folds, and its threshold is applied to the held fold's patients, whom it never
saw -- the situation of a threshold meeting new patients, inside DS1. The DS1 figure is the F1 of all DS1
beats so classified (each by the threshold chosen without its fold). Only then, and reported beside it, the
DS2 F1 of the K models' average at each rule's threshold from all DS1 folds.

Rules (each from out-of-fold probabilities ``p``, labels ``y`` and folds; a grid of 400 thresholds even in
logit between 0.005 and 0.9995 for the curve rules):

- ``median_of_fold_best`` -- the product's rule: the median over folds of each fold's F1-best threshold;
- ``pooled_best`` -- the F1-best threshold of all folds' beats pooled;
- ``mean_curve_best`` -- the threshold where the mean over folds of the per-fold F1 is highest;
- ``mean_curve_plateau_middle`` -- the middle (median grid point) of the thresholds whose mean-over-folds F1
  is within 0.01 of that curve's best: the centre of the flat top rather than one noisy peak;
- ``median_curve_best`` -- the threshold where the median over folds of the per-fold F1 is highest.

    python benchmarks/threshold_rules.py --quick    # 4,000 DS1 beats, 1 epoch, 1 seed, 3 folds, 5,000 DS2 beats (~1 min)
    python benchmarks/threshold_rules.py            # all beats, 8 epochs, 5 folds, seeds 3-5 (~75 min alone)

The full mode starts at seed 3: seeds 0-2 are those of the fold-ensemble runs whose DS2 results are already
published, and a rule must be tried on seeds nobody has seen DS2 figures of. Writes
``threshold_rules_<mode>.json``, ``threshold_rules_<mode>.png`` (per seed: the mean-over-folds DS1 F1 curve and
DS2's, with each rule's threshold) and ``threshold_rules_<mode>_predictions.npz`` (the out-of-fold and DS2
probabilities, so that another rule can be tried without training again; not committed) to ``--out-dir``.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

log = logging.getLogger("benchmarks.threshold_rules")

QUICK = {"seeds": 1, "seed": 0, "max_beats": 4000, "epochs": 1, "folds": 3, "ds2_beats": 5000}
FULL = {"seeds": 3, "seed": 3, "max_beats": None, "epochs": 8, "folds": 5, "ds2_beats": None}
GRID = 1 / (1 + np.exp(-np.linspace(np.log(0.005 / 0.995), np.log(0.9995 / 0.0005), 400)))
PLATEAU = 0.01


def _f1_at(y: np.ndarray, p: np.ndarray, grid: np.ndarray = GRID) -> np.ndarray:
    """F1 of ``p >= t`` for every ``t`` in ``grid`` (one sort, cumulative counts)."""
    order = np.argsort(-p)
    ps, ys = p[order], y[order].astype(bool)
    tp_cum = np.concatenate([[0], np.cumsum(ys)])
    flagged = np.searchsorted(-ps, -grid, side="right")  # beats with p >= t
    tp = tp_cum[flagged]
    return 2 * tp / np.maximum(flagged + ys.sum(), 1)


def _fold_curves(y: np.ndarray, p: np.ndarray, folds: np.ndarray) -> np.ndarray:
    return np.array([_f1_at(y[folds == k], p[folds == k]) for k in np.unique(folds)
                     if len(np.unique(y[folds == k])) == 2])


def _median_of_fold_best(y, p, folds) -> float:
    from search import best_threshold

    return best_threshold(y, p, folds)


def _pooled_best(y, p, folds) -> float:
    from search import best_threshold

    return best_threshold(y, p)


def _mean_curve_best(y, p, folds) -> float:
    return float(GRID[int(np.argmax(_fold_curves(y, p, folds).mean(axis=0)))])


def _mean_curve_plateau_middle(y, p, folds) -> float:
    curve = _fold_curves(y, p, folds).mean(axis=0)
    top = np.flatnonzero(curve >= curve.max() - PLATEAU)
    return float(GRID[int(top[len(top) // 2])])


def _median_curve_best(y, p, folds) -> float:
    return float(GRID[int(np.argmax(np.median(_fold_curves(y, p, folds), axis=0)))])


RULES: dict[str, Callable[[np.ndarray, np.ndarray, np.ndarray], float]] = {
    "median_of_fold_best": _median_of_fold_best, "pooled_best": _pooled_best,
    "mean_curve_best": _mean_curve_best, "mean_curve_plateau_middle": _mean_curve_plateau_middle,
    "median_curve_best": _median_curve_best}


def leave_one_fold_out(rule: Callable, y: np.ndarray, p: np.ndarray, folds: np.ndarray) -> dict[str, Any]:
    """Each fold's beats classified at the threshold ``rule`` chooses from the other folds: the pooled F1 of
    all beats so classified, each fold's own F1 and the thresholds."""
    from sklearn.metrics import f1_score

    flagged = np.zeros(len(y), bool)
    thresholds, per_fold = [], []
    for k in np.unique(folds):
        held = folds == k
        t = float(rule(y[~held], p[~held], folds[~held]))
        flagged[held] = p[held] >= t
        thresholds.append(t)
        per_fold.append(float(f1_score(y[held], flagged[held], zero_division=0)))
    return {"f1": float(f1_score(y, flagged, zero_division=0)), "fold_f1": per_fold, "thresholds": thresholds,
            "fold_f1_mean": float(np.mean(per_fold))}


def one_seed(config: dict, data, seed: int, folds: int, max_beats: int | None,
             ds2_beats: int | None = None) -> tuple[dict[str, Any], dict]:
    from sklearn.metrics import f1_score, precision_recall_curve, roc_auc_score

    from ecg_data import subsample_beats
    from search import fit_fold_models, predict

    train, test = data.search_part(), C.ds2_part(data.test_part(), ds2_beats, seed)
    if max_beats:
        train = train.subset(subsample_beats(train.y, train.groups, max_beats, seed=seed))
    C.check_inter_patient(train, test)
    ens = fit_fold_models(config, train, folds=folds, seed=seed)
    y, p, fold_of = train.y.astype(int), ens.oof, ens.fold_of[0]
    ds2 = predict(ens.model, config, test)
    C.clear_keras()
    rules = {}
    for name, rule in RULES.items():
        t = float(rule(y, p, fold_of))
        rules[name] = {"ds1_leave_one_fold_out": leave_one_fold_out(rule, y, p, fold_of), "threshold": t,
                       "ds2_f1": float(f1_score(test.y, ds2 >= t, zero_division=0))}
    ds2_curve = _f1_at(test.y.astype(int), ds2)
    prec, rec, thr = precision_recall_curve(test.y, ds2)  # the exact optimum, not the grid's
    best_f1 = 2 * prec * rec / np.maximum(prec + rec, 1e-12)
    i = int(np.argmax(best_f1[:-1]))
    out = {"seed": seed, "train_beats": int(len(train)), "test_beats": int(len(test)),
           "test_beats_total": int((data.split == "test").sum()), "rules": rules,
           "ds1_oof_roc_auc": float(roc_auc_score(y, p)), "ds2_roc_auc": float(roc_auc_score(test.y, ds2)),
           "ds2_optimal_f1_not_deployable": float(best_f1[i]), "ds2_optimal_threshold_not_deployable": float(thr[i]),
           "member_train_seconds": [f.seconds for f in ens.fits],
           "curves": {"ds1_mean_over_folds": _fold_curves(y, p, fold_of).mean(axis=0), "ds2": ds2_curve}}
    log.info("seed %d: DS1 leave-one-fold-out F1 %s; DS2 F1 %s (DS2-optimal %.3f)", seed,
             ", ".join(f"{n} {r['ds1_leave_one_fold_out']['f1']:.3f}" for n, r in rules.items()),
             ", ".join(f"{n} {r['ds2_f1']:.3f} at {r['threshold']:.3f}" for n, r in rules.items()),
             out["ds2_optimal_f1_not_deployable"])
    arrays = {f"seed{seed}_ds1_y": y.astype(np.int8), f"seed{seed}_ds1_oof": p.astype(np.float32),
              f"seed{seed}_ds1_fold": fold_of.astype(np.int8), f"seed{seed}_ds1_patient": train.groups.astype(str),
              f"seed{seed}_ds2_y": test.y.astype(np.int8), f"seed{seed}_ds2_prob": ds2.astype(np.float32)}
    return out, arrays


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per rule, medians over seeds; and how often each rule is the best on DS1 leave-one-fold-out."""
    med = {name: {"ds1_leave_one_fold_out_f1": float(np.median([r["rules"][name]["ds1_leave_one_fold_out"]["f1"]
                                                               for r in runs])),
                  "threshold": float(np.median([r["rules"][name]["threshold"] for r in runs])),
                  "threshold_range": [float(min(r["rules"][name]["threshold"] for r in runs)),
                                      float(max(r["rules"][name]["threshold"] for r in runs))],
                  "ds2_f1": float(np.median([r["rules"][name]["ds2_f1"] for r in runs]))} for name in RULES}
    chosen = max(RULES, key=lambda n: med[n]["ds1_leave_one_fold_out_f1"])
    return {"rules": med, "chosen_on_ds1": chosen,
            "ds2_roc_auc": float(np.median([r["ds2_roc_auc"] for r in runs])),
            "ds2_optimal_f1_not_deployable": float(np.median([r["ds2_optimal_f1_not_deployable"] for r in runs]))}


def plot(result: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = result["runs"]
    fig, axes = plt.subplots(1, len(runs), figsize=(5.2 * len(runs), 5.4), squeeze=False)
    colours = dict(zip(RULES, ("k", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e")))
    # rules that choose the same threshold draw one line over another: a line style of its own per rule keeps each
    # one visible (a marker on the line would read as an F1 value)
    styles = dict(zip(RULES, ("--", ":", (0, (5, 3)), "-.", (0, (1, 3)))))
    for ax, r in zip(axes[0], runs):
        ax.plot(GRID, r["curves"]["ds1_mean_over_folds"], label="DS1, mean over folds (out of fold)")
        ax.plot(GRID, r["curves"]["ds2"], color="#d62728", label=f"{C.ds2_name(r)}, average of the fold models")
        for k, (name, rr) in enumerate(r["rules"].items()):
            ax.axvline(rr["threshold"], color=colours[name], ls=styles[name], lw=1.4 - 0.15 * k,
                       label=f"{name} {rr['threshold']:.3f} (DS1 LOFO F1 {rr['ds1_leave_one_fold_out']['f1']:.3f})")
        ax.set_xscale("logit")
        ax.set_xlabel("decision threshold (logit scale)")
        ax.set_ylabel("F1 (abnormal)")
        ax.set_title(f"seed {r['seed']}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16))  # below: inside it hid the tails
    return C.save_figure(fig, path)


def parse_args(argv=None):
    ap = C.parser(__doc__)
    ap.add_argument("--quick", action="store_true", help=f"smoke run: {QUICK}")
    C.add_config_option(ap)
    ap.add_argument("--seeds", type=C.at_least(1), default=None, help="repeats (full 3, quick 1); medians reported")
    ap.add_argument("--seed", type=C.at_least(0), default=None, help="first seed (full 3, quick 0)")
    ap.add_argument("--folds", type=C.at_least(3), default=None,
                    help="patient-grouped DS1 folds (full 5); leave-one-fold-out needs at least 3")
    ap.add_argument("--epochs", type=C.at_least(1), default=None, help="override the config's epochs (full 8, quick 1)")
    ap.add_argument("--max-beats", type=C.at_least(1), default=None, help="DS1 beats drawn by patient and class (full: all)")
    C.add_ds2_beats_option(ap, QUICK["ds2_beats"])
    return C.parse_mode(ap, argv, QUICK, FULL)


def main(argv=None) -> int:
    args = parse_args(argv)
    result, t_start = C.start("threshold_rules", args.mode, args.verbose, args.out_dir)
    from ecg_data import load_dataset

    config, path = C.run_config(args)
    seeds = [args.seed + i for i in range(args.seeds)]
    result.update({"config": config, "config_source": str(path), "grid": GRID, "plateau_f1": PLATEAU,
                   "settings": {"seeds": seeds, "folds": args.folds, "epochs": args.epochs,
                                "max_beats": args.max_beats, "ds2_beats": args.ds2_beats or "all"}})
    data = load_dataset("mitdb", fs=180.0, window=max(256, int(config["input_length"])))
    result["data"] = data.summary()
    partial = args.out_dir / f"threshold_rules_{args.mode}.partial.json"
    arrays: dict[str, np.ndarray] = {}

    def one(seed: int) -> dict[str, Any]:
        out, a = one_seed(config, data, seed, args.folds, args.max_beats, args.ds2_beats)
        arrays.update(a)
        args.out_dir.mkdir(parents=True, exist_ok=True)  # --out-dir was only checked to be creatable
        np.savez_compressed(args.out_dir / f"threshold_rules_{args.mode}_predictions.npz", **arrays)
        return out

    result["runs"] = C.seed_loop(seeds, one, partial, result, t_start)
    result["medians"] = summarise(result["runs"])
    C.finish(result, time.perf_counter() - t_start)
    out = C.write_json(args.out_dir / f"threshold_rules_{args.mode}.json", result)
    C.drop_partial(partial)
    png = plot(result, args.out_dir / f"threshold_rules_{args.mode}.png")
    m = result["medians"]
    print(f"threshold rules ({args.mode}, seeds {seeds}, {args.folds} folds, {args.epochs} epochs), medians over seeds:")
    for name, s in m["rules"].items():
        print(f"  {name:26s} DS1 leave-one-fold-out F1 {s['ds1_leave_one_fold_out_f1']:.3f}; threshold "
              f"{s['threshold']:.3f} ({s['threshold_range'][0]:.3f}-{s['threshold_range'][1]:.3f}); DS2 F1 {s['ds2_f1']:.3f}")
    print(f"  chosen on DS1: {m['chosen_on_ds1']}; DS2 ROC-AUC {m['ds2_roc_auc']:.3f}, DS2-optimal F1 "
          f"{m['ds2_optimal_f1_not_deployable']:.3f} (not deployable)")
    print(f"wrote {out}, {png} and the predictions beside them")
    return 0


if __name__ == "__main__":
    C.run(main)
