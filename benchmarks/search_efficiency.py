#!/usr/bin/env python
"""Search efficiency: the Optuna driver (TPE + median pruner + TFLite latency gate) against KerasTuner's
Hyperband and random search, on the same space, data, patient folds and wall-clock budget (MIT-BIH DS1).

For every seed, the three engines run one after another in a rotating order (seed 0: optuna, hyperband,
random; seed 1: hyperband, random, optuna; ...), so slow drift of the machine's load hits each alike. Each
run is its own Python process with the libraries imported before its clock starts; it appends one JSON
line per finished trial (seconds since its start, state, the objective: mean validation F1 over the K folds
at the threshold chosen on them, ``--metric f1``, the search's default) and is
stopped when its budget is spent: a trial still running then does not count. The same ``StudySettings``
(dataset, space, ``--max-beats`` drawn by patient and class with the seed, ``--folds`` patient-grouped
folds with the seed) feed both engines' objectives, and neither logs to MLflow (same overhead).

Reported per engine and seed, and as medians over seeds: best validation F1 within the budget and over
time (plot), trials finished, trials pruned (Optuna's pruner), rejected (latency gate) or stopped early
(Hyperband rounds that were not promoted), the time to reach ``--target`` and the time the Optuna driver
needs to reach each KerasTuner baseline's best F1, as a fraction of the time the baseline needed.

    python benchmarks/search_efficiency.py --quick        # 1 seed, 30 s per engine (~2 min)
    python benchmarks/search_efficiency.py                # 3 seeds, 300 s per engine (~50 min)
    python benchmarks/search_efficiency.py --seeds 0 1 2 3 4 --budget 600 --space spaces/edge.yaml
    python benchmarks/search_efficiency.py --budget 600 --optuna-workers 2   # the driver as 2 workers x 1 TF thread (~95 min)
    python benchmarks/search_efficiency.py --budget 600 --optuna-workers 2 --kt-workers 2   # KerasTuner too, in
                                          # its distributed mode (a chief oracle and 2 tuners x 1 TF thread; ~100 min)
    python benchmarks/search_efficiency.py --pruner-signal WORK_DIR ...   # what the pruner's signal predicts
    python benchmarks/search_efficiency.py --worker-throughput   # 1 process vs 2 workers x 1 TF thread (~20 min)
    python benchmarks/search_efficiency.py --sampler-surrogate   # samplers on a surrogate of the measured trials
                                          # (~13 min: 776 s, results/search_efficiency_sampler_surrogate.json)

Writes ``search_efficiency_<mode>.json`` and ``search_efficiency_<mode>.png`` to ``--out-dir``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

log = logging.getLogger("benchmarks.search_efficiency")

ROOT = Path(__file__).resolve().parents[1]
ENGINES = ("optuna", "kt-hyperband", "kt-random")
LABELS = {"optuna": "Optuna driver (TPE + median pruner + latency gate)",
          "kt-hyperband": "KerasTuner Hyperband", "kt-random": "KerasTuner random search"}
COLOURS = {"optuna": "#1f77b4", "kt-hyperband": "#d62728", "kt-random": "#7f7f7f"}
OBJECTIVES = {"f1": "mean over folds of validation F1 (abnormal) at the one threshold chosen from the folds' "
                    "predictions (median of each fold's F1-best threshold), the threshold the model is exported with",
              "f1@0.5": "mean over folds of validation F1 (abnormal) at threshold 0.5",
              "auc": "mean over folds of validation ROC-AUC (abnormal)"}
QUICK = {"seeds": [0], "budget": 30.0, "max_beats": 1200, "folds": 2, "epochs": 1}
FULL = {"seeds": [0, 1, 2], "budget": 300.0, "max_beats": 4000, "folds": 3, "epochs": None}


# ---------------------------------------------------------------------------------------------------------
# one engine run (a child process)
# ---------------------------------------------------------------------------------------------------------
def _settings(args: argparse.Namespace, seed: int):
    from search import StudySettings
    from spaces import SearchSpace

    space = SearchSpace.load(args.space)
    if args.epochs:
        space = space.with_overrides(epochs=int(args.epochs))
    return StudySettings(dataset="mitdb", space_yaml=space.to_yaml(), folds=args.folds, seed=seed,
                         max_beats=args.max_beats, latency_budget_ms=args.latency_budget_ms, metric=args.metric)


def _run_one(args: argparse.Namespace) -> int:
    """Child: run one engine for one seed until killed, appending a JSON line per finished trial."""
    C.exit_when_orphaned(os.getppid())  # a benchmark killed with SIGKILL cannot kill its children itself
    import keras  # noqa: F401  -- import cost before the clock starts
    import keras_tuner  # noqa: F401
    import optuna

    from search import keras_tuner_engine as kte
    from search.study import latency_gates, load_study_data, open_study, run_trials
    from spaces import SearchSpace

    from search import set_threads
    from search import make_sampler

    set_threads(args.tf_threads)
    C.quiet_tensorflow()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    seed, engine, out = args.seed, args.engine, Path(args.trials_file)
    settings = _settings(args, seed)
    work = Path(args.work)
    index, workers = args.worker_index, args.workers
    distributed_kt = "KERASTUNER_ORACLE_IP" in os.environ  # KerasTuner's chief oracle plus --kt-workers tuners
    if distributed_kt and os.environ["KERASTUNER_TUNER_ID"] == "chief":
        return _kt_chief(args, settings, work, workers)
    if workers > 1:  # the workers start their clocks together, once all (and a chief oracle) are ready
        C.start_together(work, str(index), workers + int(distributed_kt))
    t0 = time.time()
    (work / f"clock-{index}").write_text(repr(t0))  # the parent's deadline counts the budget from here

    def write(row: dict[str, Any]) -> None:
        row["seconds"] = time.time() - t0
        row["worker"] = index
        with out.open("a") as fh:
            fh.write(json.dumps(C.jsonable(row)) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    if engine == "optuna":
        space = SearchSpace.from_yaml(settings.space_yaml, "benchmark")
        data = load_study_data(settings, space)
        if index > 0:  # join the study worker 0 creates, as `ecg-automl worker` would
            while not (work / "study-created").exists():
                time.sleep(0.02)
        study, settings = open_study(f"eff-{seed}", f"sqlite:///{work / 'optuna.db'}", settings, args.pruner,
                                     heartbeat=None)
        if index == 0:
            (work / "study-created").touch()
        else:  # its own random draws (workers that start together must not draw the same start-up configs)
            study.sampler = make_sampler(settings, len(study.trials), salt=index)

        def on_trial(study, trial) -> None:
            a = trial.user_attrs
            state = trial.state.name
            kind = "complete" if state == "COMPLETE" else "failed" if state == "FAIL" else (
                "rejected" if "latency" in a.get("prune_reason", "") else "pruned")
            write({"trial": trial.number, "state": kind, "value": trial.value if state == "COMPLETE" else None,
                   "folds_trained": len(a.get("fold_metrics", [])), "latency_ms": a.get("latency_ms"),
                   "reason": a.get("prune_reason") or a.get("fail_reason")})

        run_trials(study, settings, n_trials=100_000, data=data, space=space, tracker=None,
                   gates=latency_gates(settings, data), progress=False, extra_callbacks=[on_trial])
    else:
        tuner = engine.removeprefix("kt-")
        max_epochs = None

        def on_trial(h: dict[str, Any]) -> None:
            nonlocal max_epochs
            if max_epochs is None:
                max_epochs = SearchSpace.from_yaml(settings.space_yaml, "benchmark").epochs_range[1]
            epochs = int(h["config"]["epochs"])
            write({"trial": h["trial"], "state": "complete", "value": h["value"], "epochs": epochs,
                   "max_epochs": max_epochs, "config": h["config"]})

        kte.run_keras_tuner(f"eff-{seed}-{tuner}", settings, tuner=tuner, n_trials=100_000, tracking=None,
                            out_dir=work, progress=False, on_trial_end=on_trial)
    return 0


def _kt_chief(args: argparse.Namespace, settings, work: Path, workers: int) -> int:
    """Child: KerasTuner's chief oracle for ``workers`` tuner processes. It only serves draws (it trains
    nothing); it joins the workers' start barrier once its gRPC server answers, so their clocks start with a
    ready oracle."""
    import socket
    import threading

    from search import keras_tuner_engine as kte

    port = int(os.environ["KERASTUNER_ORACLE_PORT"])

    def ready_when_serving() -> None:
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        C.start_together(work, "chief", workers + 1)

    threading.Thread(target=ready_when_serving, daemon=True).start()
    tuner = args.engine.removeprefix("kt-")
    kte.run_keras_tuner(f"eff-{args.seed}-{tuner}", settings, tuner=tuner, n_trials=100_000, tracking=None,
                        out_dir=work, progress=False)  # blocks, serving, until the budget's kill
    return 0


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spawn(args: argparse.Namespace, engine: str, seed: int, work: Path, budget: float) -> dict[str, Any]:
    """Run one engine in a child process (the Optuna driver: ``--optuna-workers`` processes on one study)
    for ``budget`` seconds; return its trials and timings."""
    trials_file = work / f"{engine}-{seed}.jsonl"
    workers = args.optuna_workers if engine == "optuna" else args.kt_workers
    threads = args.optuna_tf_threads if engine == "optuna" else args.kt_tf_threads
    distributed_kt = engine != "optuna" and workers > 1
    cmd = [sys.executable, str(Path(__file__).resolve()), "--_child", "--engine", engine, "--seed", str(seed),
           "--trials-file", str(trials_file), "--work", str(work / f"{engine}-{seed}"), "--space", args.space,
           "--folds", str(args.folds), "--max-beats", str(args.max_beats), "--pruner", args.pruner,
           "--metric", args.metric, "--workers", str(workers)]
    if args.epochs:
        cmd += ["--epochs", str(args.epochs)]
    if args.latency_budget_ms is not None:
        cmd += ["--latency-budget-ms", str(args.latency_budget_ms)]
    if threads:
        cmd += ["--tf-threads", str(threads)]
    (work / f"{engine}-{seed}").mkdir(parents=True, exist_ok=True)
    for stale in [*(work / f"{engine}-{seed}").glob("ready-*"), *(work / f"{engine}-{seed}").glob("clock-*"),
                  work / f"{engine}-{seed}" / "study-created"]:
        stale.unlink(missing_ok=True)  # the workers' start-up files of an earlier run in this --work-dir
    logs = [work / (f"{engine}-{seed}.log" if i == 0 else f"{engine}-{seed}-worker{i}.log") for i in range(workers)]
    envs: list[dict[str, str] | None] = [None] * workers
    if distributed_kt:  # KerasTuner's own distributed mode: a chief oracle (gRPC) and `workers` tuner processes
        link = {"KERASTUNER_ORACLE_IP": "127.0.0.1", "KERASTUNER_ORACLE_PORT": str(_free_port())}
        envs = [{**os.environ, **link, "KERASTUNER_TUNER_ID": f"tuner{i}"} for i in range(workers)]
        envs.append({**os.environ, **link, "KERASTUNER_TUNER_ID": "chief"})
        logs.append(work / f"{engine}-{seed}-chief.log")
    handles = [p.open("w") for p in logs]
    t_start = time.time()
    procs = [subprocess.Popen(cmd + ["--worker-index", str(i)], stdout=fh, stderr=subprocess.STDOUT, env=env,
                              start_new_session=True) for i, (fh, env) in enumerate(zip(handles, envs))]
    # the child's clock starts after its imports (its data loads within the budget): once it has (its clock
    # file), the budget is counted from there (a start slower than the allowance cut the engine's budget without
    # a word); until then it has the allowance. Its trials are read by its own clock, and only those finished
    # within the budget kept.
    deadline = time.monotonic() + budget + args.startup_allowance
    clock = work / f"{engine}-{seed}" / "clock-0"
    started = None
    exited, failed = None, None
    try:
        while time.monotonic() < deadline:
            if started is None and clock.exists():
                try:
                    started = float(clock.read_text())
                except ValueError:  # caught mid-write
                    pass
                else:  # a few seconds' slack for the last trial's row
                    deadline = time.monotonic() + max(0.0, started + budget - time.time()) + 5.0
            codes = [p.poll() for p in procs]
            failed = next((i for i, c in enumerate(codes) if c not in (None, 0)), None)
            if failed is not None or all(c is not None for c in codes):
                exited = codes[failed] if failed is not None else 0
                break
            if trials_file.exists():
                rows = _read_rows(trials_file)
                if rows and max(r["seconds"] for r in rows) >= budget:
                    break
            time.sleep(0.5)
    finally:  # also on Ctrl-C/SIGTERM: the children run in their own sessions "until killed" and would outlive us
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        for fh in handles:
            fh.close()
    rows = _read_rows(trials_file) if trials_file.exists() else []
    if started is None and exited is None:
        log.warning("%s (seed %d) did not start its clock within %.0f s (--startup-allowance) and was stopped: it "
                    "had no budget", engine, seed, args.startup_allowance)
    if exited not in (None, 0):
        tail = logs[failed or 0].read_text()[-3000:]
        raise RuntimeError(f"{engine} (seed {seed}) exited with {exited} before its budget was spent:\n{tail}")
    within = sorted((r for r in rows if r["seconds"] <= budget), key=lambda r: r["seconds"])
    return {"engine": engine, "seed": seed, "budget_s": budget, "process_seconds": time.time() - t_start,
            "startup_seconds": (started - t_start) if started is not None else None,
            "trials": within, "trials_after_budget": len(rows) - len(within), "load_avg_end": C.loadavg()}


def _gate_kerastuner_trials(runs: list[dict[str, Any]], budget_ms: float | None) -> None:
    """After the clock: time every KerasTuner config with the same latency gate as the Optuna driver
    (untrained int8 model, Pi 4 estimate), so each engine's best *deployable* model can be compared."""
    if budget_ms is None:
        return
    from ecg_automl.tflite.gate import LatencyGate

    gate, seen = LatencyGate(budget_ms), {}
    for run in runs:
        for t in run["trials"]:
            if "config" not in t:
                continue
            key = json.dumps({k: v for k, v in t["config"].items() if k != "epochs"}, sort_keys=True, default=str)
            if key not in seen:
                seen[key] = gate.measure(t["config"])["latency_ms"]
                C.clear_keras()
            t["latency_ms"] = seen[key]
            t["within_latency_budget"] = bool(seen[key] <= budget_ms)


