#!/usr/bin/env python
"""Edge models: the Pareto front of a latency-aware study, each member exported in all four TFLite modes.

1. **study**: a multi-objective Optuna study through ``search.run_search`` (the code path of ``ecg-automl
   search --objective f1,latency,size``) on MIT-BIH DS1 with ``spaces/edge.yaml``: patient-grouped folds over a
   stratified ``--max-beats`` subsample; validation F1 (maximised), the int8 latency gate's Raspberry Pi 4
   estimate (minimised; a monotonic function of the untrained int8 model's 1-thread host latency) and the int8
   file size (minimised; measured by the same gate, so free; ``--objectives f1,latency`` drops it), optionally
   a latency budget. Optuna in SQLite and MLflow (SQLite store,
   file artifacts) under ``--work-dir``. Or ``--study NAME --storage URL``: an existing study, as it is.
2. **front**: the study's Pareto-optimal completed trials (``search.pareto.pareto_table``); at most
   ``--max-front`` of them, spread evenly along the latency axis when the front is larger.
3. **each member**: its config retrained on DS1 as the search's final model is (``search.fit`` on every DS1
   beat with the study's seed, as ``final_test`` and ``ecg-automl export`` do; ``--final-beats`` draws a
   stratified subsample instead), then for each of ``fp32``, ``dynamic``, ``fp16``, ``int8``
   (``ecg_automl.tflite.convert``; int8 calibrated on 500 DS1 windows as ``export_trial`` does): file size,
   host latency at ``--threads`` (default 1) LiteRT threads (``time_invocations``, the loop of
   ``measure_latency``: median, p90, p5; and ``host_ms``, the host's slow stretches divided out with the gate's
   ``reference_clock``), the Pi 4 estimate (``estimate_pi4_ms`` of ``host_ms``, dtype
   int8 for int8 and float32 otherwise, as ``export_trial`` does), and DS2 F1 / sensitivity / PPV / ROC-AUC of
   the ``.tflite`` run one window at a time with ``TFLiteModel`` at the threshold the study chose on the DS1
   validation folds (the trial's ``threshold``, as the final test and the export use). The retrained Keras
   model on the same DS2 beats is the reference (``verify``: decision agreement, max |dprob|).

Writes ``edge_<mode>.json`` and ``edge_<mode>.png`` (the study's trials in validation-F1 vs latency space with
the front; DS2 F1 vs host latency and vs size per member and export mode) to ``--out-dir``.

    python benchmarks/edge.py --quick          # 4 trials, 2 folds, 1 epoch, 2 members, small samples (~3-4 min)
    python benchmarks/edge.py                  # 14 trials, 2 folds x 3,000 beats, the space's epochs, all DS1/DS2
                                               # (~12 min: 714 s on 2 cores, results/edge_full.json)
    python benchmarks/edge.py --study NAME --storage sqlite:///path/optuna.db     # an existing study

Data: ``$ECG_AUTOML_DATA/mitdb`` (or the user cache), preprocessed arrays cached in ``$ECG_AUTOML_CACHE``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

log = logging.getLogger("benchmarks.edge")

QUICK = {"trials": 4, "folds": 2, "max_beats": 1500, "epochs": 1, "final_beats": 3000, "ds2_beats": 3000,
         "max_front": 2, "runs": 100}
FULL = {"trials": 14, "folds": 2, "max_beats": 3000, "epochs": None, "final_beats": None, "ds2_beats": None,
        "max_front": 4, "runs": 500}
MODES = ("fp32", "dynamic", "fp16", "int8")
MODE_MARKERS = {"fp32": "o", "dynamic": "s", "fp16": "^", "int8": "D"}
MODE_LINES = {"fp32": "-", "dynamic": "--", "fp16": ":", "int8": "-."}
#: Windows for int8 calibration (as ``ecg_automl.tflite.export.export_trial`` draws them).
CALIBRATION_WINDOWS = 500


# ---------------------------------------------------------------------------------------------------------
# study
# ---------------------------------------------------------------------------------------------------------
def run_study(args, work: Path) -> tuple[Any, Any, str, str, float]:
    """Run the latency-aware study (``run_search``, as ``ecg-automl search`` does); returns the study, its
    settings, name, storage URL and wall seconds."""
    from ecg_automl.cli import parse_objectives
    from search import StudySettings, TrackingConfig, run_search
    from spaces import SearchSpace

    space = SearchSpace.load(args.space)
    if args.epochs is not None:
        space = space.with_overrides(epochs=args.epochs)
    settings = StudySettings(dataset="mitdb", space_yaml=space.to_yaml(), folds=args.folds, metric="f1",
                             seed=args.seed, max_beats=args.max_beats, records=args.records,
                             objectives=parse_objectives(args.objectives), latency_budget_ms=args.latency_budget_ms,
                             latency_mode="int8")
    name = f"edge-{args.mode}-s{args.seed}-{time.strftime('%Y%m%d-%H%M%S')}"
    storage = f"sqlite:///{work / 'optuna.db'}"
    tracking = TrackingConfig(f"sqlite:///{work / 'mlflow.db'}", (work / "mlartifacts").as_uri(), "edge-benchmark")
    log.info("study %s: %d trials, %d folds x %s beats, objectives %s, space %s (%s epochs)", name, args.trials,
             args.folds, args.max_beats or "all", settings.objectives, args.space, space.params.get("epochs"))
    t0 = time.perf_counter()
    result = run_search(name, settings, n_trials=args.trials, storage=storage, tracking=tracking, final=False,
                        out_dir=work / "runs", progress=False, print_fn=lambda s: log.info("%s", s))
    wall = time.perf_counter() - t0
    if result.tracking_failures:
        log.warning("%d MLflow calls failed: %s", len(result.tracking_failures), result.tracking_failures[:3])
    return result.study, settings, name, storage, wall


def load_study(name: str, storage: str) -> tuple[Any, Any]:
    """An existing multi-objective study with a latency objective, and its stored settings."""
    from search import open_study

    study, settings = open_study(name, storage, None, heartbeat=None)
    if "latency" not in settings.objectives or len(settings.objectives) < 2:
        raise SystemExit(f"study {name!r} has objectives {settings.objectives}: the edge benchmark needs a "
                         "multi-objective study with a latency objective (ecg-automl search --objective f1,latency)")
    return study, settings


def trial_rows(study, objectives: list[str]) -> list[dict[str, Any]]:
    """Every trial: state, objective values by name and what the latency gate measured before training."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        ua = t.user_attrs
        row: dict[str, Any] = {"number": t.number, "state": t.state.name,
                               "values": dict(zip(objectives, t.values)) if t.values is not None else None}
        for key in ("latency_ms", "host_ms", "host_median_ms", "host_p90_ms", "pi4_estimate_ms", "size_kb", "params", "macs",
                    "threshold", "gate_seconds", "prune_reason", "fail_reason"):
            if key in ua:
                row[key] = ua[key]
        if t.datetime_start is not None and t.datetime_complete is not None:
            row["seconds"] = (t.datetime_complete - t.datetime_start).total_seconds()
        rows.append(row)
    return rows


