#!/usr/bin/env python
"""Where a search's time goes: data preparation (cold vs cached), training throughput, the share of a trial
spent outside training, and the TFLite latency gate.

Measured in this order, ``--repeats`` times each, medians reported:

1. **data preparation** of MIT-BIH (``load_dataset("mitdb")``, the 44 non-paced records or ``--records``):
   *cold* with a fresh, empty ``$ECG_AUTOML_CACHE`` folder (WFDB read, band-pass, resample, windows, RR
   features, cache write), then *warm*: the same call again (cache hit). "Cold" means the array cache is
   empty; the record files themselves may be in the OS page cache.
2. **training throughput** of the config (``search.training.fit`` on DS1 beats, no validation data): beats/s
   of every epoch, from Keras epoch-end times; the first epoch includes graph tracing.
3. **latency gate**: ``LatencyGate(mode="int8").measure(config)`` (build the untrained model, int8 TFLite
   conversion with random calibration data, 100 timed LiteRT invokes, Pi 4 estimate) -> ``gate_seconds``.
4. **a 2-trial study** through ``search.run_search`` (patient-grouped folds, MLflow to a temporary SQLite
   store, pruner off, no final test), the config's architecture with only the learning rate searched. For
   each trial: total duration (Optuna ``datetime_start`` -> ``datetime_complete``) vs the sum of the folds'
   ``train_seconds`` (``trial.user_attrs["fold_metrics"]``: Keras ``model.fit``, which includes the per-epoch
   validation pass); the rest ("other") is model building, validation prediction, metrics, threshold,
   MLflow logging (model, figures, metrics) and Optuna storage. Time in ``run_search`` outside the trials
   (data load, stores, MLflow set-up) is reported apart.

Writes ``pipeline_cost_<mode>.json`` and ``pipeline_cost_<mode>.png`` (stacked bars: training / other per
trial) to ``--out-dir``.

    python benchmarks/pipeline_cost.py --quick      # 1 repeat, small study (~1-2 min)
    python benchmarks/pipeline_cost.py              # 3 repeats, 20,000-beat study, the config's epochs
    python benchmarks/pipeline_cost.py --repeats 1  # the published run (1,310 s on 2 cores, results/pipeline_cost_full.json;
                                                    # a rerun writes pipeline_cost_full_repeats1.json)
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

log = logging.getLogger("benchmarks.pipeline_cost")

QUICK = {"repeats": 1, "throughput_beats": 4000, "throughput_epochs": 2, "study_beats": 2000, "study_folds": 2,
         "study_epochs": 1}
FULL = {"repeats": 3, "throughput_beats": None, "throughput_epochs": None, "study_beats": 20000, "study_folds": 3,
        "study_epochs": None}


# ---------------------------------------------------------------------------------------------------------
# measurements
# ---------------------------------------------------------------------------------------------------------
def data_prep(records: list[str] | None, fs: float, window: int, work: Path) -> dict[str, Any]:
    """Cold (empty cache folder) then warm load of mitdb."""
    from ecg_data import load_dataset

    cache = Path(tempfile.mkdtemp(prefix="cache-", dir=work))
    old = os.environ.get("ECG_AUTOML_CACHE")
    os.environ["ECG_AUTOML_CACHE"] = str(cache)
    try:
        t0 = time.perf_counter()
        cold = load_dataset("mitdb", fs=fs, window=window, records=records)
        cold_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        warm = load_dataset("mitdb", fs=fs, window=window, records=records)
        warm_s = time.perf_counter() - t0
    finally:
        if old is None:
            os.environ.pop("ECG_AUTOML_CACHE", None)
        else:
            os.environ["ECG_AUTOML_CACHE"] = old
    files = list(cache.glob("mitdb-*.npz"))
    out = {"cold_seconds": cold_s, "warm_seconds": warm_s, "speedup": cold_s / max(warm_s, 1e-9),
           "cold_cache_hit": bool(cold.info["cache"]["hit"]), "warm_cache_hit": bool(warm.info["cache"]["hit"]),
           "beats": len(warm), "records": int(len(np.unique(warm.records))),
           "cache_file_mb": sum(f.stat().st_size for f in files) / 1e6, "cache_dir": str(cache)}
    log.info("data prep: cold %.2f s (cache hit %s), warm %.2f s (cache hit %s), %d beats, cache %.0f MB",
             cold_s, out["cold_cache_hit"], warm_s, out["warm_cache_hit"], len(warm), out["cache_file_mb"])
    return out, warm


def throughput(config: dict, data, max_beats: int | None, epochs: int, seed: int) -> dict[str, Any]:
    """beats/s of each training epoch on DS1 beats (no validation)."""
    from ecg_data import subsample_beats
    from search import fit

    train = data.search_part()
    if max_beats:
        train = train.subset(subsample_beats(train.y, train.groups, max_beats, seed=seed))
    cfg = {**config, "epochs": int(epochs)}
    ends: list[float] = []
    res = fit(cfg, train, None, seed=seed, on_epoch_end=lambda e, logs: ends.append(time.perf_counter()))
    start = ends[-1] - res.seconds  # fit() times model.fit; its last epoch ends where the timing ends
    durations = np.diff([start, *ends])
    per_epoch = [len(train) / d for d in durations]
    out = {"beats": len(train), "epochs": int(epochs), "batch_size": int(cfg["batch_size"]),
           "epoch_seconds": durations.tolist(), "beats_per_s_per_epoch": per_epoch,
           "first_epoch_beats_per_s": per_epoch[0],
           "steady_beats_per_s": float(np.median(per_epoch[1:])) if len(per_epoch) > 1 else None,
           "overall_beats_per_s": res.beats_per_s, "fit_seconds": res.seconds}
    log.info("throughput: %d beats x %d epochs, per epoch %s beats/s", len(train), epochs,
             ", ".join(f"{v:.0f}" for v in per_epoch))
    C.clear_keras()
    return out


def gate(config: dict) -> dict[str, Any]:
    from ecg_automl.tflite.gate import LatencyGate

    m = LatencyGate(mode="int8").measure(config)
    log.info("latency gate: %.2f s (host %.3f ms, Pi 4 estimate %.3f ms, %.1f KB)", m["gate_seconds"],
             m["host_median_ms"], m["pi4_estimate_ms"], m["size_kb"])
    C.clear_keras()
    return {k: m[k] for k in ("gate_seconds", "host_median_ms", "host_p90_ms", "pi4_estimate_ms", "size_kb",
                              "params", "macs") if k in m}


def study_space(config: dict, epochs: int, window: int, fs: float):
    """The config's architecture, only the learning rate searched (x0.5 .. x2, log)."""
    from spaces import SearchSpace

    lr = float(config["learning_rate"])
    params = {**config, "epochs": int(epochs),
              "learning_rate": {"type": "float", "low": lr / 2, "high": lr * 2, "log": True}}
    return SearchSpace.from_dict({"name": "pipeline-cost", "data": {"fs": fs, "window": window}, "params": params},
                                 "pipeline_cost")