def _read_rows(path: Path) -> list[dict[str, Any]]:
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:  # a line cut by the kill
            pass
    return rows


# ---------------------------------------------------------------------------------------------------------
# analysis
# ---------------------------------------------------------------------------------------------------------
def best_curve(trials: list[dict[str, Any]], deployable: bool = False) -> list[tuple[float, float]]:
    """(seconds, best validation F1 so far) at every improvement, from the complete trials (``deployable``:
    only those within the latency budget; every complete Optuna trial passed its gate)."""
    curve, best = [], -np.inf
    for r in sorted(trials, key=lambda r: r["seconds"]):
        if deployable and not r.get("within_latency_budget", True):
            continue
        if r["state"] == "complete" and r["value"] is not None and r["value"] > best:
            best = r["value"]
            curve.append((r["seconds"], best))
    return curve


def time_to(curve: list[tuple[float, float]], target: float) -> float | None:
    """Seconds until the best-so-far first reaches ``target`` (None: never within the budget)."""
    for t, v in curve:
        if v >= target - 1e-12:
            return t
    return None


def summarise_run(run: dict[str, Any], target: float) -> dict[str, Any]:
    """Counts, best F1 and time-to-target of one engine run."""
    trials = run["trials"]
    curve = best_curve(trials)
    dcurve = best_curve(trials, deployable=True)
    states = [r["state"] for r in trials]
    # rounds Hyperband itself cut short (another engine's shorter trials are the space's epochs, not a round)
    early = (sum(1 for r in trials if r.get("epochs") is not None and r["epochs"] < r["max_epochs"])
             if run["engine"] == "kt-hyperband" else 0)
    return {
        "engine": run["engine"], "seed": run["seed"], "budget_s": run["budget_s"],
        "trials_finished": len(trials), "complete": states.count("complete"), "pruned": states.count("pruned"),
        "rejected_by_latency_gate": states.count("rejected"), "failed": states.count("failed"),
        "hyperband_short_rounds": early,
        "best_f1": curve[-1][1] if curve else None, "time_to_best_s": curve[-1][0] if curve else None,
        "time_to_target_s": time_to(curve, target), "curve": curve,
        "over_latency_budget": sum(1 for r in trials if r.get("within_latency_budget") is False),
        # Optuna's gate timed every trial before training; KerasTuner's configs are timed after the run
        "latency_timed": run["engine"] == "optuna" or any("within_latency_budget" in r for r in trials),
        "best_deployable_f1": dcurve[-1][1] if dcurve else None,
        "time_to_best_deployable_s": dcurve[-1][0] if dcurve else None, "deployable_curve": dcurve,
    }


