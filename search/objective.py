"""The per-trial objective: K patient-grouped folds, the running fold mean reported every epoch for pruning."""

from __future__ import annotations

import logging
import os
import re
import socket
from typing import Any, Callable, Sequence

import numpy as np
import optuna

from ecg_data import BeatDataset, grouped_splits
from spaces import SearchSpace, why_config_cannot_build

from . import interrupt
from ._trial_results import (StudyCurves, fold_record, log_trial_results, losing, record_epoch, summarise_folds,
                             undefined_value)
from .metrics import epoch_signal, fold_signal
from .storage import HEARTBEAT_ATTR
from .tracking import CURVES_LOST, EPOCH_CURVES, FOLDS_LOST, Tracker, trial_tags
from .training import fit, tf_threads

log = logging.getLogger("search")


def worker_id() -> str:
    """host:pid of this process, stored on each trial it runs (user attr and MLflow tag ``worker``)."""
    return f"{socket.gethostname()}:{os.getpid()}"


#: A gate runs before training and may reject a candidate (raise optuna.TrialPruned) or add objectives.
Gate = Callable[[dict[str, Any], optuna.Trial], dict[str, float]]


#: What a trial records about its own run: a retry of a dead worker's trial (Optuna's heartbeat retry callback)
#: starts with copies of them, which must not pass for its own (``mlflow_run_id`` made its results overwrite the
#: dead trial's MLflow run when the tracking store was down as the retry started, and ``sync`` then flipped that
#: run between the two trials' states).
_RUN_ATTRS = {"mlflow_run_id": None, "threshold": None, "mean_metrics": {}, "fold_metrics": [], EPOCH_CURVES: {},
              CURVES_LOST: False, FOLDS_LOST: False, "fail_reason": None, "prune_reason": None, "interrupted": False,
              "requeued": False, "stops_study": False}


def _start_fresh(trial: optuna.Trial) -> None:
    """Record this worker's heartbeat interval on ``trial`` (another worker judges its heartbeat by it), and clear
    what it holds of a run before it ran, which can only be inherited, e.g. by a retry (:data:`_RUN_ATTRS`)."""
    interval = trial.storage.get_heartbeat_interval() if hasattr(trial.storage, "get_heartbeat_interval") else None
    if interval:
        trial.set_user_attr(HEARTBEAT_ATTR, interval)
    held = trial.storage.get_trial(trial._trial_id).user_attrs  # before it ran: copies (the retry callback's)
    for key, empty in _RUN_ATTRS.items():
        if key in held:
            trial.set_user_attr(key, empty)