def tiny_study(config: dict, *, records, max_beats: int, folds: int, epochs: int, window: int, fs: float,
               seed: int, work: Path) -> dict[str, Any]:
    """A 2-trial study with MLflow to a temporary SQLite store; per-trial training vs other time."""
    from search import StudySettings, TrackingConfig, run_search

    d = Path(tempfile.mkdtemp(prefix="study-", dir=work))
    space = study_space(config, epochs, window, fs)
    settings = StudySettings(dataset="mitdb", space_yaml=space.to_yaml(), folds=folds, seed=seed,
                             max_beats=max_beats, records=records)
    tracking = TrackingConfig(f"sqlite:///{d / 'mlflow.db'}", (d / "mlartifacts").as_uri(), "pipeline-cost")
    t0 = time.perf_counter()
    result = run_search(f"pipeline-cost-{seed}", settings, n_trials=2, storage=f"sqlite:///{d / 'optuna.db'}",
                        tracking=tracking, pruner="none", final=False, out_dir=d / "runs", progress=False,
                        print_fn=lambda s: None)
    wall = time.perf_counter() - t0
    trials = []
    for t in result.study.trials:
        if t.datetime_start is None or t.datetime_complete is None:
            continue
        total = (t.datetime_complete - t.datetime_start).total_seconds()
        folds_m = t.user_attrs.get("fold_metrics", [])
        # model.fit's time less its per-epoch validation passes (inference on the fold's validation beats)
        val = float(sum(f.get("validation_seconds", 0.0) for f in folds_m))
        train = float(sum(f["train_seconds"] for f in folds_m)) - val
        other = total - train - val
        trials.append({"number": t.number, "state": t.state.name, "total_seconds": total,
                       "training_seconds": train, "validation_seconds": val, "other_seconds": other,
                       "training_share": train / total if total > 0 else float("nan"),
                       "validation_share": val / total if total > 0 else float("nan"),
                       "other_share": other / total if total > 0 else float("nan"),
                       "folds": len(folds_m), "fold_train_seconds": [f["train_seconds"] for f in folds_m],
                       "learning_rate": t.params.get("learning_rate"), "value": t.value})
        log.info("trial %d (%s): %.1f s total, %.1f s training (%.0f %%), %.1f s per-epoch validation, %.1f s other",
                 t.number, t.state.name, total, train, 100 * train / max(total, 1e-9), val, other)
    in_trials = sum(t["total_seconds"] for t in trials)
    out = {"run_search_seconds": wall, "trials": trials, "seconds_outside_trials": wall - in_trials,
           "tracking_failures": list(result.tracking_failures), "folds": folds, "max_beats": max_beats,
           "epochs": epochs, "completed": sum(t["state"] == "COMPLETE" for t in trials)}
    log.info("study: run_search %.1f s, %.1f s of it outside the trials", wall, wall - in_trials)
    C.clear_keras()
    return out