def compare(per_seed: dict[int, dict[str, dict[str, Any]]], deployable: bool = False) -> list[dict[str, Any]]:
    """Per seed and baseline: the time Optuna needs to reach the baseline's best F1 over the baseline's time
    (``deployable``: the baseline's best among its models within the latency budget)."""
    rows = []
    best_key, time_key = ("best_deployable_f1", "time_to_best_deployable_s") if deployable else ("best_f1", "time_to_best_s")
    for seed, runs in per_seed.items():
        opt = runs["optuna"]
        for base in ("kt-hyperband", "kt-random"):
            b = runs[base]
            if b[best_key] is None or (deployable and not b.get("latency_timed")):
                continue
            t_opt = time_to(opt["curve"], b[best_key])
            half = opt["budget_s"] / 2
            at_half = max((v for t, v in opt["curve"] if t <= half), default=None)
            rows.append({"seed": seed, "baseline": base, "baseline_best_f1": b[best_key],
                         "baseline_time_s": b[time_key], "optuna_time_s": t_opt,
                         "ratio": (t_opt / b[time_key]) if t_opt is not None and b[time_key] else None,
                         "optuna_reached": t_opt is not None,
                         # the other reading of the bar: by half the (common) budget, the driver holds a model
                         # at least as good as the best the baseline found in the whole budget
                         "optuna_best_by_half_budget": at_half,
                         "reached_by_half_budget": at_half is not None and at_half >= b[best_key] - 1e-12})
    return rows