def dominates(a: list[float], b: list[float], directions: list[str]) -> bool:
    """Whether objective vector ``a`` Pareto-dominates ``b`` (``directions``: maximize/minimize per objective)."""
    better_or_equal = all((x >= y) if d == "maximize" else (x <= y) for x, y, d in zip(a, b, directions))
    strictly = any((x > y) if d == "maximize" else (x < y) for x, y, d in zip(a, b, directions))
    return better_or_equal and strictly


def spread(front: list[dict[str, Any]], k: int, key: str = "latency") -> list[dict[str, Any]]:
    """At most ``k`` front rows, evenly spaced along ``key`` (both ends kept), in ascending ``key``."""
    rows = sorted(front, key=lambda r: (r[key], -r["quality"]))
    if len(rows) <= k:
        return rows
    idx = np.unique(np.round(np.linspace(0, len(rows) - 1, k)).astype(int))
    return [rows[i] for i in idx]


# ---------------------------------------------------------------------------------------------------------
# one front member: retrain, export, time, test on DS2
# ---------------------------------------------------------------------------------------------------------
def _latency(flat: bytes, runs: int, threads: int, mode: str) -> dict[str, float]:
    """Host latency of single-window inference: median, p90, p5 and mean (ms) of ``runs`` timed invokes, and
    ``host_ms``: the same model with the host's slow stretches divided out (the gate's and export's figure)."""
    from ecg_automl.tflite import time_invocations
    from ecg_automl.tflite.gate import reference_clock

    times = time_invocations(flat, n_runs=runs, warmup=20, threads=threads)
    steady = reference_clock(mode, threads).measure(flat, rounds=max(1, runs // 10))
    return {"median_ms": float(np.median(times)), "p90_ms": float(np.percentile(times, 90)),
            "p5_ms": float(np.percentile(times, 5)), "mean_ms": float(times.mean()), "n_runs": int(runs),
            "threads": int(threads), "host_ms": steady["host_ms"], "host_slowdown": steady["slowdown"]}


def _rates(y: np.ndarray, prob: np.ndarray, threshold: float) -> dict[str, float]:
    """Abnormal-class metrics under the benchmark's names (sensitivity, PPV, ...)."""
    from search import binary_metrics

    m = binary_metrics(y, prob, threshold)
    return {"f1": m["f1"], "sensitivity": m["recall"], "ppv": m["precision"], "specificity": m["specificity"],
            "accuracy": m["accuracy"], "roc_auc": m["roc_auc"], "threshold": float(threshold), "n": int(len(y))}


def evaluate_member(row: dict[str, Any], trial, settings, data, ds2, *, final_beats: int | None,
                    epochs: int | None, runs: int, threads: int, tflite_dir: Path) -> dict[str, Any]:
    """Retrain one front member on DS1, export it in every mode, time each file and test it on ``ds2``."""
    from ecg_automl.tflite import TFLiteModel, convert
    from ecg_automl.tflite.pi_estimate import estimate_pi4_ms
    from ecg_automl.tflite.stats import model_stats
    from ecg_automl.tflite.verify import verify
    from ecg_data import subsample_beats
    from search import fit, predict
    from spaces import model_inputs

    config = dict(trial.user_attrs["config"])
    if epochs is not None:
        config["epochs"] = int(epochs)
    threshold = float(trial.user_attrs.get("threshold", 0.5))
    search = data.search_part()
    train = search
    if final_beats:
        train = search.subset(subsample_beats(search.y, search.groups, final_beats, seed=settings.seed))
    log.info("trial %d: retraining on %d DS1 beats (%d patients), %d epochs; threshold %.3f (DS1 validation folds)",
             trial.number, len(train), len(np.unique(train.groups)), config["epochs"], threshold)
    res = fit(config, train, None, seed=settings.seed)
    out: dict[str, Any] = {
        "trial": trial.number, "config": config, "threshold": threshold, **model_stats(res.model),
        "study": {"objectives": {k: row[k] for k in settings.objectives},
                  "val_f1": row["quality"], "latency_objective_ms": row["latency"],
                  "gate_host_median_ms": trial.user_attrs.get("host_median_ms"),
                  "gate_host_ms": trial.user_attrs.get("host_ms"),
                  "gate_size_kb": trial.user_attrs.get("size_kb"),
                  "mean_metrics": trial.user_attrs.get("mean_metrics", {})},
        "train": {"beats": len(train), "patients": int(len(np.unique(train.groups))), "epochs": int(config["epochs"]),
                  "seconds": res.seconds, "beats_per_s": res.beats_per_s, "seed": settings.seed},
    }
    t0 = time.perf_counter()
    keras_prob = predict(res.model, config, ds2)
    out["keras"] = {"ds2": _rates(ds2.y, keras_prob, threshold), "predict_seconds": time.perf_counter() - t0}

    rng = np.random.default_rng(settings.seed)  # calibration windows as export_trial draws them
    rep_idx = rng.choice(len(search), size=min(CALIBRATION_WINDOWS, len(search)), replace=False)
    rep = model_inputs(config, search.X[rep_idx], search.rr[rep_idx])
    x_ds2 = model_inputs(config, ds2.X, ds2.rr)
    modes: dict[str, Any] = {}
    for mode in MODES:
        t0 = time.perf_counter()
        flat = convert(res.model, config, mode, rep if mode == "int8" else None)
        convert_s = time.perf_counter() - t0
        path = tflite_dir / f"trial{trial.number}-{mode}.tflite"
        path.write_bytes(flat)
        lat = _latency(flat, runs, threads, mode)
        dtype = "int8" if mode == "int8" else "float32"
        t0 = time.perf_counter()
        prob = TFLiteModel(flat, threads=threads).predict(x_ds2)
        predict_s = time.perf_counter() - t0
        check = verify(keras_prob, prob, ds2.y, threshold, mode)
        modes[mode] = {
            "size_bytes": len(flat), "size_kb": len(flat) / 1024, "path": str(path), "convert_seconds": convert_s,
            "latency": lat, "pi4_dtype": dtype,
            "pi4_estimate_ms": estimate_pi4_ms(lat["host_ms"], dtype),
            "pi4_estimate_from_median_ms": estimate_pi4_ms(lat["median_ms"], dtype),
            "pi4_estimate_from_p5_ms": estimate_pi4_ms(lat["p5_ms"], dtype),
            "ds2": _rates(ds2.y, prob, threshold),
            "vs_keras": {k: check[k] for k in ("decision_agreement", "max_abs_dprob", "mean_abs_dprob", "f1_drop",
                                               "flagged")},
            "predict_seconds": predict_s, "predict_ms_per_beat": 1e3 * predict_s / max(len(ds2), 1),
        }
        m = modes[mode]
        log.info("  trial %d %-7s %6.1f KB  host %.4f / %.4f ms  Pi 4 est. %.3f ms  DS2 F1 %.3f AUC %.3f  "
                 "agreement %.4f  (convert %.1f s, DS2 pass %.1f s)", trial.number, mode, m["size_kb"],
                 lat["median_ms"], lat["p90_ms"], m["pi4_estimate_ms"], m["ds2"]["f1"], m["ds2"]["roc_auc"],
                 check["decision_agreement"], convert_s, predict_s)
    out["modes"] = modes
    C.clear_keras()
    return out


# ---------------------------------------------------------------------------------------------------------
# plot
# ---------------------------------------------------------------------------------------------------------
def plot(result: dict[str, Any], path: Path) -> Path:
    """Three panels: the study in validation-F1 vs latency space, DS2 F1 vs host latency, DS2 F1 vs size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    members = result["members"]
    palette = [plt.get_cmap("tab10")(i) for i in (0, 1, 2, 4, 5, 6, 8, 9)]  # no red: red marks the front
    colors = {m["trial"]: palette[i % len(palette)] for i, m in enumerate(members)}
    fig, axes = plt.subplots(1, 3, figsize=(18, 6.6), gridspec_kw={"width_ratios": [1, 1.15, 1.15]})

    # (a) the study
    ax = axes[0]
    trials = result["trials"]
    done = [t for t in trials if t["state"] == "COMPLETE" and t["values"]]
    front = {r["trial"] for r in result["front"]}
    other = [t for t in done if t["number"] not in front]
    ax.scatter([t["values"]["latency"] for t in other], [t["values"]["quality"] for t in other], s=28, c="#b0b7bf",
               label=f"completed, dominated ({len(other)})", zorder=2)
    rejected = [t for t in trials if t["state"] == "PRUNED" and "latency_ms" in t]
    if rejected:
        ax.scatter([t["latency_ms"] for t in rejected], [0.0] * len(rejected), marker="x", c="#b0b7bf", s=30,
                   label=f"rejected by the latency budget, no F1 ({len(rejected)})", zorder=2)
    fr = sorted((t for t in done if t["number"] in front), key=lambda t: t["values"]["latency"])
    three_d = "size" in result["study"]["objectives"]
    if fr:
        xs, ys = [], []
        for t in fr:  # 2-D: the attainment staircase; 3-D (size too): a plain line in latency order
            if xs and not three_d:
                xs.append(t["values"]["latency"])
                ys.append(ys[-1])
            xs.append(t["values"]["latency"])
            ys.append(t["values"]["quality"])
        ax.plot(xs, ys, ":" if three_d else "-", c="#d62728", lw=1, alpha=0.6, zorder=3)
        ax.scatter([t["values"]["latency"] for t in fr], [t["values"]["quality"] for t in fr], s=40, c="#d62728",
                   label=f"Pareto front ({len(fr)})" + (", 3 objectives" if three_d else ""), zorder=4)
        for t in fr:
            ax.annotate(f"{t['number']}" + (f" ({t['values']['size']:.1f} KB)" if three_d else ""),
                        (t["values"]["latency"], t["values"]["quality"]), fontsize=8, xytext=(4, -10),
                        textcoords="offset points")
    for m in members:
        s = m["study"]
        ax.scatter([s["latency_objective_ms"]], [s["val_f1"]], s=170, facecolors="none",
                   edgecolors=[colors[m["trial"]]], linewidths=2, zorder=5)
    failed = sum(t["state"] == "FAIL" for t in trials)
    ax.set_xlabel("latency objective: Pi 4 estimate of the untrained int8 model (ms)")
    ax.set_ylabel("validation F1 (mean over DS1 patient folds, at the threshold chosen on them)")
    ax.set_title(f"study {result['study']['name']}\n{len(trials)} trials: {len(done)} complete, "
                 f"{len(rejected)} rejected, {failed} failed; ringed = exported"
                 + ("\n(3-D front: a member may look dominated in this 2-D view; labels give the size\n"
                    "objective, the gate's int8 size of the untrained model, not the exported file's)"
                    if three_d else ""), fontsize=9)
    ax.legend(fontsize=7, loc="best")
    ax.margins(0.1)
    ax.grid(alpha=0.3)

    # (b), (c): DS2 F1 of every member and mode against host latency and file size; the members of one
    # mode are connected in front order (ascending latency objective), as in (a)
    def xkey_of(m: dict, mode: str, xkey: str) -> float:
        e = m["modes"][mode]
        # the figure the Pi estimate (top axis) is made from: the host's slowdown divided out when measured
        return e["latency"].get("host_ms", e["latency"]["median_ms"]) if xkey == "latency" else e["size_kb"]

    def panel(ax, xkey: str, xlabel: str) -> None:
        for mode in MODES:
            ax.plot([xkey_of(m, mode, xkey) for m in members], [m["modes"][mode]["ds2"]["f1"] for m in members],
                    MODE_LINES[mode], c="#777777", lw=0.8, alpha=0.5, zorder=2)
            for m in members:
                lat = m["modes"][mode]["latency"]
                x0 = xkey_of(m, mode, xkey)
                xerr = [[0], [max(lat["p90_ms"] - x0, 0.0)]] if xkey == "latency" else None
                ax.errorbar([xkey_of(m, mode, xkey)], [m["modes"][mode]["ds2"]["f1"]], xerr=xerr,
                            fmt=MODE_MARKERS[mode], ms=7, color=colors[m["trial"]], mec="black", mew=0.6,
                            elinewidth=1, capsize=2, zorder=4)
        for m in members:
            x = max(xkey_of(m, mode, xkey) for mode in MODES)
            if xkey == "latency":  # above the member's highest point, clear of the p90 bars drawn to the right
                y, offset = max(m["modes"][mode]["ds2"]["f1"] for mode in MODES), (2, 6)
            else:
                y, offset = float(np.mean([m["modes"][mode]["ds2"]["f1"] for mode in MODES])), (8, -3)
            ax.annotate(f"trial {m['trial']}", (x, y), fontsize=8, xytext=offset, textcoords="offset points",
                        color=colors[m["trial"]], fontweight="bold")
            ax.axhline(m["keras"]["ds2"]["f1"], c=colors[m["trial"]], lw=0.8, alpha=0.35, zorder=1)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(f"DS2 F1 (abnormal; {result['settings']['ds2_beats_used']} beats, DS1-fold threshold)")
        ax.margins(x=0.15, y=0.08)
        ax.grid(alpha=0.3)

    st = result["settings"]
    panel(axes[1], "latency", f"host latency per beat, the host's slowdown divided out (bar to the raw p90), "
                              f"{st['threads']} LiteRT thread (ms)")
    axes[1].set_title("DS2 F1 of each export vs its host latency", fontsize=9)
    pi = _pi_axis()
    if pi is not None:
        sec = axes[1].secondary_xaxis("top", functions=pi)
        sec.set_xlabel("Raspberry Pi 4 estimate, 1 thread (ms; uncertain ~1.5x, docs/PI_LATENCY.md)", fontsize=8)
    panel(axes[2], "size", "TFLite file size (KB)")
    axes[2].set_title("DS2 F1 of each export vs its file size", fontsize=9)
    handles = [Line2D([], [], marker=MODE_MARKERS[m], ls=MODE_LINES[m], c="#777777", mfc="white", mec="black",
                      label=f"{m} export") for m in MODES]
    handles += [Line2D([], [], marker="o", ls="", c=colors[m["trial"]], label=f"trial {m['trial']} "
                       f"({m['params']:,} params)") for m in members]
    handles += [Line2D([], [], c="#999999", lw=0.8, alpha=0.6, label="Keras DS2 F1 (faint line, member colour)")]
    fig.legend(handles=handles, fontsize=8, loc="lower center", ncol=min(len(handles), 6), frameon=False)
    fig.suptitle(f"edge models ({result['mode']} mode): Pareto front of a latency-aware study on MIT-BIH DS1, "
                 f"each member retrained on {st['retrain_beats_label']} and exported 4 ways; "
                 f"{result['machine']['lscpu_model_name']}, load {result['machine']['loadavg_start'][0]:.1f}",
                 fontsize=10)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _pi_axis():
    """Host ms <-> Pi 4 estimate ms for a secondary axis, when one single-thread fit serves every dtype."""
    from ecg_automl.tflite.pi_estimate import estimate_pi4_ms

    probe = [estimate_pi4_ms(h, d) for h in (0.05, 1.0) for d in ("float32", "int8")]
    if not (np.isclose(probe[0], probe[1]) and np.isclose(probe[2], probe[3])):
        return None  # dtype-specific fits: no single axis
    b = np.log(probe[2] / probe[0]) / np.log(1.0 / 0.05)
    a = np.log(probe[2])

    def fwd(h):
        return np.exp(a + b * np.log(np.clip(h, 1e-9, None)))

    def inv(p):
        return np.exp((np.log(np.clip(p, 1e-9, None)) - a) / b)

    return fwd, inv


# ---------------------------------------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------------------------------------
def parse_args(argv=None) -> argparse.Namespace:
    """Command-line options, with quick/full defaults filled in."""
    ap = C.parser(__doc__)
    ap.add_argument("--quick", action="store_true",
                    help=f"smoke mode: --trials {QUICK['trials']}, --folds {QUICK['folds']}, --max-beats "
                         f"{QUICK['max_beats']}, --epochs {QUICK['epochs']}, --final-beats {QUICK['final_beats']}, "
                         f"--ds2-beats {QUICK['ds2_beats']}, --max-front {QUICK['max_front']}")
    ap.add_argument("--study", default=None, help="use this existing multi-objective study instead of running one")
    ap.add_argument("--storage", default=None, help="the study's storage URL (with --study)")
    ap.add_argument("--space", type=C.space_file, default=str(C.ROOT / "spaces" / "edge.yaml"),
                    help="search space (default spaces/edge.yaml)")
    ap.add_argument("--objectives", default="f1,latency,size",
                    help="study objectives as for `ecg-automl search --objective` (default f1,latency,size: "
                         "NSGA-II; f1,latency: TPE; a 12-trial f1,latency study here had a front of only 2 trials)")
    ap.add_argument("--latency-budget-ms", type=C.above_zero, default=None,
                    help="reject candidates whose Pi 4 estimate (int8) is over this before training (default none)")
    ap.add_argument("--trials", type=C.at_least(1), default=None, help=f"finished trials of the study (full {FULL['trials']})")
    ap.add_argument("--folds", type=C.at_least(2), default=None, help=f"patient-grouped folds per trial (full {FULL['folds']})")
    ap.add_argument("--max-beats", type=C.at_least(1), default=None,
                    help=f"DS1 beats per trial, stratified by patient and class (full {FULL['max_beats']})")
    ap.add_argument("--epochs", type=C.at_least(1), default=None, help="override the space's epochs (quick: 1)")
    ap.add_argument("--seed", type=C.at_least(0), default=0, help="study seed (sampler, folds, subsamples, retraining)")
    ap.add_argument("--max-front", type=C.at_least(1), default=None,
                    help=f"front members to export, spread along latency (full {FULL['max_front']})")
    ap.add_argument("--final-beats", type=C.at_least(1), default=None,
                    help="retrain each member on this many DS1 beats (stratified) instead of all DS1, the search's "
                         f"final-model policy (quick {QUICK['final_beats']})")
    C.add_ds2_beats_option(ap, QUICK["ds2_beats"])
    ap.add_argument("--runs", type=C.at_least(1), default=None, help=f"timed invokes per model (full {FULL['runs']})")
    ap.add_argument("--threads", type=C.at_least(1), default=1, help="LiteRT threads for latency and DS2 inference")
    ap.add_argument("--records", default=None, help="comma-separated MIT-BIH records (default: all 44 non-paced)")
    ap.add_argument("--work-dir", type=C.out_dir, default=None,
                    help="Optuna/MLflow stores and .tflite files (default OUT_DIR/_edge_work, git-ignored)")
    ap.add_argument("--out-dir", type=C.out_dir, default=C.DEFAULT_OUT, help=C.OUT_HELP)
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    if args.study is not None and not args.storage:
        ap.error("--study needs --storage (e.g. sqlite:///runs/optuna.db)")
    C.apply_mode(args, QUICK, FULL, parser=ap, argv=argv)
    args.records = [r.strip() for r in args.records.split(",")] if args.records else None
    return args


def main(argv=None) -> int:
    """Run the benchmark; returns the exit code."""
    args = parse_args(argv)
    C.quiet_tensorflow()
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    logging.basicConfig(level=logging.INFO if not args.verbose else logging.DEBUG,
                        format="%(asctime)s %(message)s", datefmt="%H:%M:%S", stream=sys.stderr)
    for name in ("tensorflow", "alembic", "mlflow"):
        logging.getLogger(name).setLevel(logging.ERROR)
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    t_start = time.perf_counter()
    result = C.header("edge", args.mode)
    C.warn_if_exists(args.out_dir / f"edge_{args.mode}.json")

    from search.pareto import pareto_table
    from search.study import load_study_data
    from spaces import SearchSpace

    work = (args.work_dir or args.out_dir / "_edge_work").resolve()
    work.mkdir(parents=True, exist_ok=True)
    if args.study:
        study, settings = load_study(args.study, args.storage)
        name, storage, study_s = args.study, args.storage, None
        log.info("using study %s (%s): %d trials", name, storage, len(study.trials))
    else:
        study, settings, name, storage, study_s = run_study(args, work)
    objectives = list(settings.objectives)
    directions = [d.name.lower() for d in study.directions]
    space = SearchSpace.from_yaml(settings.space_yaml, f"study {name}")

    t0 = time.perf_counter()
    data = load_study_data(settings, space)
    load_s = time.perf_counter() - t0
    ds2_all = data.test_part()
    ds2 = C.ds2_part(ds2_all, args.ds2_beats, settings.seed)
    n_ds1 = int((data.split == "search").sum())
    retrain = (f"{args.final_beats} DS1 beats (stratified subsample)" if args.final_beats and args.final_beats < n_ds1
               else f"all {n_ds1} DS1 beats")

    trials = trial_rows(study, objectives)
    front = pareto_table(study)
    for r in front:
        r.setdefault("quality", r.get(objectives[0]))
    chosen = spread(front, args.max_front)
    log.info("Pareto front: %d trial(s) %s; exporting %s", len(front), [r["trial"] for r in front],
             [r["trial"] for r in chosen])
    if not chosen:
        raise SystemExit(f"study {name!r} has no completed trial: no Pareto front to export")
    # self-check: no completed trial dominates a front member
    completed = [t for t in trials if t["state"] == "COMPLETE" and t["values"]]
    dominated = [r["trial"] for r in front
                 if any(dominates([t["values"][o] for o in objectives], [r[o] for o in objectives], directions)
                        for t in completed)]

    result.update({
        "study": {"name": name, "storage": storage, "work_dir": str(work), "reused": bool(args.study),
                  "objectives": objectives, "directions": directions, "settings":
                      {k: v for k, v in settings.to_dict().items() if k != "space_yaml"},
                  "space_yaml": settings.space_yaml, "run_search_seconds": study_s,
                  "mlflow": None if args.study else {"tracking_uri": f"sqlite:///{work / 'mlflow.db'}",
                                                     "experiment": "edge-benchmark"},
                  "states": {s: sum(t["state"] == s for t in trials) for s in sorted({t["state"] for t in trials})}},
        "settings": {"trials": len(trials), "folds": settings.folds, "max_beats": settings.max_beats,
                     "epochs": int(space.params["epochs"]) if not isinstance(space.params["epochs"], dict) else None,
                     "epochs_override": args.epochs, "seed": settings.seed, "max_front": args.max_front,
                     "retrain_beats": args.final_beats or "all DS1", "retrain_beats_label": retrain,
                     "retrain_policy": ("as the search's final model (search.final.final_test) and `ecg-automl "
                                        "export` of a non-final trial: search.fit(config, every DS1 beat, seed=study "
                                        "seed)" if not args.final_beats else
                                        "search.fit on a stratified (patient, class) DS1 subsample, seed=study seed"),
                     "ds2_beats": args.ds2_beats or "all", "ds2_beats_used": len(ds2), "ds2_beats_total": len(ds2_all),
                     "ds2_sample": ("all DS2 beats" if len(ds2) == len(ds2_all) else
                                    f"ecg_data.subsample_beats(DS2, {args.ds2_beats}, seed={settings.seed}): "
                                    "stratified by patient and class"),
                     "threshold": "the trial's threshold: the median over its DS1 validation folds of each fold's F1-best threshold",
                     "runs": args.runs, "warmup": 20, "threads": args.threads, "modes": list(MODES),
                     "calibration_windows": CALIBRATION_WINDOWS, "fs": space.fs, "window": space.window,
                     "records": settings.records or "all 44 non-paced", "latency_budget_ms": settings.latency_budget_ms,
                     "pi4_estimate": ("estimate_pi4_ms(host_ms, 'int8' for int8 else 'float32'), Pi 1 thread, "
                                      "as ecg-automl export: host_ms is the latency with the host's slow stretches "
                                      "divided out (the gate's reference_clock, docs/PI_LATENCY.md); "
                                      "pi4_estimate_from_median_ms / _from_p5_ms use the raw median / 5th percentile")},
        "data": {**data.summary(), "load_seconds": load_s, "cache_hit": bool(data.info.get("cache", {}).get("hit"))},
        "trials": trials, "front": front, "front_dominated_by_a_completed_trial": dominated,
    })
    if dominated:
        log.error("front members %s are dominated by a completed trial", dominated)

    tflite_dir = work / name
    tflite_dir.mkdir(parents=True, exist_ok=True)
    by_number = {t.number: t for t in study.get_trials(deepcopy=False)}
    members, t_members = [], time.perf_counter()
    for row in chosen:
        members.append(evaluate_member(row, by_number[row["trial"]], settings, data, ds2,
                                       final_beats=args.final_beats, epochs=args.epochs if args.study else None,
                                       runs=args.runs, threads=args.threads, tflite_dir=tflite_dir))
    result["members"] = members
    result["timing"] = {"run_search_seconds": study_s, "data_load_seconds": load_s,
                        "members_seconds": time.perf_counter() - t_members,
                        "per_member_train_seconds": [m["train"]["seconds"] for m in members],
                        "ds2_tflite_pass_seconds_median": float(np.median(
                            [e["predict_seconds"] for m in members for e in m["modes"].values()]))}
    result["table"] = table_rows(result)

    png = plot(result, args.out_dir / f"edge_{args.mode}.png")
    result["plot"] = str(png)
    C.finish(result, time.perf_counter() - t_start)
    js = C.write_json(args.out_dir / f"edge_{args.mode}.json", result)
    print_summary(result)
    print(f"wrote {js} and {png}")
    return 1 if dominated else 0


def table_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """One flat row per (member, mode): the numbers of the docs table."""
    rows = []
    for m in result["members"]:
        for mode in MODES:
            e = m["modes"][mode]
            rows.append({"trial": m["trial"], "mode": mode, "params": m["params"], "size_kb": e["size_kb"],
                         "host_median_ms": e["latency"]["median_ms"], "host_p90_ms": e["latency"]["p90_ms"],
                         "host_ms": e["latency"].get("host_ms"), "pi4_estimate_ms": e["pi4_estimate_ms"], "ds2_f1": e["ds2"]["f1"],
                         "ds2_sensitivity": e["ds2"]["sensitivity"], "ds2_ppv": e["ds2"]["ppv"],
                         "ds2_roc_auc": e["ds2"]["roc_auc"], "keras_ds2_f1": m["keras"]["ds2"]["f1"],
                         "decision_agreement": e["vs_keras"]["decision_agreement"],
                         "val_f1": m["study"]["val_f1"], "latency_objective_ms": m["study"]["latency_objective_ms"]})
    return rows


def print_summary(result: dict[str, Any]) -> None:
    """The result as a terminal table and as the Markdown table of docs/RESULTS.md."""
    st, s = result["settings"], result["study"]
    print(f"\nedge ({result['mode']}): study {s['name']} {s['states']}, front "
          f"{[r['trial'] for r in result['front']]}, exported {[m['trial'] for m in result['members']]}; "
          f"retrained on {st['retrain_beats_label']}, DS2 {st['ds2_beats_used']} of {st['ds2_beats_total']} beats; "
          f"load avg start {result['machine']['loadavg_start']} end {result['machine']['loadavg_end']}, "
          f"{result['wall_seconds']:.0f} s (study {s['run_search_seconds'] or 0:.0f} s)")
    print("\n| trial (val F1, params) | mode | KB | host median / p90 ms | host, slowdown out, ms | Pi 4 est. ms | DS2 F1 "
          "| Se | PPV | AUC | Keras DS2 F1 | agreement |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in result["table"]:
        print(f"| {r['trial']} ({r['val_f1']:.3f}, {r['params']:,}) | {r['mode']} | {r['size_kb']:.1f} | "
              f"{r['host_median_ms']:.4f} / {r['host_p90_ms']:.4f} | {r['host_ms']:.4f} | {r['pi4_estimate_ms']:.3f} | "
              f"{r['ds2_f1']:.3f} | "
              f"{r['ds2_sensitivity']:.3f} | {r['ds2_ppv']:.3f} | {r['ds2_roc_auc']:.3f} | {r['keras_ds2_f1']:.3f} | "
              f"{100 * r['decision_agreement']:.2f} % |")


if __name__ == "__main__":
    C.run(main)
