"""The latency gate: convert a candidate *before* training, time it, and reject it in seconds if it is
over budget. Weights do not change a model's latency, so the untrained model is as good as the trained
one for this; its latency and size also serve as objectives of multi-objective studies."""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np

log = logging.getLogger("search")


class LatencyGate:
    """Callable gate for :class:`search.objective.CVObjective`: returns ``{"latency": ms, "size": KB}``.

    ``latency`` is the Raspberry Pi 4 estimate from the host measurement (:mod:`.pi_estimate`), or the
    measured latency of a real device when ``target`` names a bench-server (``http://HOST:PORT``).
    """

    def __init__(self, budget_ms: float | None = None, *, mode: str = "int8", target: str | None = None,
                 runs: int = 100, threads: int = 1, members: int = 1):
        self.budget_ms = budget_ms
        self.members = int(members)  # the final model averages this many copies (search --final-members)
        self.mode = mode
        self.target = target
        self.runs = runs
        self.threads = threads

    def measure(self, config: dict[str, Any], channels: int = 1) -> dict[str, Any]:
        """Convert the untrained model for ``config`` (``members`` copies averaged, as the final model will be)
        and time it; no training involved."""
        from spaces import N_RR_FEATURES, build_ensemble, build_model

        from .convert import convert
        from .latency import measure_latency
        from .stats import model_stats

        t0 = time.perf_counter()
        model = build_model(config, channels=channels, compile_model=False)
        if self.members > 1:  # what will be deployed: the members run one after another in one file. Each
            # member its own (random) weights: the converter would store identical ones once, and undersize it
            others = [build_model(config, channels=channels, compile_model=False) for _ in range(self.members - 1)]
            model = build_ensemble(config, [model, *others], channels=channels)
        rng = np.random.default_rng(0)
        rep = {"ecg": rng.standard_normal((64, int(config["input_length"]), channels)).astype(np.float32)}
        if config.get("rr_features"):
            rep["rr"] = rng.uniform(0.5, 1.5, (64, N_RR_FEATURES)).astype(np.float32)
        flat = convert(model, config, self.mode, rep if self.mode == "int8" else None)
        host = measure_latency(flat, n_runs=self.runs, warmup=10, threads=self.threads)
        out: dict[str, Any] = {"host_median_ms": host["median_ms"], "host_p90_ms": host["p90_ms"],
                               "size_kb": len(flat) / 1024, **model_stats(model)}
        if self.target:
            from .bench_server import remote_latency

            remote = remote_latency(self.target, flat, runs=self.runs, threads=self.threads)
            out.update(device_median_ms=remote["median_ms"], device_p90_ms=remote["p90_ms"])
            out["latency_ms"] = remote["median_ms"]
        else:
            from .pi_estimate import estimate_pi4_ms

            out["pi4_estimate_ms"] = estimate_pi4_ms(host["median_ms"], "int8" if self.mode == "int8" else "float32")
            out["latency_ms"] = out["pi4_estimate_ms"]
        out["gate_seconds"] = time.perf_counter() - t0
        return out

    def __call__(self, config: dict[str, Any], trial) -> dict[str, float]:
        import optuna

        m = self.measure(config)
        for key, value in m.items():
            trial.set_user_attr(key, value)
        if self.budget_ms is not None and m["latency_ms"] > self.budget_ms:
            reason = (f"latency {m['latency_ms']:.3f} ms > budget {self.budget_ms:g} ms "
                      f"({self.mode}, measured before training in {m['gate_seconds']:.1f} s)")
            trial.set_user_attr("prune_reason", reason)
            raise optuna.TrialPruned(reason)
        return {"latency": float(m["latency_ms"]), "size": float(m["size_kb"])}
