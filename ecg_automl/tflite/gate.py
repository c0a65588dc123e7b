"""The latency gate: convert a candidate *before* training, time it, and reject it in seconds if it is
over budget. Weights do not change a model's latency, so the untrained model is as good as the trained
one for this; its latency and size also serve as objectives of multi-objective studies."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .latency import ReferenceClock

log = logging.getLogger("search")

#: The fixed model the gate times alongside every candidate (:class:`.latency.ReferenceClock`): a mid-sized
#: member of the family (conv + LSTM + dense, int8 with a float LSTM), so it slows down as candidates do.
REFERENCE_CONFIG: dict[str, Any] = {
    "input_length": 192, "rr_features": True, "stem_filters": 8, "res_blocks": 1, "conv_filters": 24,
    "kernel_size": 9, "pool": "avg", "conv_dropout": 0.0, "lstm_units": 24, "lstm_layers": 1,
    "lstm_bidirectional": False, "lstm_downsample": 8, "dense_layers": 2, "dense_units": 24, "dense_dropout": 0.0,
    "optimizer": "adam", "learning_rate": 1e-3, "batch_size": 128, "epochs": 1, "class_weight": "none",
    "rr_units": 8, "lr_schedule": "constant"}

_CLOCKS: dict[tuple[str, int], Any] = {}


def _representative(config: dict[str, Any], channels: int) -> dict[str, np.ndarray]:
    from spaces import N_RR_FEATURES

    rng = np.random.default_rng(0)
    rep = {"ecg": rng.standard_normal((64, int(config["input_length"]), channels)).astype(np.float32)}
    if config.get("rr_features"):
        rep["rr"] = rng.uniform(0.5, 1.5, (64, N_RR_FEATURES)).astype(np.float32)
    return rep


def reference_clock(mode: str = "int8", threads: int = 1) -> ReferenceClock:
    """The process's :class:`.latency.ReferenceClock` for ``mode`` / ``threads`` (built and converted once,
    ~2 s; it remembers the fastest reference round it has seen for the life of the process)."""
    key = (mode, int(threads))
    if key not in _CLOCKS:
        from spaces import build_model

        from .convert import convert
        from .latency import ReferenceClock

        model = build_model(REFERENCE_CONFIG, channels=1, compile_model=False)
        flat = convert(model, REFERENCE_CONFIG, mode, _representative(REFERENCE_CONFIG, 1) if mode == "int8" else None)
        _CLOCKS[key] = ReferenceClock(flat, threads=threads)
    return _CLOCKS[key]


#: The Optuna constraint a budgeted gate sets on each trial it measures: milliseconds over the budget (feasible at 0
#: or less), which TPE reads to rank rejected configs after feasible ones, nearest the budget first.
CONSTRAINT = "latency_ms_over_budget"


class LatencyGate:
    """Callable gate for :class:`search.objective.CVObjective`: returns ``{"latency": ms, "size": KB}``.

    ``latency`` is the Raspberry Pi 4 estimate from the host measurement (:mod:`.pi_estimate`), or the
    measured latency of a real device when ``target`` names a bench-server (``http://HOST:PORT``). The host
    measurement is ``runs`` invokes in rounds of 10, each followed by a round of a fixed reference model
    (:func:`reference_clock`), whose slowdown is divided out: on a shared host the raw median of the same
    model moved 1.7-2x between calls, and with it the decision; the divided-out figure moved by 3-13 %.
    """

    def __init__(self, budget_ms: float | None = None, *, mode: str = "int8", target: str | None = None,
                 runs: int = 100, threads: int = 1, members: int = 1, channels: int = 1) -> None:
        self.budget_ms = budget_ms
        self.channels = int(channels)  # the data's leads: what the deployed model reads
        self.members = int(members)  # the final model averages this many copies (--final-members, --final-model folds)
        self.mode = mode
        self.target = target
        self.runs = runs
        self.threads = threads
        if target is None:  # a bad $ECG_AUTOML_PI_CALIBRATION fails here, and a host mismatch is said, before trial 0
            from .pi_estimate import active_calibration

            active_calibration()
        else:  # so does a bench-server that cannot be reached
            from .bench_server import check_target

            check_target(target)

    def measure(self, config: dict[str, Any], channels: int | None = None) -> dict[str, Any]:
        """Convert the untrained model for ``config`` (``members`` copies averaged, as the final model will be)
        and time it; no training involved. ``channels`` None: the gate's own (the study's data)."""
        from spaces import build_ensemble, build_model

        channels = self.channels if channels is None else int(channels)

        from .convert import convert
        from .stats import model_stats

        # once per process (reference conversion and start-up probe, a few seconds): not this candidate's cost
        clock = reference_clock(self.mode, self.threads)
        t0 = time.perf_counter()
        model = build_model(config, channels=channels, compile_model=False)
        if self.members > 1:  # what will be deployed: the members run one after another in one file. Each
            # member its own (random) weights: the converter would store identical ones once, and undersize it
            others = [build_model(config, channels=channels, compile_model=False) for _ in range(self.members - 1)]
            model = build_ensemble(config, [model, *others], channels=channels)
        rep = _representative(config, channels) if self.mode == "int8" else None
        flat = convert(model, config, self.mode, rep)
        # ``host_ms``: contention-free (each round's slowdown, seen on the reference model, divided out);
        # host_median_ms / host_p90_ms: the raw figures of the same invokes, slow stretches included
        host = clock.measure(flat, rounds=max(1, self.runs // 10))
        out: dict[str, Any] = {"host_ms": host["host_ms"], "host_median_ms": host["median_ms"],
                               "host_p90_ms": host["p90_ms"], "host_slowdown": host["slowdown"],
                               "size_kb": len(flat) / 1024, "gate_channels": channels, **model_stats(model)}
        if self.target:
            from .bench_server import MOVED_HINT, remote_latency

            remote = remote_latency(self.target, flat, runs=self.runs, threads=self.threads, hint=MOVED_HINT)
            out.update(device_median_ms=remote["median_ms"], device_p90_ms=remote["p90_ms"])
            if isinstance(remote.get("device"), dict):  # which board answered at the URL, with the trial
                out["latency_device"] = remote["device"]
            out["latency_ms"] = remote["median_ms"]
        else:
            from .pi_estimate import estimate_pi4_ms

            out["pi4_estimate_ms"] = estimate_pi4_ms(host["host_ms"], "int8" if self.mode == "int8" else "float32")
            out["latency_ms"] = out["pi4_estimate_ms"]
        out["gate_seconds"] = time.perf_counter() - t0
        return out

    def __call__(self, config: dict[str, Any], trial: Any) -> dict[str, float]:
        """Measure ``config``, keep the figures on ``trial`` and prune it when it is over the budget."""
        import optuna

        m = self.measure(config)
        for key, value in m.items():
            trial.set_user_attr(key, value)
        if self.budget_ms is not None and hasattr(trial, "set_constraint"):
            # an over-budget trial ends PRUNED without a value, and TPE filled its "good" group with such trials, all
            # alike to it, while few had finished: with the ms over the budget as a constraint it ranks them after
            # the feasible ones and by how far over they are
            trial.set_constraint(CONSTRAINT, float(m["latency_ms"]) - self.budget_ms)
        if self.budget_ms is not None and m["latency_ms"] > self.budget_ms:
            reason = (f"latency {m['latency_ms']:.3f} ms > budget {self.budget_ms:g} ms "
                      f"({self.mode}, measured before training in {m['gate_seconds']:.1f} s)")
            trial.set_user_attr("prune_reason", reason)
            raise optuna.TrialPruned(reason)
        return {"latency": float(m["latency_ms"]), "size": float(m["size_kb"])}