def _median(values) -> float | None:
    vals = [v for v in values if v is not None]
    return float(np.median(vals)) if vals else None


def _median_none_worst(values) -> float | None:
    """Median of best F1s where a seed without a model (None) counts as the worst: leaving it out would report
    the median of the others as if every seed had one. None when the median falls on such a seed."""
    m = float(np.median([-np.inf if v is None else v for v in values]))
    return m if np.isfinite(m) else None


def medians(per_seed: dict[int, dict[str, dict[str, Any]]], budget: float) -> dict[str, dict[str, Any]]:
    """Median over seeds of every count and time per engine (a never-reached target counts as the budget
    for the median of time-to-target, and is also counted; a seed with no model counts as the worst best F1,
    and the seeds that have one are counted)."""
    out = {}
    for e in ENGINES:
        runs = [per_seed[s][e] for s in per_seed]
        out[e] = {k: _median(r[k] for r in runs) for k in
                  ("trials_finished", "complete", "pruned", "rejected_by_latency_gate", "failed",
                   "hyperband_short_rounds", "time_to_best_s", "over_latency_budget", "time_to_best_deployable_s")}
        for k in ("best_f1", "best_deployable_f1"):
            out[e][k] = _median_none_worst(r[k] for r in runs)
            out[e][f"{k}_runs"] = sum(r[k] is not None for r in runs)
        out[e]["time_to_target_s"] = _median(r["time_to_target_s"] if r["time_to_target_s"] is not None else budget
                                             for r in runs)
        out[e]["target_reached"] = sum(r["time_to_target_s"] is not None for r in runs)
        out[e]["runs"] = len(runs)
    return out


# ---------------------------------------------------------------------------------------------------------
# plot
# ---------------------------------------------------------------------------------------------------------
def _label(engine: str, settings: dict[str, Any]) -> str:
    pruner = settings.get("optuna_pruner", "median")
    if engine != "optuna":
        kt = settings.get("kt_workers") or 1
        return LABELS[engine] + (f", {kt} workers x {settings.get('kt_tf_threads')} TF thread" if kt > 1 else "")
    label = LABELS[engine].replace("median pruner", f"{pruner} pruner")
    workers = settings.get("optuna_workers", 1)
    return label if workers == 1 else label.replace("driver", f"driver, {workers} workers x "
                                                    f"{settings.get('optuna_tf_threads')} TF thread")


