#!/usr/bin/env python
"""Re-measure the host side of the Raspberry Pi 4 latency calibration and re-fit the host -> Pi model.

For every calibration point in :data:`ecg_automl.tflite.pi_estimate.CALIBRATION` (a published Raspberry Pi 4
TFLite latency of a standard architecture) this script rebuilds the same architecture with
``keras.applications`` (random weights: latency does not depend on weight values), converts it with
``tf.lite.TFLiteConverter`` (float32, or full-integer int8 with a random representative dataset), and times
it on *this* machine the way :func:`ecg_automl.tflite.measure_latency` does (LiteRT interpreter, 1 thread,
default delegates; set inputs, invoke, read the output), in interleaved rounds. Per model it keeps

* ``host_ms``: the 5th percentile of all timed invokes pooled over the rounds (the figure that is fitted: on a
  shared machine it is the contention-free latency, and it is what the median is on a quiet machine);
* ``host_median_ms``: the median over rounds of the per-round medians (load-dependent, printed for reference);

then fits ``log(pi_ms) = a + b*log(host_ms)`` per Pi thread count with
:func:`ecg_automl.tflite.pi_estimate.fit_calibration`, prints the table, the fits, their leave-one-out
relative errors, and the constants to paste into ``ecg_automl/tflite/pi_estimate.py``.

With ``--json FILE`` every measurement is written to FILE (the machine, versions and commit included, as in
every benchmark result file) and a plot next to it (FILE with ``.png``): the published Pi latencies against
this host's, with the fitted lines.

``--quick`` is the smoke run (about a minute): only the three smallest calibration models, 2 short rounds, and
no fit (a fit needs every point); its plot compares this host's timings of those models with the calibration
host's. A ``--quick`` file cannot be used as ``ECG_AUTOML_PI_CALIBRATION``.

Usage (repository root, venv with the ``search`` extra: TensorFlow is needed for the conversion)::

    python benchmarks/calibrate_pi.py                    # 15 rounds (~3 min on 2 vCPUs)
    python benchmarks/calibrate_pi.py --rounds 21 --json calib.json   # + calib.png
    python benchmarks/calibrate_pi.py --quick --json /tmp/calib_quick.json   # smoke run (~1 min)
    python benchmarks/calibrate_pi.py --fit-only         # no measuring: re-fit the values in pi_estimate.py
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import _common as C  # noqa: E402
from ecg_automl.tflite.pi_estimate import (CALIBRATION, HOST_CPU_NAME, fit_calibration, fit_loglog,  # noqa: E402
                                           fit_ratio, host_cpu_name, loo_errors)

#: The models ``--quick`` measures: the three smallest (each converts in seconds and runs under 1 ms here).
QUICK_MODELS = ("mobilenet_v1-0.25-128-float32", "mobilenet_v1-0.25-128-int8", "mobilenet_v2-0.35-96-float32")
#: ``--rounds``, ``--min-runs``, ``--min-seconds`` of each mode, unless given.
FULL = {"rounds": 15, "min_runs": 50, "min_seconds": 0.5}
QUICK = {"rounds": 2, "min_runs": 20, "min_seconds": 0.1}


# ----------------------------------------------------------------------------------------------------------
# models
# ----------------------------------------------------------------------------------------------------------
def build_keras(arch: str, alpha: float, res: int):
    """The Keras model of a calibration architecture (1000 classes, random weights)."""
    import keras

    shape = (res, res, 3)
    if arch == "mobilenet_v1":
        return keras.applications.MobileNet(input_shape=shape, alpha=alpha, weights=None)
    if arch == "mobilenet_v2":
        return keras.applications.MobileNetV2(input_shape=shape, alpha=alpha, weights=None)
    if arch == "mobilenet_v3_large":
        return keras.applications.MobileNetV3Large(input_shape=shape, alpha=alpha, weights=None,
                                                   include_preprocessing=False)
    if arch == "mobilenet_v3_small":
        return keras.applications.MobileNetV3Small(input_shape=shape, alpha=alpha, weights=None,
                                                   include_preprocessing=False)
    raise ValueError(f"unknown architecture {arch!r}")


def convert(model, dtype: str, res: int, seed: int = 0) -> bytes:
    """float32, or full-integer int8 (int8 input/output) calibrated on 16 random images in [-1, 1]."""
    import tensorflow as tf

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    if dtype == "int8":
        rng = np.random.default_rng(seed)

        def representative():
            for _ in range(16):
                yield [rng.uniform(-1.0, 1.0, (1, res, res, 3)).astype(np.float32)]

        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = representative
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
    elif dtype != "float32":
        raise ValueError(f"unknown dtype {dtype!r}")
    return bytes(conv.convert())


def model_key(p: dict) -> str:
    return f"{p['arch']}-{p['alpha']:g}-{p['res']}-{p['dtype']}"


def get_models(points, cache: Path) -> dict[str, bytes]:
    """Flatbuffers of every distinct (arch, alpha, res, dtype), converted once and cached on disk."""
    cache.mkdir(parents=True, exist_ok=True)
    out: dict[str, bytes] = {}
    for p in points:
        key = model_key(p)
        if key in out:
            continue
        path = cache / f"{key}.tflite"
        if not path.exists():
            import keras

            t0 = time.time()
            keras.utils.set_random_seed(0)
            path.write_bytes(convert(build_keras(p["arch"], p["alpha"], p["res"]), p["dtype"], p["res"]))
            keras.backend.clear_session()
            print(f"  converted {key} ({path.stat().st_size / 1e6:.2f} MB, {time.time() - t0:.0f} s)", flush=True)
        out[key] = path.read_bytes()
    return out


# ----------------------------------------------------------------------------------------------------------
# timing
# ----------------------------------------------------------------------------------------------------------
def loadavg() -> float:
    try:
        return os.getloadavg()[0]
    except OSError:  # pragma: no cover
        return float("nan")


def time_invokes(model_bytes: bytes, n_runs: int, warmup: int = 10, seed: int = 0) -> np.ndarray:
    """Per-invoke wall times (ms), timed exactly as :func:`ecg_automl.tflite.measure_latency` times them
    (1 thread), all returned so that low quantiles can be taken as well as the median."""
    from ecg_automl.tflite.latency import time_invocations

    return time_invocations(model_bytes, n_runs, warmup, threads=1, seed=seed)


def measure_host(models: dict[str, bytes], rounds: int, min_runs: int, min_seconds: float,
                 seed: int = 0) -> dict[str, dict]:
    """Interleaved rounds: every round times every model once, in a shuffled order, with a fresh interpreter
    (10 warm-up invokes, then at least ``min_runs`` timed ones and at least ``min_seconds``)."""
    rng = random.Random(seed)
    keys = list(models)
    med: dict[str, list[float]] = {k: [] for k in keys}
    pooled: dict[str, list[np.ndarray]] = {k: [] for k in keys}
    loads: list[float] = []
    n_runs = {}
    for k in keys:  # a short probe sets the number of runs that fills min_seconds
        probe = float(np.median(time_invokes(models[k], 5, warmup=3)))
        n_runs[k] = max(min_runs, int(min_seconds * 1000.0 / max(probe, 1e-3)))
    for r in range(rounds):
        rng.shuffle(keys)
        loads.append(loadavg())
        for k in keys:
            t = time_invokes(models[k], n_runs[k])
            med[k].append(float(np.median(t)))
            pooled[k].append(t)
        print(f"  round {r + 1}/{rounds}: load1={loads[-1]:.2f}", flush=True)
    loads.append(loadavg())
    out = {}
    for k in keys:
        allt = np.concatenate(pooled[k])
        out[k] = {"host_ms": float(np.percentile(allt, 5)), "host_median_ms": statistics.median(med[k]),
                  "host_min_ms": float(allt.min()), "round_medians": med[k], "n_runs": n_runs[k],
                  "n_total": int(allt.size), "load1": loads}
    return out


# ----------------------------------------------------------------------------------------------------------
# report
# ----------------------------------------------------------------------------------------------------------
def _loo(errs: list[float]) -> str:
    return f"LOO rel. error median {100 * statistics.median(errs):.0f} %, max {100 * max(errs):.0f} %"


def alternatives(points: list[dict], key: str) -> list[str]:
    """Other candidate fits (constant ratio; per dtype) for comparison with the shipped one."""
    lines = []
    for threads in sorted({p["pi_threads"] for p in points}):
        for dtype in (None, "float32", "int8"):
            g = [p for p in points if p["pi_threads"] == threads and (dtype is None or p["dtype"] == dtype)]
            if len(g) < 3:
                continue
            x, y = [p[key] for p in g], [p["pi_ms"] for p in g]
            a, b = fit_loglog(x, y)
            tag = f"Pi {threads} thr, {dtype or 'all dtypes'}, n={len(g)}"
            lines.append(f"  {tag:32s} log-log a={a:+.4f} b={b:.4f}: {_loo(loo_errors(x, y, slope=True))}")
            lines.append(f"  {'':32s} ratio {np.exp(fit_ratio(x, y)):8.3f}:      {_loo(loo_errors(x, y, slope=False))}")
    return lines


def plot(path: Path, points: list[dict], fit: dict | None, quick: bool) -> Path:
    """The calibration as a person would look at it. Full: published Pi latency against this host's (log-log),
    one colour per Pi thread count, with the fitted lines. Quick: this host's timing of each measured model
    against the calibration host's (the shipped ``host_ms``)."""
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 5.2))
    if quick:
        done = [p for p in points if p.get("host_ms") is not None]
        shipped = {q["id"]: q["host_ms"] for q in CALIBRATION}
        seen = {}
        for p in done:
            seen.setdefault(model_key(p), p)
        names = list(seen)
        x = np.arange(len(names))
        ax.bar(x - 0.2, [shipped[seen[k]["id"]] for k in names], 0.4, label=f"calibration host ({HOST_CPU_NAME}, shipped host_ms)")
        ax.bar(x + 0.2, [seen[k]["host_ms"] for k in names], 0.4, label=f"this host ({host_cpu_name()})")
        ax.set_xticks(x, [k.replace("-", " ", 1) for k in names], fontsize=8)
        ax.set_ylabel("1-thread LiteRT latency, 5th percentile (ms)")
        ax.set_title("--quick: three small calibration models (no fit; run without --quick for one)", fontsize=10)
    else:
        colours = {1: "tab:blue", 4: "tab:orange"}
        for p in points:
            ax.scatter(p["host_ms"], p["pi_ms"], color=colours.get(p["pi_threads"], "grey"),
                       marker="o" if p["dtype"] == "float32" else "s", s=36, zorder=3)
            ax.annotate(p["id"], (p["host_ms"], p["pi_ms"]), fontsize=6, xytext=(3, 2), textcoords="offset points")
        for name, f in (fit or {}).items():
            lo, hi = f["host_range_ms"]
            xs = np.geomspace(lo, hi, 50)
            style = {"pi1": ("tab:blue", "-"), "pi4": ("tab:orange", "-"), "pi4_float32": ("tab:orange", ":")}
            c, ls = style.get(name, ("grey", "--"))
            ax.plot(xs, np.exp(f["a"]) * xs ** f["b"], color=c, ls=ls,
                    label=f"fit {name}: log pi = {f['a']:+.3f} + {f['b']:.3f} log host (n={f['n']})")
        ax.scatter([], [], color="grey", marker="o", label="float32")
        ax.scatter([], [], color="grey", marker="s", label="int8 / uint8")
        ax.set_xscale("log")
        ax.set_yscale("log")
        for axis in (ax.xaxis, ax.yaxis):  # plain numbers, no crowded 3x10^-1 minor labels
            axis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
            axis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
            axis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel(f"this host: 1-thread LiteRT latency, 5th percentile (ms)\n{host_cpu_name()}")
        ax.set_ylabel("published Raspberry Pi 4 latency (ms)")
        ax.set_title("Pi 4 calibration: blue = 1 Pi thread, orange = 4 Pi threads", fontsize=10)
    ax.legend(fontsize=7)
    ax.grid(True, which="both", alpha=0.3)
    return C.save_figure(fig, path)