class CVObjective:
    """Optuna objective: draws a config from the space, trains it on every fold, returns the mean
    validation metric (plus extra objectives, e.g. latency and size, from the gates)."""

    def __init__(
        self,
        data: BeatDataset,
        space: SearchSpace,
        cv: Any,
        *,
        metric: str = "f1",
        seed: int = 0,
        tracker: Tracker | None = None,
        parent_run_id: str | None = None,
        gates: Sequence[Gate] = (),
        objectives: Sequence[str] = ("quality",),
        progress: Any = None,
        verbose: int = 0,
    ) -> None:
        self.data = data
        self.space = space
        self.metric = metric
        self.seed = seed
        self.tracker = tracker
        self.parent_run_id = parent_run_id
        self.gates = list(gates)
        self.objectives = list(objectives)
        self.progress = progress
        self.verbose = verbose
        self.interrupted: list[int] = []  # numbers of the trials Ctrl-C/SIGTERM stopped in this process
        held_out = int(np.count_nonzero(np.asarray(data.split) == "test"))
        if held_out:  # the folds would train and validate on the test patients, and the final test then reuse them
            raise ValueError(f"{data.name}: the data holds {held_out:,} beats of held-out test patients; the search "
                             f"cross-validates on the search patients only: pass data.search_part()")
        # The folds are fixed once, so every trial is judged on the same patients.
        self.folds = list(grouped_splits(cv, data.X, data.y, data.groups))

    def _status(self, text: str) -> None:
        if self.progress is not None:
            self.progress.set_postfix_str(text, refresh=True)

    def __call__(self, trial: optuna.Trial) -> float | tuple[float, ...]:
        """Train and score one trial's config on every fold (logged to MLflow); its objective value(s)."""
        run_id = None
        # Everything from the first suggestion on sits in the try: a Ctrl-C while the MLflow run is being
        # opened (a few hundred ms on SQLite) must mark the trial interrupted too, or it is never redone.
        try:
            _start_fresh(trial)
            config = self.space.suggest(trial)
            trial.set_user_attr("config", config)
            trial.set_user_attr("objective_names", self.objectives)
            trial.set_user_attr("worker", worker_id())  # which machine/process ran it (scale-out, dead workers)
            trial.set_user_attr("tf_threads", tf_threads())  # the values depend on it (docs/REPRODUCIBILITY.md)
            if self.tracker is not None and self.parent_run_id is not None:
                tags = trial_tags(trial.storage.get_trial(trial._trial_id))
                run_id = self.tracker.start_trial(self.parent_run_id, trial.number, trial.study.study_name,
                                                  config, tags)
                if run_id is not None:
                    trial.set_user_attr("mlflow_run_id", run_id)
            return self._run(trial, config, run_id)
        except optuna.TrialPruned:
            raise
        except KeyboardInterrupt:
            self._mark_interrupted(trial, run_id)
            raise
        except Exception as exc:
            if interrupt.requested():
                # Ctrl-C landed inside TensorFlow, which turned it into another error (seen: "TypeError: Failed
                # to convert elements of (None,) to Tensor"): the trial was interrupted, not broken.
                self._mark_interrupted(trial, run_id)
                raise KeyboardInterrupt from exc
            reason = _reason(exc)
            trial.set_user_attr("fail_reason", reason)
            if getattr(exc, "stops_study", False):  # the setup, not this config (a bench-server gone): the run
                trial.set_user_attr("stops_study", True)  # stops at once, and the trial is redone on the next run
                self._requeue(trial, next_run=False)
            raise

    def _mark_interrupted(self, trial: optuna.Trial, run_id: str | None) -> None:
        """Mark the trial (and its MLflow run) stopped by Ctrl-C or SIGTERM, so a resumed study redoes it."""
        reason = f"interrupted ({interrupt.cause()})"
        self.interrupted.append(trial.number)
        trial.set_user_attr("fail_reason", reason)
        trial.set_user_attr("interrupted", True)
        self._requeue(trial)  # redone now, not at the next start: a worker still running takes it
        if self.tracker is not None and run_id is not None:
            self.tracker.set_tags(run_id, {"optuna.state": "FAIL", "fail_reason": reason})
            self.tracker._safe("end of trial run", self.tracker.client.set_terminated, run_id, "FAILED")

    @staticmethod
    def _requeue(trial: optuna.Trial, next_run: bool = True) -> None:
        """Enqueue ``trial``'s params again (a waiting trial goes first), marked ``requeued``. ``next_run``: an
        interrupted trial that cannot be enqueued now is by the next run of the command (_requeue_interrupted)."""
        try:
            trial.study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number}, skip_if_exists=False)
            trial.set_user_attr("requeued", True)
        except Exception as exc:
            log.warning("trial %d: could not enqueue its redo (%s)%s", trial.number, exc,
                        "; the next run will" if next_run else "")

    def _run(self, trial: optuna.Trial, config: dict[str, Any], run_id: str | None):
        cannot = why_config_cannot_build(config)
        if cannot:  # pruned before anything runs: it failed in Keras, and ten such draws in a row stopped the search
            trial.set_user_attr("prune_reason", cannot)
            raise optuna.TrialPruned(cannot)
        extra: dict[str, float] = {}
        for gate in self.gates:
            extra.update(gate(config, trial))
        if extra and self.tracker is not None:
            self.tracker.log_metrics(run_id, extra)

        scores: list[float] = []
        fold_metrics: list[dict[str, float]] = []
        curves: dict[str, list[float | None]] = {}  # "fold{k}.{name}": one value per epoch
        in_study = StudyCurves(trial.number)
        oof = np.full(len(self.data), np.nan)
        fold_of = np.full(len(self.data), -1)
        result = None
        n_folds = len(self.folds)
        single = len(self.objectives) == 1  # Optuna cannot prune multi-objective trials
        epochs = int(config["epochs"])
        stride = max(self.space.epochs_range[1], epochs)  # steps per fold, the same for every trial of the space
        for k, (tr, va) in enumerate(self.folds):
            self._status(f"trial {trial.number} fold {k + 1}/{n_folds}")
            train, val = self.data.subset(tr), self.data.subset(va)

            def on_epoch(epoch: int, logs: dict[str, float], k=k) -> None:
                if record_epoch(curves, k, epoch, logs, self.tracker, run_id) and not trial.user_attrs.get(CURVES_LOST):
                    trial.set_user_attr(CURVES_LOST, True)  # `sync` looks for the points MLflow lacks
                # kept in the study too, so `ecg-automl sync` can draw them in MLflow after a tracking outage (a
                # copy: an in-memory study would keep, and show, the dict this trial goes on filling)
                if in_study.update(curves, k, epoch):
                    trial.set_user_attr(EPOCH_CURVES, in_study.kept)
                if single and k < n_folds - 1:  # the last fold finishes: by then the work is nearly done
                    self._report_epoch(trial, scores, k, epoch, epochs, n_folds, logs, stride)

            result = fit(config, train, val, seed=self.seed * 100003 + trial.number * 101 + k,
                         on_epoch_end=on_epoch, verbose=self.verbose)
            # NaN for a fold whose validation patients have one class only (no ROC-AUC): left out of the mean
            scores.append(fold_signal(self.metric, val.y, result.val_prob))
            oof[va] = result.val_prob
            fold_of[va] = k
            lost = losing(self.tracker)
            fold_metrics.append(fold_record(val.y, result, k, self.tracker, run_id))
            trial.set_user_attr("fold_metrics", fold_metrics)
            if lost() and not trial.user_attrs.get(FOLDS_LOST):
                trial.set_user_attr(FOLDS_LOST, True)  # `sync` looks for the folds MLflow lacks

        mean, threshold, summary = summarise_folds(self.metric, self.data.y, oof, fold_of, fold_metrics)
        if not np.isfinite(mean):
            raise undefined_value(self.metric)
        trial.set_user_attr("fold_metrics", fold_metrics)
        trial.set_user_attr("threshold", threshold)
        trial.set_user_attr("mean_metrics", summary)
        lost = losing(self.tracker)
        log_trial_results(self.tracker, run_id, trial.number, self.data.y, oof, threshold, fold_metrics, summary,
                          result.model)
        if lost() and not trial.user_attrs.get(FOLDS_LOST):
            trial.set_user_attr(FOLDS_LOST, True)  # fold.objective is logged there, one step per fold
        values = {"quality": mean, **extra}
        if len(self.objectives) == 1:
            return mean
        return tuple(values[name] for name in self.objectives)


    def _report_epoch(self, trial: optuna.Trial, scores: list[float], k: int, epoch: int, epochs: int,
                      n_folds: int, logs: dict[str, float], stride: int) -> None:
        """Report the running fold mean after an epoch and prune if the pruner says so.

        This fold's current validation value (:func:`search.metrics.epoch_signal`: ROC-AUC, or F1 at 0.5 for
        ``f1@0.5``) stands in for the fold, at step ``fold * stride + epoch``: a pruner compares trials at the
        same point and can stop a hopeless one after an epoch rather than a fold (no extra pass over the
        beats: Keras evaluates the validation beats every epoch anyway). ``stride`` is the most epochs the space
        allows: with epochs searched, a 2-epoch trial's second fold began at the step of a 4-epoch trial's third
        epoch of its first, so the two were compared at different points."""
        current = epoch_signal(self.metric, logs)
        signal = "f1 at 0.5" if self.metric == "f1@0.5" else "roc_auc"
        if not np.isfinite(current):
            return
        running = float(np.nanmean([*scores, current]))
        trial.report(running, step=k * stride + epoch)
        if trial.should_prune():
            where = f"fold {k + 1}/{n_folds}, epoch {epoch + 1}/{epochs}"
            trial.set_user_attr("prune_reason", f"running mean validation {signal} {running:.4f} after {where}")
            raise optuna.TrialPruned(f"validation {signal} {running:.4f} after {where}")


def _reason(exc: BaseException) -> str:
    """A one-line reason for a failed trial (out of memory named as such)."""
    name = type(exc).__name__
    if isinstance(exc, MemoryError) or "ResourceExhausted" in name or "OOM" in str(exc)[:200]:
        return f"out of memory: {name}: {_message(exc)[:300]}"
    return f"{name}: {_message(exc)[:500]}"


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _message(exc: BaseException) -> str:
    """The exception's first line; for a Keras layer error, whose first line only says where it happened
    ("Exception encountered when calling AveragePooling1D.call()."), also the next one, the cause (printed in
    ANSI bold: the escape codes are dropped)."""
    lines = [line.strip() for line in _ANSI.sub("", str(exc)).splitlines() if line.strip()]
    if not lines:
        return ""
    if lines[0].startswith("Exception encountered when calling") and len(lines) > 1:
        return f"{lines[0]} {lines[1]}"
    return lines[0]