# ---------------------------------------------------------------------------------------------------------
# plot
# ---------------------------------------------------------------------------------------------------------
def plot(result: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = result["summary"]
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 5), gridspec_kw={"width_ratios": [1.4, 1]})
    names = [f"trial {k}" for k in range(len(s["per_trial_index"]))]
    train = [t["training_seconds"] for t in s["per_trial_index"]]
    val = [t.get("validation_seconds", 0.0) for t in s["per_trial_index"]]
    # files from before the validation was booked apart hold it in training_seconds: no validation part then
    booked = any("validation_seconds" in t for t in s["per_trial_index"])
    other = [t["other_seconds"] for t in s["per_trial_index"]]
    x = np.arange(len(names))
    ax.bar(x, train, 0.6, label="training (folds' model.fit, less its validation)" if booked
           else "training (sum of folds' model.fit, its validation included)", color="#1f77b4")
    if booked:
        ax.bar(x, val, 0.6, bottom=train, label="per-epoch validation inside model.fit", color="#17becf")
    ax.bar(x, other, 0.6, bottom=np.add(train, val), label="other (build, predict, metrics, MLflow, Optuna)",
           color="#ff7f0e")
    for i, (a, v, b) in enumerate(zip(train, val, other)):
        total = a + v + b
        ax.text(i, total, f"{total:.1f} s\n" + (f"{100 * v / total:.0f} % validation\n" if booked else "")
                + f"{100 * b / total:.0f} % other", ha="center", va="bottom", fontsize=8)
    ax.set_xticks(x, names)
    ax.set_ylabel("seconds (median over repeats)")
    st = result["settings"]
    ax.set_title(f"2-trial study: {st['study_folds']} folds x {st['study_beats']} beats, "
                 f"{st['study_epochs']} epoch(s)", fontsize=10)
    ax.set_ylim(0, max(a + v + b for a, v, b in zip(train, val, other)) * 1.3 if train else 1)
    ax.legend(fontsize=8, loc="upper left")
    labels = ["data prep\ncold", "data prep\nwarm", "latency gate\n(int8 convert+time)", "study outside\ntrials"]
    vals = [s["data_prep_cold_seconds"], s["data_prep_warm_seconds"], s["gate_seconds"], s["seconds_outside_trials"]]
    bars = ax2.bar(np.arange(len(vals)), vals, 0.6, color=["#7f7f7f", "#bcbd22", "#2ca02c", "#9467bd"])
    for b, v in zip(bars, vals):
        ax2.text(b.get_x() + b.get_width() / 2, v, f"{v:.2f} s", ha="center", va="bottom", fontsize=8)
    ax2.set_xticks(np.arange(len(vals)), labels, fontsize=8)
    tp = s.get("steady_beats_per_s") or s.get("first_epoch_beats_per_s")
    ax2.set_title(f"other costs; training {tp:.0f} beats/s (steady epoch)", fontsize=10)
    ax2.set_ylabel("seconds (median over repeats)")
    ax2.set_ylim(0, max(vals) * 1.2 if max(vals) > 0 else 1)
    fig.suptitle(f"pipeline cost ({result['mode']} mode, {st['repeats']} repeat(s)); "
                 f"{result['machine']['lscpu_model_name']}, {result['machine']['logical_cpus']} CPUs, "
                 f"load {result['machine']['loadavg_start'][0]:.1f}", fontsize=10)
    return C.save_figure(fig, path)