def main(argv=None) -> int:
    ap = C.parser(__doc__)
    ap.add_argument("--quick", action="store_true",
                    help="smoke run (~1 min): the 3 smallest models, 2 short rounds, no fit; its --json file cannot "
                         "be used as ECG_AUTOML_PI_CALIBRATION")
    ap.add_argument("--rounds", type=C.at_least(1), default=None,
                    help=f"interleaved rounds, every model timed once per round (default {FULL['rounds']}, "
                         f"--quick {QUICK['rounds']})")
    ap.add_argument("--min-runs", type=C.at_least(1), default=None,
                    help=f"timed invokes per model per round (at least; default {FULL['min_runs']}, "
                         f"--quick {QUICK['min_runs']})")
    ap.add_argument("--min-seconds", type=C.above_zero, default=None,
                    help=f"...and at least this long per round (seconds, default {FULL['min_seconds']}, "
                         f"--quick {QUICK['min_seconds']})")
    ap.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "ecg-automl" / "pi-calibration",
                    help="converted .tflite calibration models, reused by later runs (default ~/.cache/ecg-automl/"
                         "pi-calibration)")
    ap.add_argument("--json", type=C.out_file, default=None,
                    help="write every measurement here (for ECG_AUTOML_PI_CALIBRATION=FILE; its folder is checked "
                         "before measuring), and the plot next to it (.png)")
    ap.add_argument("--fit-only", action="store_true", help="no measuring: fit the host values in pi_estimate.py")
    args = ap.parse_args(argv)
    if args.fit_only and args.json:
        ap.error("--json writes measurements and --fit-only measures nothing: give one of them")
    if args.fit_only and args.quick:
        ap.error("--quick measures three models and --fit-only measures nothing: give one of them")
    C.apply_mode(args, QUICK, FULL)

    points = [dict(p) for p in CALIBRATION]
    print(f"host CPU: {host_cpu_name()} ({os.cpu_count()} logical CPUs), {platform.platform()}")
    if args.fit_only:
        return report(points)
    result, t0 = C.start("calibrate_pi", "quick" if args.quick else "measure")
    import ai_edge_litert

    print(f"LiteRT {getattr(ai_edge_litert, '__version__', '?')}; load1 before: {loadavg():.2f}")
    measure = [p for p in points if model_key(p) in QUICK_MODELS] if args.quick else points
    models = get_models(measure, args.cache)
    stats = measure_host(models, args.rounds, args.min_runs, args.min_seconds)
    for p in points:
        s = stats.get(model_key(p))
        # --quick: an unmeasured point keeps no host value, so its file cannot pass for a calibration
        p["host_ms"] = round(s["host_ms"], 3) if s else None
        p["host_median_ms"] = round(s["host_median_ms"], 3) if s else None
    loads = next(iter(stats.values()))["load1"]
    print(f"load1 during the rounds: min {min(loads):.2f}, median {statistics.median(loads):.2f}, "
          f"max {max(loads):.2f}")
    fit = None if args.quick else fit_calibration(points)[0]
    if args.json:
        result.update({"host_cpu": host_cpu_name(), "platform": platform.platform(),
                       "settings": {"rounds": args.rounds, "min_runs": args.min_runs, "min_seconds": args.min_seconds,
                                    "models_measured": sorted(stats)},
                       "points": points, "stats": stats, "fit": fit})
        C.write_json(args.json, C.finish(result, time.perf_counter() - t0))
        print(f"wrote {args.json} and {plot(args.json.with_suffix('.png'), points, fit, args.quick)}")
    if args.quick:
        shipped = {q["id"]: q["host_ms"] for q in CALIBRATION}
        print(f"\n--quick: {len(stats)} of {len({model_key(p) for p in points})} models measured, no fit "
              f"(run without --quick for one)\n{'model':34s} {'host_ms':>8s} {'shipped':>8s} {'ratio':>6s}")
        for key in stats:
            p = next(q for q in points if model_key(q) == key)
            print(f"{key:34s} {p['host_ms']:8.3f} {shipped[p['id']]:8.3f} {p['host_ms'] / shipped[p['id']]:6.2f}")
        return 0
    return report(points)


