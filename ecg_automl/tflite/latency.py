"""Single-window inference latency of a ``.tflite`` model with LiteRT (no TensorFlow)."""

from __future__ import annotations

import time

import numpy as np

from .runtime import input_map, is_stateful, load_model_bytes, make_interpreter, quantize_input


def time_invocations(tflite_bytes_or_path, n_runs: int = 200, warmup: int = 20, threads: int = 1,
                     seed: int = 0) -> np.ndarray:
    """Wall time (ms) of each of ``n_runs`` single-window inferences after ``warmup`` untimed ones.

    Each timed run is what a real window costs through the interpreter: set the input tensors (a fixed
    random, z-scored-like window, quantised for int8 inputs), reset the LSTM state when the model keeps
    one, ``invoke()``, read the output.
    """
    n_runs, warmup, threads = int(n_runs), int(warmup), int(threads)
    if n_runs < 1 or warmup < 0 or threads < 1:
        raise ValueError("n_runs and threads must be >= 1 and warmup >= 0")
    model = load_model_bytes(tflite_bytes_or_path)
    interp = make_interpreter(model, threads)
    inputs = input_map(interp)
    out_index = interp.get_output_details()[0]["index"]
    stateful = is_stateful(model)
    rng = np.random.default_rng(seed)
    feed = {d["index"]: quantize_input(rng.standard_normal([1, *d["shape"][1:]]).astype(np.float32), d)
            for d in inputs.values()}

    def once():
        for index, x in feed.items():
            interp.set_tensor(index, x)
        if stateful:
            interp.reset_all_variables()
        interp.invoke()
        interp.get_tensor(out_index)

    for _ in range(warmup):
        once()
    times = np.empty(n_runs, dtype=np.float64)
    clock = time.perf_counter_ns
    for i in range(n_runs):
        t0 = clock()
        once()
        times[i] = (clock() - t0) / 1e6
    return times


def measure_latency(tflite_bytes_or_path, n_runs: int = 200, warmup: int = 20, threads: int = 1,
                    seed: int = 0) -> dict:
    """Median, p90 and mean of :func:`time_invocations`: ``median_ms``, ``p90_ms``, ``mean_ms``,
    ``n_runs``, ``threads``."""
    times = time_invocations(tflite_bytes_or_path, n_runs, warmup, threads, seed)
    return {"median_ms": float(np.median(times)), "p90_ms": float(np.percentile(times, 90)),
            "mean_ms": float(times.mean()), "n_runs": int(n_runs), "threads": int(threads)}
