"""Single-window inference latency of a ``.tflite`` model with LiteRT (no TensorFlow)."""

from __future__ import annotations

import os
import time

import numpy as np

from .runtime import input_map, is_stateful, load_model_bytes, make_interpreter, quantize_input


def _invoker(tflite_bytes_or_path, threads: int, seed: int):
    """A function running one single-window inference the way a real window costs through the interpreter:
    set the input tensors (a fixed random, z-scored-like window, quantised for int8 inputs), reset the LSTM
    state when the model keeps one, ``invoke()``, read the output."""
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

    return once


def _timed(once, n: int) -> np.ndarray:
    times = np.empty(n, dtype=np.float64)
    clock = time.perf_counter_ns
    for i in range(n):
        t0 = clock()
        once()
        times[i] = (clock() - t0) / 1e6
    return times


def time_invocations(tflite_bytes_or_path: bytes | str | os.PathLike, n_runs: int = 200, warmup: int = 20,
                     threads: int = 1, seed: int = 0) -> np.ndarray:
    """Wall time (ms) of each of ``n_runs`` single-window inferences after ``warmup`` untimed ones
    (see :func:`_invoker` for what one inference includes)."""
    n_runs, warmup, threads = int(n_runs), int(warmup), int(threads)
    if n_runs < 1 or warmup < 0 or threads < 1:
        raise ValueError("n_runs and threads must be >= 1 and warmup >= 0")
    once = _invoker(tflite_bytes_or_path, threads, seed)
    for _ in range(warmup):
        once()
    return _timed(once, n_runs)


class ReferenceClock:
    """Contention-free latency on a shared host, by timing a fixed reference model alongside the candidate.

    On this project's KVM guest the same model runs at one speed or at ~1.8x that for stretches of
    milliseconds to several seconds (another tenant on the physical core; measured in
    ``docs/PI_LATENCY.md``), so 100 consecutive invokes can all fall in a slow stretch and a latency gate
    accepts or rejects the same model by chance. Interleaving short rounds of the candidate with a reference
    model exposes each round's slowdown (the reference's round median over the fastest reference round this
    clock has seen); dividing it out gives the latency of the contention-free host, which is also what the
    Raspberry Pi estimate was calibrated on (a 5th percentile pooled over interleaved rounds)."""

    def __init__(self, reference_bytes: bytes, threads: int = 1, *, probe_seconds: float = 3.0, per_round: int = 10) -> None:
        self.threads = int(threads)
        self.per_round = int(per_round)
        self._ref = _invoker(reference_bytes, self.threads, 0)
        for _ in range(10):
            self._ref()
        self.fastest_ms = float("inf")
        self.probe_rounds = self._probe(float(probe_seconds))

    def _probe(self, seconds: float) -> int:
        """Time reference rounds until both speeds have been seen (the slowest round is over 1.4x the fastest)
        or ``seconds`` have passed: a process that starts in a slow stretch (they last up to seconds) would
        otherwise take the slow speed for the fast one, and its first candidates would look slower than they are."""
        t_end, slowest, n = time.perf_counter() + seconds, 0.0, 0
        while n < 20 or (slowest <= 1.4 * self.fastest_ms and time.perf_counter() < t_end):
            r = float(np.median(_timed(self._ref, self.per_round)))
            self._note(r)
            slowest, n = max(slowest, r), n + 1
            time.sleep(0.01)
        return n

    def _note(self, ref_round_ms: float) -> None:
        self.fastest_ms = min(self.fastest_ms, ref_round_ms)

    def measure(self, tflite_bytes_or_path: bytes | str | os.PathLike, rounds: int = 15, warmup: int = 10, seed: int = 0) -> dict:
        """``host_ms``: the candidate's latency with each round's slowdown divided out (median over rounds);
        ``median_ms`` / ``p90_ms`` / ``mean_ms``: the raw figures of the same invokes; ``slowdown``: the median factor."""
        once = _invoker(tflite_bytes_or_path, self.threads, seed)
        for _ in range(int(warmup)):
            once()
        cand, ref = [], []
        for _ in range(int(rounds)):
            c = _timed(once, self.per_round)
            r = float(np.median(_timed(self._ref, self.per_round)))
            self._note(r)
            cand.append(c)
            ref.append(r)
        slow = np.asarray(ref) / self.fastest_ms
        steady = np.array([np.median(c) for c in cand]) / slow
        raw = np.concatenate(cand)
        return {"host_ms": float(np.median(steady)), "median_ms": float(np.median(raw)),
                "p90_ms": float(np.percentile(raw, 90)), "mean_ms": float(raw.mean()), "slowdown": float(np.median(slow)),
                "n_runs": int(raw.size), "threads": self.threads}


def measure_latency(tflite_bytes_or_path: bytes | str | os.PathLike, n_runs: int = 200, warmup: int = 20,
                    threads: int = 1, seed: int = 0) -> dict[str, float | int]:
    """Median, p90 and mean of :func:`time_invocations`: ``median_ms``, ``p90_ms``, ``mean_ms``,
    ``n_runs``, ``threads``."""
    times = time_invocations(tflite_bytes_or_path, n_runs, warmup, threads, seed)
    return {"median_ms": float(np.median(times)), "p90_ms": float(np.percentile(times, 90)),
            "mean_ms": float(times.mean()), "n_runs": int(n_runs), "threads": int(threads)}