def report(points: list[dict]) -> int:
    """Print the calibration table, the shipped fit with its leave-one-out errors, alternatives, and the
    constants to paste into ``pi_estimate.py``."""
    print(f"\n{'id':24s} {'model':26s} {'dtype':7s} {'thr':>3s} {'pi_ms':>7s} {'host_ms':>8s} {'ratio':>5s} "
          f"{'host_med':>8s}")
    for p in points:
        name = f"{p['arch']} {p['alpha']:g} {p['res']}"
        print(f"{p['id']:24s} {name:26s} {p['dtype']:7s} {p['pi_threads']:3d} {p['pi_ms']:7.2f} "
              f"{p['host_ms']:8.3f} {p['pi_ms'] / p['host_ms']:5.1f} {p['host_median_ms']:8.3f}")

    fit, err = fit_calibration(points)
    print("\nshipped fit (host_ms = pooled 5th percentile):")
    for name, f in fit.items():
        e = err[name]
        print(f"  {name:14s} log(pi) = {f['a']:+.4f} + {f['b']:.4f} log(host)  n={f['n']}  "
              f"LOO rel. error median {100 * e['loo_median']:.0f} %, max {100 * e['loo_max']:.0f} %  "
              f"(worst: {e['loo_worst']})")
    print("\nalternatives on host_ms (pooled 5th percentile):")
    print("\n".join(alternatives(points, "host_ms")))
    print("\nalternatives on host_median_ms (median; depends on the machine's load):")
    print("\n".join(alternatives(points, "host_median_ms")))
    print("\nhost values to paste into CALIBRATION (id: host_ms, host_median_ms):")
    for p in points:
        print(f"  {p['id']}: {p['host_ms']}, {p['host_median_ms']}")
    print("\nFIT =", json.dumps(fit, indent=1))
    print("CALIBRATION_ERROR =", json.dumps(err, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