def plot(result: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    st = result["settings"]
    budget, target = st["budget_s"], st["target_f1"]
    seeds = sorted(result["per_seed"], key=int)
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(13, 5), gridspec_kw={"width_ratios": [1.6, 1]})
    for e in ENGINES:
        for i, s in enumerate(seeds):
            curve = result["per_seed"][s][e]["curve"]
            if not curve:
                continue
            xs = [0.0] + [c[0] for c in curve] + [budget]
            ys = [np.nan] + [c[1] for c in curve] + [curve[-1][1]]
            ax.step(xs, ys, where="post", color=COLOURS[e], alpha=0.85, lw=1.6,
                    ls=("-", "--", ":", "-.")[i % 4], label=_label(e, st) if i == 0 else None)
            fin = [r for r in result["runs"] if r["engine"] == e and str(r["seed"]) == s][0]["trials"]
            for r in fin:
                if r["state"] == "complete" and r["value"] is not None:
                    ax.plot(r["seconds"], r["value"], "o", ms=3, color=COLOURS[e], alpha=0.35)
    # named in the legend (a label on the line hid the curves that run along it), before the seeds so that the
    # legend's first column holds the engines and the target, its second the seeds
    ax.axhline(target, color="k", lw=0.8, ls=":", label=f"time-to-target {target:g}")
    for i, s in enumerate(seeds):  # which line style is which seed (the colours are the engines)
        ax.plot([], [], color="0.4", lw=1.2, ls=("-", "--", ":", "-.")[i % 4], label=f"seed {s}")
    ax.set_xlim(0, budget)
    ax.set_xlabel("wall-clock seconds since the engine started")
    metric = st.get("metric", "f1@0.5")  # result files from before the option were all at 0.5
    ax.set_ylabel({"f1": "best validation F1 so far (abnormal, mean of K patient folds)\nat the threshold "
                         "chosen on the folds", "f1@0.5": "best validation F1 so far (abnormal, mean of K "
                         "patient folds)\nat 0.5", "auc": "best validation ROC-AUC so far (mean of K folds)"}[metric])
    ax.set_title(f"best validation F1 over time, {len(seeds)} seed(s) (colour = engine, line style = seed; "
                 f"dots = complete trials)", fontsize=10)
    ax.legend(fontsize=7, loc="lower right", framealpha=0.6, ncol=2)
    ax.grid(alpha=0.3)

    med = result["medians"]
    x = np.arange(len(ENGINES))
    comp = [med[e]["complete"] or 0 for e in ENGINES]
    pr = [med[e]["pruned"] or 0 for e in ENGINES]
    rej = [med[e]["rejected_by_latency_gate"] or 0 for e in ENGINES]
    short = [med[e]["hyperband_short_rounds"] or 0 for e in ENGINES]
    ax2.bar(x, comp, 0.6, label="complete (all folds)", color="#2ca02c")
    ax2.bar(x, pr, 0.6, bottom=comp, label="pruned (after an epoch or a fold)", color="#ff7f0e")
    ax2.bar(x, rej, 0.6, bottom=np.add(comp, pr), label="rejected by latency gate", color="#9467bd")
    notes = []
    for i, e in enumerate(ENGINES):
        # every note in dark text above its bar (inside, white on the bar, they overlapped or were cut off)
        total = med[e].get("trials_finished")
        lines = [f"{total:g} finished (median)"] if total is not None else []
        best = med[e]["best_f1"]
        lines.append(f"best {best:.3f}" if best is not None else "no complete trial")
        lines.append(f"target at {med[e]['time_to_target_s']:.0f} s"
                     + (" (not all)" if med[e]["target_reached"] < med[e]["runs"] else ""))
        if short[i]:
            lines.append(f"{short[i]:g} short Hyperband rounds")
        dep = med[e].get("best_deployable_f1")
        if e != "optuna" and med[e].get("over_latency_budget"):
            lines += [f"{med[e]['over_latency_budget']:g} over the latency budget",
                      "best within it: " + (f"{dep:.3f}" if dep is not None else "none")]
            if med[e].get("best_deployable_f1_runs", med[e]["runs"]) < med[e]["runs"]:
                lines.append(f"({med[e]['best_deployable_f1_runs']} of {med[e]['runs']} seeds have one)")
        notes.append(ax2.text(i, comp[i] + pr[i] + rej[i], "\n".join(lines), ha="center", va="bottom", fontsize=7.5,
                              in_layout=False))  # the y range below keeps them inside the axes
    ax2.set_xticks(x, ["Optuna\ndriver", "KT\nHyperband", "KT\nrandom"])
    ax2.set_ylabel("trials within the budget: each part the median of its own\ncount over seeds (so the stack "
                   "need not equal the median total)")
    leg = ax2.legend(fontsize=7, loc="upper left")
    fig.suptitle(f"search efficiency ({result['mode']}): {st['space_name']} space, {st['max_beats']} DS1 beats, "
                 f"{st['folds']} folds, {budget:.0f} s per engine; {result['machine']['lscpu_model_name']}, "
                 f"{result['machine']['logical_cpus']} CPUs", fontsize=10)
    # the y range that fits every bar's notes above it, and below the legend where they share its columns
    fig.tight_layout()
    renderer = fig.canvas.get_renderer()
    box, lb = ax2.get_window_extent(renderer), leg.get_window_extent(renderer)
    room_under_legend = (lb.y0 - box.y0) / box.height - 0.01
    ymax = 1.0
    for i, t in enumerate(notes):
        tb = t.get_window_extent(renderer)
        room = room_under_legend if tb.x0 < lb.x1 and tb.x1 > lb.x0 else 0.98
        ymax = max(ymax, (comp[i] + pr[i] + rej[i]) / max(room - tb.height / box.height, 0.05))
    ax2.set_ylim(0, ymax)
    return C.save_figure(fig, path)