# ---------------------------------------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------------------------------------
def parse_args(argv=None) -> argparse.Namespace:
    ap = C.parser(__doc__)
    ap.add_argument("--quick", action="store_true", help="smoke mode: 1 repeat, small throughput run and study")
    ap.add_argument("--config", type=C.config_file, default=None, help=f"model config JSON (default {C.DEFAULT_CONFIG.relative_to(C.ROOT)})")
    ap.add_argument("--study", default=None, help="take the best trial's config from this Optuna study")
    ap.add_argument("--storage", default=None, help="the study's storage URL (with --study)")
    ap.add_argument("--repeats", type=C.at_least(1), default=None, help="repeats of every measurement (full 3, quick 1)")
    ap.add_argument("--records", default=None, help="comma-separated MIT-BIH records (default: all 44 non-paced)")
    ap.add_argument("--throughput-beats", type=C.at_least(1), default=None, help="DS1 beats for the throughput run (full: all)")
    ap.add_argument("--throughput-epochs", type=C.at_least(1), default=None, help="epochs of the throughput run (full: the config's)")
    ap.add_argument("--study-beats", type=C.at_least(1), default=None, help="max_beats of the 2-trial study (full 20000)")
    ap.add_argument("--study-folds", type=C.at_least(2), default=None, help="folds of the 2-trial study (full 3)")
    ap.add_argument("--study-epochs", type=C.at_least(1), default=None, help="epochs in the 2-trial study (full: the config's)")
    ap.add_argument("--out-dir", type=C.out_dir, default=C.DEFAULT_OUT, help=C.OUT_HELP)
    args = ap.parse_args(argv)
    if args.config is not None and args.study is not None:
        ap.error("give --config or --study, not both")
    if args.study is not None and not args.storage:
        ap.error("--study needs --storage")
    C.apply_mode(args, QUICK, FULL, parser=ap, argv=argv)
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    C.quiet_tensorflow()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S", stream=sys.stderr)
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    for name in ("tensorflow", "alembic", "mlflow"):
        logging.getLogger(name).setLevel(logging.ERROR)
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    t_start = time.perf_counter()
    result = C.header("pipeline_cost", args.mode)
    C.warn_if_exists(args.out_dir / f"pipeline_cost_{args.mode}.json")

    config, _, fs, window, config_source, _ = C.resolve_config(args)
    records = [r.strip() for r in args.records.split(",")] if args.records else None
    tp_epochs = int(args.throughput_epochs or config["epochs"])
    st_epochs = int(args.study_epochs or config["epochs"])
    result.update({"config": config, "config_source": config_source,
                   "settings": {"repeats": args.repeats, "records": records or "all 44 non-paced", "fs": fs,
                                "window": window, "throughput_beats": args.throughput_beats or "all DS1",
                                "throughput_epochs": tp_epochs, "study_beats": args.study_beats,
                                "study_folds": args.study_folds, "study_epochs": st_epochs, "study_trials": 2,
                                "order": "per repeat: data prep, throughput, latency gate, study"}})

    import keras  # noqa: F401  (imported once here, so no measurement below pays the import)

    cache_env = os.environ.get("ECG_AUTOML_CACHE")
    with tempfile.TemporaryDirectory(prefix="pipeline-cost-") as tmp:
        work = Path(tmp)
        preps, tps, gates, studies = [], [], [], []
        for rep in range(args.repeats):
            log.info("repeat %d/%d", rep + 1, args.repeats)
            prep, data = data_prep(records, fs, window, work)
            preps.append(prep)
            tps.append(throughput(config, data, args.throughput_beats, tp_epochs, seed=rep))
            gates.append(gate(config))
            os.environ["ECG_AUTOML_CACHE"] = prep["cache_dir"]  # the study loads the (now warm) arrays
            studies.append(tiny_study(config, records=records, max_beats=args.study_beats, folds=args.study_folds,
                                      epochs=st_epochs, window=window, fs=fs, seed=rep, work=work))
            del data
    if cache_env is None:
        os.environ.pop("ECG_AUTOML_CACHE", None)
    else:
        os.environ["ECG_AUTOML_CACHE"] = cache_env

    n_trials = min(len(s["trials"]) for s in studies)
    per_index = [C.median_of([s["trials"][k] for s in studies]) for k in range(n_trials)]
    all_trials = [t for s in studies for t in s["trials"]]
    tot = sum(t["total_seconds"] for t in all_trials)
    trn = sum(t["training_seconds"] + t["validation_seconds"] for t in all_trials)
    summary = {
        "data_prep_cold_seconds": float(np.median([p["cold_seconds"] for p in preps])),
        "data_prep_warm_seconds": float(np.median([p["warm_seconds"] for p in preps])),
        "data_prep_speedup": float(np.median([p["speedup"] for p in preps])),
        "first_epoch_beats_per_s": float(np.median([t["first_epoch_beats_per_s"] for t in tps])),
        "steady_beats_per_s": (float(np.median([t["steady_beats_per_s"] for t in tps]))
                               if all(t["steady_beats_per_s"] is not None for t in tps) else None),
        "overall_beats_per_s": float(np.median([t["overall_beats_per_s"] for t in tps])),
        "gate_seconds": float(np.median([g["gate_seconds"] for g in gates])),
        "gate_pi4_estimate_ms": float(np.median([g["pi4_estimate_ms"] for g in gates])),
        "trial_seconds": float(np.median([t["total_seconds"] for t in all_trials])),
        "trial_training_seconds": float(np.median([t["training_seconds"] for t in all_trials])),
        "trial_validation_seconds": float(np.median([t["validation_seconds"] for t in all_trials])),
        "trial_other_seconds": float(np.median([t["other_seconds"] for t in all_trials])),
        "trial_training_share": float(np.median([t["training_share"] for t in all_trials])),
        "trial_validation_share": float(np.median([t["validation_share"] for t in all_trials])),
        "trial_other_share": float(np.median([t["other_share"] for t in all_trials])),
        "pooled_other_share": (tot - trn) / tot if tot > 0 else float("nan"),
        "seconds_outside_trials": float(np.median([s["seconds_outside_trials"] for s in studies])),
        "run_search_seconds": float(np.median([s["run_search_seconds"] for s in studies])),
        "per_trial_index": per_index,
    }
    tt = summary["trial_seconds"]
    summary["gate_share_if_enabled"] = summary["gate_seconds"] / (tt + summary["gate_seconds"]) if tt > 0 else float("nan")
    result.update({"summary": summary, "data_prep": preps, "training_throughput": tps, "latency_gate": gates,
                   "study": studies})
    png = plot(result, args.out_dir / f"pipeline_cost_{args.mode}.png")
    result["plot"] = str(png)
    C.finish(result, time.perf_counter() - t_start)
    js = C.write_json(args.out_dir / f"pipeline_cost_{args.mode}.json", result)
    print_summary(result)
    print(f"wrote {js} and {png}")
    return 0


