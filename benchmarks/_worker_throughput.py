"""How many trials a 2-core machine trains per hour with one search process or with several 1-thread workers
(``search_efficiency.py --worker-throughput``).

The same ``draws`` (random configs of the space, seeded) are each trained on the first patient-grouped fold
of the benchmark's DS1 beats, as a trial's first fold is, in three layouts:

- ``one process, TF threads default``: one process trains every draw in turn (what ``ecg-automl search`` does);
- ``one process, 1 TF thread``: the same with ``search.set_threads(1)``;
- ``N workers x 1 TF thread``: N processes side by side (``ecg-automl worker --tf-threads 1``), draw i on
  worker i mod N, clocks started together once every worker has imported everything and loaded the data.

Reported per layout: wall seconds for all draws (N workers: first start to last end), each draw's seconds
and the process CPU seconds per wall second (how many cores it kept busy); the speed-up is the default
layout's wall time over the workers' wall time, median over ``repeats``.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

LAYOUTS = ("default", "one_thread", "workers")


def _child(argv: list[str]) -> int:
    """Train the given draws on fold 1 and print one JSON line per draw, then a summary line."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--space"), ap.add_argument("--max-beats", type=int), ap.add_argument("--folds", type=int)
    ap.add_argument("--epochs", type=int), ap.add_argument("--seed", type=int), ap.add_argument("--threads", type=int)
    ap.add_argument("--draws", type=int), ap.add_argument("--indices"), ap.add_argument("--barrier")
    ap.add_argument("--workers", type=int, default=1)
    a = ap.parse_args(argv)
    import optuna

    from search import StudySettings, set_threads
    from search.study import load_study_data, search_data
    from search.training import fit
    from ecg_data import patient_kfold
    from spaces import SearchSpace

    set_threads(a.threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = SearchSpace.load(a.space)
    if a.epochs:
        space = space.with_overrides(epochs=a.epochs)
    settings = StudySettings(dataset="mitdb", space_yaml=space.to_yaml(), folds=a.folds, seed=a.seed,
                             max_beats=a.max_beats)
    data = search_data(load_study_data(settings, space), settings)
    tr, va = next(patient_kfold(a.folds, seed=a.seed).split(data.y, data.y, data.groups))
    train, val = data.subset(tr), data.subset(va)
    sampler_study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=a.seed))
    configs = [space.suggest(sampler_study.ask()) for _ in range(a.draws)]
    if a.barrier:  # start together with the other workers
        from _common import start_together

        start_together(Path(a.barrier), a.indices, a.workers)
    cpu0, start = resource.getrusage(resource.RUSAGE_SELF), time.time()
    for i in [int(x) for x in a.indices.split(",") if x]:
        t = time.time()
        r = fit(configs[i], train, val, seed=i)
        print(json.dumps({"draw": i, "seconds": time.time() - t, "beats_per_s": r.beats_per_s}), flush=True)
    cpu1, end = resource.getrusage(resource.RUSAGE_SELF), time.time()
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    print(json.dumps({"start": start, "end": end, "cpu_seconds": cpu}), flush=True)
    return 0


def _spawn(common: list[str], threads: int | None, indices: list[int], barrier: Path | None = None,
           workers: int = 1) -> subprocess.Popen:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", *common, "--indices", ",".join(map(str, indices)),
           "--workers", str(workers)]
    if threads:
        cmd += ["--threads", str(threads)]
    if barrier is not None:
        cmd += ["--barrier", str(barrier)]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _collect(proc: subprocess.Popen, what: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    out, err = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"{what} exited with {proc.returncode}:\n{err[-3000:]}")
    rows = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return [r for r in rows if "draw" in r], next(r for r in rows if "start" in r)