# ---------------------------------------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------------------------------------
def parse_args(argv=None) -> argparse.Namespace:
    ap = C.parser(__doc__)
    ap.add_argument("--quick", action="store_true", help="1 seed, 30 s per engine, 1,200 beats, 2 folds, 1 epoch")
    ap.add_argument("--seeds", type=C.at_least(0), nargs="+", help="seeds (full: 0 1 2)")
    ap.add_argument("--budget", type=C.above_zero, help="wall-clock seconds per engine and seed (full: 300)")
    ap.add_argument("--space", type=C.space_file, default=str(ROOT / "spaces" / "default.yaml"),
                    help="space (default spaces/default.yaml)")
    ap.add_argument("--max-beats", type=C.at_least(1), help="DS1 beats drawn by patient and class (full: 4000)")
    ap.add_argument("--folds", type=C.at_least(2), help="patient-grouped folds per trial (full: 3)")
    ap.add_argument("--epochs", type=C.at_least(1), help="override the space's epochs (quick: 1)")
    ap.add_argument("--latency-budget-ms", type=C.above_zero, default=1.0,
                    help="Optuna's latency gate: Pi 4 estimate of the int8 model (default 1.0 ms)")
    ap.add_argument("--pruner", choices=["median", "hyperband", "none"], default="median",
                    help="the Optuna driver's pruner (default median, as ecg-automl search)")
    ap.add_argument("--metric", choices=["f1", "f1@0.5", "auc"], default="f1",
                    help="both engines' objective (default f1: at the threshold chosen on the folds, as "
                         "ecg-automl search; f1@0.5 is the rule of the runs before it)")
    ap.add_argument("--target", type=C.f1_target, help="validation F1 for time-to-target (default: the median over "
                                                 "seeds of the weakest engine's best)")
    ap.add_argument("--optuna-workers", type=C.at_least(1), default=1,
                    help="run the Optuna driver as this many worker processes on one study (default 1)")
    ap.add_argument("--optuna-tf-threads", type=C.at_least(1),
                    help="TensorFlow threads per driver worker (default: 1 with several workers, else TF's choice)")
    ap.add_argument("--kt-workers", type=C.at_least(1), default=1,
                    help="run each KerasTuner engine in its distributed mode: a chief oracle and this many tuner "
                         "processes (default 1: one process)")
    ap.add_argument("--kt-tf-threads", type=C.at_least(1),
                    help="TensorFlow threads per KerasTuner tuner process (default: 1 with several, else TF's choice)")
    ap.add_argument("--startup-allowance", type=C.above_zero, default=60.0,
                    help="seconds a child may take to start its budget clock (its imports); its budget counts from then")
    ap.add_argument("--out-dir", type=C.out_dir, default=C.DEFAULT_OUT, help=C.OUT_HELP)
    ap.add_argument("--work-dir", type=C.out_dir,
                    help="keep the studies and trial logs here (default: a temporary folder, removed after a run "
                         "that finishes)")
    ap.add_argument("--reanalyse", metavar="JSON", help="recompute the summaries and the plot of a result file "
                                                        "(its runs are kept; nothing is trained) and rewrite it")
    ap.add_argument("--pruner-signal", nargs="+", metavar="DIR", help="instead of a run: how well the pruner's "
                    "running signal at each step ranks the completed trials of the Optuna studies under these "
                    "--work-dir folders (writes search_efficiency_pruner_signal.json/.png)")
    ap.add_argument("--sampler-surrogate", nargs="*", metavar="JSON",
                    help="instead of a run: random search, TPE with several start-up counts, an oracle (the "
                         "surrogate's best config every trial) and draws from its best 1/5/20 %% on a surrogate fitted "
                         "to the measured trials of these result files (those with the F1-at-threshold objective and this "
                         "pipeline version), the bar read at several budgets (default: every "
                         "benchmarks/results/search_efficiency_full*.json; writes "
                         "search_efficiency_sampler_surrogate[_quick].json/.png)")
    ap.add_argument("--worker-throughput", action="store_true",
                    help="instead of a run: train the same random draws with one process and with --optuna-workers "
                         "(default 2) 1-thread workers (writes search_efficiency_worker_throughput[_quick].json/.png)")
    ap.add_argument("--draws", type=C.at_least(1), help="draws for --worker-throughput (full 8, quick 2); trials per run for --sampler-surrogate (full 64, quick 8)")
    ap.add_argument("--repeats", type=C.at_least(1), help="repeats for --worker-throughput (full 3, quick 1) and --sampler-surrogate (full 60, quick 3)")
    ap.add_argument("--_child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--engine", choices=ENGINES, help=argparse.SUPPRESS)
    ap.add_argument("--seed", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--trials-file", help=argparse.SUPPRESS)
    ap.add_argument("--work", help=argparse.SUPPRESS)
    ap.add_argument("--workers", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--worker-index", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--tf-threads", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args._child:
        return args
    if args.seeds and len(set(args.seeds)) < len(args.seeds):  # a repeated seed would count one run twice
        twice = sorted({s for s in args.seeds if args.seeds.count(s) > 1})
        ap.error(f"argument --seeds: seed {', '.join(map(str, twice))} given more than once")
    if args.optuna_tf_threads is None and args.optuna_workers > 1:
        args.optuna_tf_threads = 1
    if args.kt_tf_threads is None and args.kt_workers > 1:
        args.kt_tf_threads = 1
    preset = QUICK if args.quick else FULL
    args.mode = "quick" if args.quick else "full"
    for k in ("seeds", "budget", "max_beats", "folds", "epochs"):
        if getattr(args, k) is None:
            setattr(args, k, preset[k])
    if not args.quick:  # e.g. --budget 600: files of its own, not the default run's
        args.mode = C.full_variant(ap, argv, args, FULL)
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args._child:
        return _run_one(args)
    if args.reanalyse:
        return _reanalyse(Path(args.reanalyse))
    if args.pruner_signal:
        return _pruner_signal([Path(p) for p in args.pruner_signal], Path(args.out_dir))
    if args.sampler_surrogate is not None:
        return _sampler_surrogate(args)
    if args.worker_throughput:
        return _worker_throughput(args)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    from spaces import SearchSpace

    space = SearchSpace.load(args.space)  # a malformed space fails here, before any run
    result = C.header("search_efficiency.py", args.mode)
    C.warn_if_exists(args.out_dir / f"search_efficiency_{args.mode}.json")
    t0 = time.perf_counter()
    work = Path(args.work_dir) if args.work_dir else Path(tempfile.mkdtemp(prefix="search-efficiency-"))
    work.mkdir(parents=True, exist_ok=True)
    # warm the preprocessed-array cache once, so no engine pays for the cold data preparation
    from ecg_data import load_dataset

    load_dataset("mitdb", fs=space.fs, window=space.window)
    runs: list[dict[str, Any]] = []
    partial = Path(args.out_dir) / f"search_efficiency_{args.mode}.partial.json"
    log.info("studies and trial logs in %s", work)
    for i, seed in enumerate(args.seeds):
        order = ENGINES[i % 3:] + ENGINES[:i % 3]
        for engine in order:
            log.info("seed %d (%d of %d): %s for %.0f s ...", seed, i + 1, len(args.seeds), engine, args.budget)
            run = _spawn(args, engine, seed, work, args.budget)
            done = run["trials"]
            log.info("  %d trials within the budget, best F1 %s", len(done),
                     max((r["value"] for r in done if r["state"] == "complete" and r["value"] is not None),
                         default=None))
            runs.append(run)
            C.save_partial(partial, {**result, "work_dir": str(work)}, len(runs), len(args.seeds) * len(ENGINES),
                           t0, runs=runs)
    _gate_kerastuner_trials(runs, args.latency_budget_ms)
    result["runs"] = runs
    result["settings"] = {"seeds": args.seeds, "budget_s": args.budget, "space": str(args.space),
                          "space_name": space.name, "max_beats": args.max_beats, "folds": args.folds,
                          "epochs_override": args.epochs, "latency_budget_ms": args.latency_budget_ms,
                          "optuna_pruner": args.pruner, "optuna_workers": args.optuna_workers,
                          "optuna_tf_threads": args.optuna_tf_threads, "kt_workers": args.kt_workers,
                          "kt_tf_threads": args.kt_tf_threads,
                          "target_f1": args.target, "engines": list(ENGINES), "mlflow": False,
                          "metric": args.metric, "objective": OBJECTIVES[args.metric],
                          "order": "rotating per seed",
                          "work_dir": str(work) if args.work_dir else None}  # a temporary one is removed
    analyse(result)
    C.finish(result, time.perf_counter() - t0)
    out = Path(args.out_dir)
    js = C.write_json(out / f"search_efficiency_{args.mode}.json", result)
    C.drop_partial(partial)
    png = plot(result, out / f"search_efficiency_{args.mode}.png")
    print_summary(result)
    print(f"wrote {js} and {png}")
    if not args.work_dir:  # every run's trials are in the result file; a run that fails keeps the folder
        shutil.rmtree(work, ignore_errors=True)
    return 0


def analyse(result: dict[str, Any]) -> dict[str, Any]:
    """Fill in per-seed summaries, medians and the Optuna-vs-baseline verdicts from ``result['runs']``
    (the target F1 defaults to the median over seeds of the weakest engine's best)."""
    st, runs = result["settings"], result["runs"]
    seeds = st["seeds"]
    if st.get("target_f1") is None or st.get("target_auto"):
        provisional = {s: {r["engine"]: summarise_run(r, 1.0) for r in runs if r["seed"] == s} for s in seeds}
        bests = {e: _median(provisional[s][e]["best_f1"] for s in seeds) for e in ENGINES}
        reached = [v for v in bests.values() if v is not None]
        # rounded down: a target rounded up past the weakest engine's best would count as not reached by it
        st["target_f1"], st["target_auto"] = (np.floor(min(reached) * 1000) / 1000 if reached else 0.0), True
    per_seed = {s: {r["engine"]: summarise_run(r, st["target_f1"]) for r in runs if r["seed"] == s} for s in seeds}
    result["per_seed"] = {str(s): v for s, v in per_seed.items()}
    result["medians"] = medians(per_seed, st["budget_s"])
    result["optuna_vs_baselines"] = _verdict(compare(per_seed), "best validation F1 of any model")
    result["optuna_vs_baselines_deployable"] = _verdict(
        compare(per_seed, deployable=True),
        f"best validation F1 among the baseline's models within the latency budget ({st['latency_budget_ms']} ms "
        "Pi 4 estimate, int8), timed after the run with the driver's own gate")
    return result


def _reanalyse(path: Path) -> int:
    """Recompute a saved result's summaries and plot (after a change to the analysis, not to the runs)."""
    result = json.loads(path.read_text())
    result["reanalysed_with"] = C.command_line()
    analyse(result)
    C.write_json(path, result)
    png = plot(result, path.with_suffix(".png"))
    print_summary(result)
    print(f"rewrote {path} and {png}")
    return 0


def _pruner_signal(paths: list[Path], out_dir: Path) -> int:
    """Spearman's rho of the pruner's signal at each step with where the completed trials ended up."""
    import _pruner_signal as PS

    t0 = time.perf_counter()
    result = C.header("search_efficiency.py", "pruner_signal")
    rows = PS.collect(paths)
    if not rows:
        raise SystemExit(f"error: no completed trial with every fold in the studies under {', '.join(map(str, paths))}")
    result["what"] = PS.__doc__.strip()
    result["groups"] = PS.analyse(rows)
    C.finish(result, time.perf_counter() - t0)
    js = C.write_json(out_dir / "search_efficiency_pruner_signal.json", result)
    png = PS.plot(result["groups"], out_dir / "search_efficiency_pruner_signal.png")
    for g in result["groups"]:
        print(f"{g['trials']} completed trials, {g['folds']} folds x {g['epochs_per_fold']} epochs, metric {g['metric']}")
        for p in g["per_step"]:
            o, u = p["vs_objective"], p.get("vs_unseen_folds")
            extra = f"   unseen folds {u['rho']:+.2f} [{u['ci90'][0]:+.2f}, {u['ci90'][1]:+.2f}]" if u else ""
            print(f"  fold {p['fold']} epoch {p['epoch']}: objective {o['rho']:+.2f} "
                  f"[{o['ci90'][0]:+.2f}, {o['ci90'][1]:+.2f}]{extra}")
    print(f"wrote {js} and {png}")
    return 0


def _sampler_surrogate(args: argparse.Namespace) -> int:
    """Random search against TPE (the driver's sampler, several start-up counts) and the oracle/top-share
    references on a surrogate of measured trials, at several budgets: how much the sampler alone can gain,
    which a 2-hour run cannot tell."""
    import _sampler_surrogate as SS
    from search.samplers import tpe_startup_trials
    from spaces import SearchSpace

    t0 = time.perf_counter()
    paths = ([Path(p) for p in args.sampler_surrogate] if args.sampler_surrogate
             else sorted((ROOT / "benchmarks" / "results").glob("search_efficiency_full*.json")))
    for p in paths:
        if not p.is_file():
            raise SystemExit(f"error: {p}: no such result file")
    space = SearchSpace.load(args.space)
    configs, values, used = SS.collect(paths, space)
    if len(values) < 20:
        raise SystemExit(f"error: {len(values)} completed full-epoch trials with every parameter of {space.name!r} "
                         f"in {len(paths)} file(s); the surrogate needs at least 20")
    mode = "sampler_surrogate" + ("_quick" if args.quick else "")
    preset = SS.QUICK if args.quick else SS.FULL
    trials, repeats = args.draws or preset["trials"], args.repeats or preset["repeats"]
    result = C.header("search_efficiency.py", mode)
    result["what"] = SS.__doc__.strip()
    result["settings"] = {"space": str(args.space), "result_files": used, "trials": trials, "repeats": repeats,
                          "startup_counts": list(SS.STARTUP), "seed": args.seeds[0]}
    result["simulation"] = SS.simulate(space, configs, values, trials=trials, repeats=repeats, seed=args.seeds[0],
                                       log=print)
    C.finish(result, time.perf_counter() - t0)
    out = Path(args.out_dir)
    js = C.write_json(out / f"search_efficiency_{mode}.json", result)
    png = SS.plot(result, out / f"search_efficiency_{mode}.png")
    sim = result["simulation"]
    driver = f"tpe_startup_{tpe_startup_trials(SS.DRIVER_FOLDS)}"
    print(f"surrogate: {sim['surrogate']['trials']} trials, OOB R2 {sim['surrogate']['oob_r2']:.3f}, "
          f"residual sd {sim['surrogate']['oob_residual_sd']:.3f}")
    for level, lv in sim["noise"].items():
        print(f"noise {level} (sd {lv['sd']:.3f}); median best after {trials // 2} / {trials} trials, "
              f"P(bar in one seed), P(median of 3 passes):")
        for name, s in lv["samplers"].items():
            b = s["median_best_after"]
            print(f"  {name:<15} {b[trials // 2 - 1]:.3f} / {b[-1]:.3f}   {s['p_within_half_of_random']:.2f}   "
                  f"{s['p_median_of_3_seeds_passes']:.2f}")
        print("  P(median of 3 passes) by budget (trials): " + "  ".join(
            f"{name} " + " ".join(f"{b}:{v['p_median_of_3_seeds_passes']:.2f}" for b, v in s["by_budget"].items())
            for name, s in lv["samplers"].items() if name in ("random", driver, "oracle") or name.startswith("top_")))
        print("  share of draws in the space's best 20 % by trials: " + "  ".join(
            f"{name} " + " ".join(f"{b}:{v:.2f}" for b, v in s["share_of_draws_in_top_20%"].items())
            for name, s in lv["samplers"].items() if name in ("random", driver)))
    print(f"wrote {js} and {png}")
    return 0


def _worker_throughput(args: argparse.Namespace) -> int:
    """One search process against N 1-thread workers on the same draws: why the driver runs as workers."""
    import _worker_throughput as WT

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    from ecg_data import load_dataset
    from spaces import SearchSpace

    t0 = time.perf_counter()
    space = SearchSpace.load(args.space)
    load_dataset("mitdb", fs=space.fs, window=space.window)  # warm the cache: no layout pays the preparation
    draws = args.draws or (2 if args.quick else 8)
    repeats = args.repeats or (1 if args.quick else 3)
    workers = args.optuna_workers if args.optuna_workers > 1 else 2
    if draws < workers:
        raise SystemExit(f"error: --draws {draws} is fewer than the {workers} workers")
    mode = "worker_throughput" + ("_quick" if args.quick else "")
    result = C.header("search_efficiency.py", mode)
    result["what"] = WT.__doc__.strip()
    result["settings"] = {"space": str(args.space), "max_beats": args.max_beats, "folds": args.folds,
                          "epochs_override": args.epochs, "seed": args.seeds[0], "draws": draws, "repeats": repeats,
                          "workers": workers}
    with tempfile.TemporaryDirectory(prefix="worker-throughput-") as tmp:
        result["measurement"] = WT.measure(space=str(args.space), max_beats=args.max_beats, folds=args.folds,
                                           epochs=args.epochs, seed=args.seeds[0], draws=draws, workers=workers,
                                           repeats=repeats, work=Path(tmp), log=log.info)
    C.finish(result, time.perf_counter() - t0)
    out = Path(args.out_dir)
    js = C.write_json(out / f"search_efficiency_{mode}.json", result)
    png = WT.plot(result, out / f"search_efficiency_{mode}.png")
    m = result["measurement"]
    for k in WT.LAYOUTS:
        print(f"{k:<11} {m['medians'][k]['wall_s']:7.1f} s wall, {m['medians'][k]['cores_busy']:.2f} cores busy")
    print(f"speed-up of {workers} workers x 1 TF thread over one process: {m['speedup_median']:.2f}x")
    print(f"wrote {js} and {png}")
    return 0


def _verdict(comparisons: list[dict[str, Any]], what: str) -> dict[str, Any]:
    """Median ratio (a baseline best that Optuna never reached counts as an infinite ratio; a median that
    is infinite is reported as None with ``median_not_reached``) and the count within half the time."""
    ratios = [c["ratio"] for c in comparisons]
    as_inf = [r if r is not None else np.inf for r in ratios]
    med = float(np.median(as_inf)) if as_inf else None
    return {"baseline_best": what, "per_seed": comparisons,
            "median_ratio": med if med is not None and np.isfinite(med) else None,
            "median_not_reached": bool(med is not None and not np.isfinite(med)),
            "not_reached": sum(r is None for r in ratios),
            "all_reached": all(c["optuna_reached"] for c in comparisons),
            "within_half_time": sum(1 for r in ratios if r is not None and r <= 0.5),
            "reached_by_half_budget": sum(1 for c in comparisons if c["reached_by_half_budget"]),
            "comparisons": len(comparisons),
            "rule": "time the Optuna driver needs to reach a KerasTuner engine's best validation F1, divided by "
                    "the time that engine needed; the bar is <= 0.5 (never reaching it counts as failing)",
            "rule_by_half_budget": "the driver's best within half the common budget is at least the engine's "
                                   "best within the whole budget"}


def print_summary(result: dict[str, Any]) -> None:
    st, med = result["settings"], result["medians"]
    print(f"\nsearch efficiency ({result['mode']}), {len(st['seeds'])} seed(s), {st['budget_s']:.0f} s per engine, "
          f"target F1 {st['target_f1']}")
    print(f"{'engine':<14}{'finished':>9}{'complete':>9}{'pruned':>8}{'gated':>7}{'best F1':>9}{'t(best)':>9}{'t(target)':>11}")
    for e in ENGINES:
        m = med[e]
        fmt = lambda v, f: format(v, f) if v is not None else "-"  # noqa: E731
        print(f"{e:<14}{fmt(m['trials_finished'], '9.1f')}{fmt(m['complete'], '9.1f')}{fmt(m['pruned'], '8.1f')}"
              f"{fmt(m['rejected_by_latency_gate'], '7.1f')}{fmt(m['best_f1'], '9.4f')}{fmt(m['time_to_best_s'], '9.0f')}"
              f"{fmt(m['time_to_target_s'], '11.0f')}")
    for key, what in (("optuna_vs_baselines", "any"), ("optuna_vs_baselines_deployable", "within the latency budget")):
        o = result[key]
        med = "never reached" if o["median_not_reached"] else o["median_ratio"]
        print(f"Optuna time to a KerasTuner best ({what}) / that engine's time: median {med}, "
              f"{o['within_half_time']}/{o['comparisons']} within half the time, {o['not_reached']} never reached; "
              f"{o.get('reached_by_half_budget', 0)}/{o['comparisons']} reached by half the budget")


if __name__ == "__main__":
    C.run(main)