def print_summary(result: dict[str, Any]) -> None:
    s = result["summary"]
    print(f"\npipeline cost ({result['mode']}), {result['settings']['repeats']} repeat(s), load avg start "
          f"{result['machine']['loadavg_start']} end {result['machine']['loadavg_end']}, {result['wall_seconds']:.0f} s")
    print(f"  data prep mitdb: cold {s['data_prep_cold_seconds']:.2f} s, warm {s['data_prep_warm_seconds']:.2f} s "
          f"({s['data_prep_speedup']:.1f}x)")
    steady = s["steady_beats_per_s"]
    print(f"  training: first epoch {s['first_epoch_beats_per_s']:.0f} beats/s, steady "
          f"{'n/a' if steady is None else f'{steady:.0f}'} beats/s, overall {s['overall_beats_per_s']:.0f} beats/s")
    print(f"  latency gate: {s['gate_seconds']:.2f} s (Pi 4 estimate {s['gate_pi4_estimate_ms']:.3f} ms); "
          f"{100 * s['gate_share_if_enabled']:.0f} % of a trial if enabled")
    print(f"  trial: {s['trial_seconds']:.1f} s, training {s['trial_training_seconds']:.1f} s, per-epoch validation "
          f"{s['trial_validation_seconds']:.1f} s, other "
          f"{s['trial_other_seconds']:.1f} s ({100 * s['trial_other_share']:.0f} % other); "
          f"run_search {s['run_search_seconds']:.1f} s, {s['seconds_outside_trials']:.1f} s outside trials")


if __name__ == "__main__":
    C.run(main)