def measure(*, space: str, max_beats: int, folds: int, epochs: int | None, seed: int, draws: int, workers: int,
            repeats: int, work: Path, log=print) -> dict[str, Any]:
    """Every layout ``repeats`` times over the same draws; wall seconds, per-draw seconds, cores kept busy."""
    common = ["--space", space, "--max-beats", str(max_beats), "--folds", str(folds), "--seed", str(seed),
              "--draws", str(draws)] + (["--epochs", str(epochs)] if epochs else [])
    everything = list(range(draws))
    reps: list[dict[str, Any]] = []
    for rep in range(repeats):
        one: dict[str, Any] = {}
        for layout in LAYOUTS:
            if layout == "workers":
                barrier = work / f"barrier-{rep}"  # a fresh folder per repeat (``work`` is a new temp dir)
                barrier.mkdir(parents=True)
                procs = [_spawn(common, 1, everything[w::workers], barrier, workers) for w in range(workers)]
                parts = [_collect(p, f"worker {w}") for w, p in enumerate(procs)]
                rows = sorted((r for rs, _ in parts for r in rs), key=lambda r: r["draw"])
                wall = max(s["end"] for _, s in parts) - min(s["start"] for _, s in parts)
                cpu = sum(s["cpu_seconds"] for _, s in parts)
            else:
                rows, s = _collect(_spawn(common, 1 if layout == "one_thread" else None, everything), layout)
                wall, cpu = s["end"] - s["start"], s["cpu_seconds"]
            one[layout] = {"wall_s": wall, "cpu_s": cpu, "cores_busy": cpu / wall if wall > 0 else None,
                           "draw_seconds": [r["seconds"] for r in rows]}
            log(f"repeat {rep + 1}/{repeats}: {layout:<10} {wall:7.1f} s wall, {cpu / wall:.2f} cores busy")
        one["speedup"] = one["default"]["wall_s"] / one["workers"]["wall_s"]
        reps.append(one)
    med = {layout: {k: float(np.median([r[layout][k] for r in reps])) for k in ("wall_s", "cpu_s", "cores_busy")}
           for layout in LAYOUTS}
    return {"repeats": reps, "medians": med, "speedup_median": float(np.median([r["speedup"] for r in reps])),
            "draws": draws, "workers": workers,
            "speedup_rule": "wall seconds of one process at TensorFlow's default threads over wall seconds of the "
                            "workers (1 TF thread each) for the same draws"}


def plot(result: dict[str, Any], path: Path) -> Path:
    """Wall time per layout (bars: median, dots: repeats) and every draw's training seconds per layout."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from _common import save_figure

    m = result["measurement"]
    names = {"default": "1 process,\nTF default threads", "one_thread": "1 process,\n1 TF thread",
             "workers": f"{m['workers']} workers x\n1 TF thread"}
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2))
    x = np.arange(len(LAYOUTS))
    colours = {"default": "#7f7f7f", "one_thread": "#bcbd22", "workers": "#1f77b4"}  # one per layout, both panels
    a.bar(x, [m["medians"][k]["wall_s"] for k in LAYOUTS], color=[colours[k] for k in LAYOUTS])
    for i, k in enumerate(LAYOUTS):
        a.scatter([i] * len(m["repeats"]), [r[k]["wall_s"] for r in m["repeats"]], color="k", s=12, zorder=3)
        a.text(i, m["medians"][k]["wall_s"], f"{m['medians'][k]['cores_busy']:.2f} cores busy", ha="center",
               va="bottom", fontsize=8)
    a.set_xticks(x, [names[k] for k in LAYOUTS], fontsize=8)
    a.set_ylabel(f"wall seconds for {m['draws']} draws (fold 1 each)")
    a.set_title(f"speed-up of the workers: {m['speedup_median']:.2f}x (median of {len(m['repeats'])})", fontsize=10)
    for i, k in enumerate(LAYOUTS):
        per = np.median([r[k]["draw_seconds"] for r in m["repeats"]], axis=0)
        b.plot(np.arange(len(per)), per, "o-", color=colours[k], label=names[k].replace("\n", " "))
    b.set_xlabel("draw")
    b.set_ylabel("training seconds of the draw (median of repeats)")
    b.legend(fontsize=8)
    b.set_title("each draw's own training time", fontsize=10)
    return save_figure(fig, path)


if __name__ == "__main__":
    if sys.argv[1:2] != ["--child"]:
        sys.exit("run this through: python benchmarks/search_efficiency.py --worker-throughput [--quick]")
    sys.exit(_child(sys.argv[2:]))
