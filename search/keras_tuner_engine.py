"""KerasTuner as a second engine over the same space, folds and MLflow tracking as the Optuna driver."""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ecg_data import grouped_splits, patient_kfold
from spaces import SearchSpace, why_config_cannot_build

from . import interrupt
from ._trial_results import (StudyCurves, fold_record, log_trial_results, losing, record_epoch, summarise_folds,
                             undefined_value)
from ._process import pid_namespace, start_token, worker_alive
from .metrics import describe_values
from .objective import _reason, worker_id
from .samplers import tpe_startup_trials
from .settings import StudySettings, space_differences
from .storage import check_storage, redact_url
from .study import (MAX_FAILURES_IN_A_ROW, StudyMismatchError, TrialsKeepFailingError, _stamped, _trial_writers,
                    check_study_data, clear_dead_final_at_start, load_study_data, log_study_figures, open_study,
                    refuse_other_settings, require_test_part, run_final, search_data, space_for_data, stored_study,
                    trial_counts)
from .tracking import (CURVES_LOST, EPOCH_CURVES, FOLDS_LOST, MODEL_IN_MLFLOW, STUDY_RUN_NOTE, Tracker,
                       TrackingConfig, version_tags)
from .training import fit, tf_threads

log = logging.getLogger("search")

TUNERS = ("hyperband", "bayesian", "random")
#: What a search writes into KerasTuner's project folder: the study, storage and settings it belongs to.
STATE_FILE = "ecg_automl_search.json"


def make_oracle(tuner: str, n_trials: int, max_epochs: int, seed: int, space: SearchSpace,
                initial_points: int | None = None) -> Any:
    """KerasTuner's own oracle for ``tuner``, maximising the mean validation metric across folds, over the
    space's hyperparameters (registered up front: with no hypermodel KerasTuner would otherwise see an
    empty space and run every trial at the default values). ``initial_points``: the Bayesian oracle's random
    draws before its Gaussian process (KerasTuner's default, 3 per hyperparameter, was 66 here: every trial of a
    20-trial search was random search's)."""
    import keras_tuner as kt

    hp = kt.HyperParameters()
    space.keras_tuner_config(hp)
    if tuner == "hyperband":
        hp.values.pop("epochs", None)  # Hyperband sets each round's epochs itself (tuner/epochs)
    common = dict(objective=kt.Objective("val_objective", direction="max"), seed=_kt_seed(seed), hyperparameters=hp,
                  tune_new_entries=False, allow_new_entries=True,
                  # as the driver's limit (KerasTuner's default was 3); run_keras_tuner replaces the check that
                  # applies it (_stop_when_failing)
                  max_consecutive_failed_trials=MAX_FAILURES_IN_A_ROW)
    if tuner == "hyperband":
        # hyperband_iterations=None: run Hyperband's bracket schedule again and again until --trials (or the
        # timeout) stops it. KerasTuner's default of 1 ends the search after one schedule, 10 trials here:
        # `--trials 50` ran 10, and in the search-efficiency benchmark Hyperband stopped at 441-558 s of 600.
        # max_epochs=1 (--epochs 1) is one bracket of 1-epoch trials, as asked (it was raised to 2: every trial
        # trained twice the epochs the command said)
        oracle = kt.oracles.HyperbandOracle(max_epochs=max_epochs, factor=3, hyperband_iterations=None, **common)
        oracle.max_trials = n_trials  # Hyperband has no trial cap of its own; the CLI's --trials is one
        return oracle
    if tuner == "bayesian":
        return kt.oracles.BayesianOptimizationOracle(max_trials=n_trials, num_initial_points=initial_points,
                                                     **common)
    if tuner == "random":
        return kt.oracles.RandomSearchOracle(max_trials=n_trials, **common)
    raise ValueError(f"unknown tuner {tuner!r} ({', '.join(TUNERS)})")


def _kt_seed(seed: int) -> int:
    """KerasTuner reads seed 0 as "none" (``seed or random.randint(1, 10000)``), so ``--seed 0`` drew other
    configs on every run; 0 is passed as a fixed other number, every other seed as it is."""
    return int(seed) if int(seed) != 0 else 2**31 - 1


def _trial_number(trial, oracle) -> int:
    """The trial's 0-based number: KerasTuner numbers its trial ids ("00003") in creation order; a worker of
    a distributed search (chief oracle plus tuners) sees only its own trials, so the id is what is shared."""
    tid = str(trial.trial_id)
    return int(tid) if tid.isdigit() else len(oracle.trials) - 1


def _tuner_class():
    import keras_tuner as kt

    def _hand_over(record: Callable[..., None], *args: Any) -> None:
        """Pass a trial to the search's ``record`` (on_trial, on_failed): a study another search took over stops the
        search, where KerasTuner would log any other error as a failed trial and go on."""
        try:
            record(*args)
        except StudyMismatchError as e:
            raise kt.errors.FatalError(str(e)) from e

    class CVTuner(kt.engine.base_tuner.BaseTuner):
        """Runs each KerasTuner trial as K patient-grouped folds (same folds as the Optuna driver)."""

        def __init__(self, oracle, *, space, data, folds, metric, seed, tracker, parent_run_id, on_trial,
                     on_failed=None, on_pruned=None, verbose=0, **kw):
            super().__init__(oracle, hypermodel=None, **kw)
            self.space, self.data, self.folds, self.metric, self.seed = space, data, folds, metric, seed
            self.tracker, self.parent_run_id, self.on_trial = tracker, parent_run_id, on_trial
            self.on_failed, self.on_pruned, self.verbose = on_failed, on_pruned, verbose

        def _pruned(self, trial, number: int, config: dict[str, Any], reason: str) -> dict[str, float]:
            """A draw whose model cannot be built, pruned before it trains as the driver prunes it: it failed in
            Keras, and three such in a row stopped KerasTuner. KerasTuner gets the worst value (its optimisers
            learn to avoid the region), the study a PRUNED trial with the reason, MLflow a KILLED run."""
            run_id = None
            if self.tracker is not None:
                run_id = self.tracker.start_trial(self.parent_run_id, number, self.project_name, config,
                                                  _run_tags())
                self.tracker.set_tags(run_id, {"engine": "keras-tuner", "keras_tuner.trial_id": trial.trial_id,
                                               "optuna.state": "PRUNED", "prune_reason": reason,
                                               **_hyperband_tags(trial.hyperparameters)})
                if run_id is not None:
                    self.tracker._safe("end of trial run", self.tracker.client.set_terminated, run_id, "KILLED")
            if self.on_pruned is not None:
                _hand_over(self.on_pruned, number, config, trial.trial_id, run_id, reason)
            return {"val_objective": 0.0}  # every METRICS value lies in 0-1, higher better

        def run_trial(self, trial, *args, **kwargs):
            hp = trial.hyperparameters
            config = self.space.keras_tuner_config(hp)
            if "tuner/epochs" in hp.values:  # Hyperband's budget for this round
                config["epochs"] = int(hp.values["tuner/epochs"])
            number = _trial_number(trial, self.oracle)
            cannot = why_config_cannot_build(config)
            if cannot:
                return self._pruned(trial, number, config, cannot)
            run_id = None
            if self.tracker is not None:
                run_id = self.tracker.start_trial(self.parent_run_id, number, self.project_name, config,
                                                  _run_tags())
            oof, fold_of = np.full(len(self.data), np.nan), np.full(len(self.data), -1)
            value = None
            status = "FAILED"
            # what the driver's trials keep, logged the same way (search._trial_results): per-epoch curves, per-fold
            # metrics, the summary, plots and the last fold's model
            curves: dict[str, list[float | None]] = {}
            curves_lost: list[bool] = []  # some curve points did not reach MLflow (CURVES_LOST)
            folds_lost: list[bool] = []  # some fold.* metrics did not (FOLDS_LOST)
            in_study = StudyCurves(number)
            model_logged = False
            fold_metrics: list[dict[str, float]] = []
            failed = ""

            def kept(**more: Any) -> dict[str, Any]:
                """What the study keeps of this trial, finished or failed (``sync`` logs it to a run that missed it)."""
                attrs = {"fold_metrics": fold_metrics, CURVES_LOST: bool(curves_lost), FOLDS_LOST: bool(folds_lost),
                         **more}
                if in_study.kept:
                    attrs[EPOCH_CURVES] = in_study.kept
                return attrs

            try:
                for k, (tr, va) in enumerate(self.folds):
                    val = self.data.subset(va)

                    def on_epoch(epoch: int, logs: dict[str, float], k=k) -> None:
                        if record_epoch(curves, k, epoch, logs, self.tracker, run_id):
                            curves_lost.append(True)
                        in_study.update(curves, k, epoch)

                    res = fit(config, self.data.subset(tr), val, seed=self.seed * 100003 + number * 101 + k,
                              on_epoch_end=on_epoch, verbose=self.verbose)
                    oof[va] = res.val_prob
                    fold_of[va] = k
                    lost = losing(self.tracker)
                    fold_metrics.append(fold_record(val.y, res, k, self.tracker, run_id))
                    if lost():
                        folds_lost.append(True)
                # the same objective as the Optuna driver: every fold at the threshold chosen from all of them
                value, threshold, summary = summarise_folds(self.metric, self.data.y, oof, fold_of, fold_metrics)
                if not math.isfinite(value):  # failed, as the driver's trial fails (a NaN was reported as a result,
                    value = None  # and a first trial's NaN was the "best" of every later line)
                    raise undefined_value(self.metric)
                lost = losing(self.tracker)
                model_logged = log_trial_results(self.tracker, run_id, number, self.data.y, oof, threshold,
                                                 fold_metrics, summary, res.model)
                if lost():  # fold.objective is logged there
                    folds_lost.append(True)
                status = "FINISHED"
            except BaseException as exc:  # the run says why it failed, as a driver trial's does
                interrupted = isinstance(exc, KeyboardInterrupt) or interrupt.requested()
                failed = f"interrupted ({interrupt.cause()})" if interrupted else _reason(exc)
                if not interrupted and self.on_failed is not None:  # KerasTuner goes on with the next trial id:
                    # recorded as failed, as the driver records its own, so that the study's trial numbers stay
                    # those of the MLflow runs (an interrupted trial is redone under its id, and recorded then)
                    _hand_over(self.on_failed, number, config, trial.trial_id, run_id, failed, kept())
                if interrupted and not isinstance(exc, KeyboardInterrupt):  # a Ctrl-C TensorFlow turned into another
                    raise KeyboardInterrupt from exc  # error: KerasTuner would fail the trial and go on to the next
                raise
            finally:
                if self.tracker is not None and run_id is not None:
                    if value is not None:
                        self.tracker.log_metrics(run_id, {"objective.quality": value, "threshold": threshold})
                    tags = {"engine": "keras-tuner", "keras_tuner.trial_id": trial.trial_id, **_hyperband_tags(hp)}
                    if status == "FAILED" and failed:  # an interrupted trial's redo gets a run of the same number
                        tags.update({"optuna.state": "FAIL", "fail_reason": failed})
                    elif value is not None:  # as the driver's: `tags.optuna.state = 'COMPLETE'` missed these
                        tags["optuna.state"] = "COMPLETE"
                    self.tracker.set_tags(run_id, tags)
                    self.tracker._safe("end of trial run", self.tracker.client.set_terminated, run_id, status)
            _hand_over(self.on_trial, number, value, config, threshold, trial.trial_id, run_id,
                       kept(mean_metrics=summary, **{MODEL_IN_MLFLOW: model_logged}))
            return {"val_objective": value}

        def save_model(self, trial_id, model, step=0):  # models are rebuilt from configs, not stored
            pass

        def load_model(self, trial):
            raise NotImplementedError("rebuild a KerasTuner trial's model from its config")

    return CVTuner


def run_keras_tuner(study_name: str, settings: StudySettings, *, tuner: str = "hyperband", n_trials: int = 10,
                    tracking: TrackingConfig | None = None, out_dir: str | Path = "runs", progress: bool = True,
                    verbose: int = 0, timeout: float | None = None,
                    on_trial_end: Callable[[dict[str, Any]], None] | None = None, storage: str | None = None,
                    final: bool = False, print_fn: Callable[[str], None] = print,
                    trial_print_fn: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run a KerasTuner search; returns the history (trial, seconds, value, best so far) and the best config.

    ``on_trial_end`` gets each trial's history entry as it finishes (benchmarks record progress with it).
    With ``storage`` (an Optuna RDB URL) every finished trial is also recorded, as it finishes, in the Optuna
    study ``study_name`` (``optuna.trial.create_trial``: its params, value, config and threshold), so that
    ``ecg-automl export`` and the final test treat KerasTuner's best like the driver's; ``final`` then runs the
    final test of the best trial (:func:`search.run_final`). KerasTuner keeps its own state under ``out_dir``
    and resumes from it; a trial recorded before is not recorded twice.

    ``progress`` shows a progress bar (stderr) with a line per finished trial above it (stdout); with
    ``progress=False`` the trial lines go to the ``search`` logger at INFO, or to ``trial_print_fn`` when given."""
    from tqdm.auto import tqdm

    if n_trials < 1:  # KerasTuner takes max_trials=0 for "no limit" and would search until stopped
        raise ValueError(f"the KerasTuner engine needs n_trials >= 1, not {n_trials}")
    space = SearchSpace.from_yaml(settings.space_yaml, f"study {study_name}")
    tracker = parent = None
    if tracking is not None:  # as the driver: an unreachable tracking server is an error before anything else
        tracker = Tracker(tracking)
        tracker.ping()
    check_storage(storage)
    if storage is not None:  # a mismatched resume is refused before minutes of data loading
        refuse_other_settings(study_name, storage, settings, engine=f"keras-tuner:{tuner}", tracker=tracker)
    project = Path(out_dir) / "keras_tuner" / study_name
    fingerprint = json.loads(json.dumps({"study": study_name, "tuner": tuner,  # as it reads back (lists, not tuples)
                                         "storage": redact_url(storage) if storage else None,
                                         "settings": _stamped(settings).to_dict()}))
    check_tuner_state(project, fingerprint, storage)
    if tuner == "hyperband" and space.epochs_range[0] != space.epochs_range[1]:
        print_fn(f"note: Hyperband sets each round's epochs itself (1 to {space.epochs_range[1]}, the space's "
                 f"highest): the space's epochs distribution is not drawn from")
    full = load_study_data(settings, space)
    space = space_for_data(space, full, print_fn)
    if final and storage is not None and len(settings.objectives) == 1:
        require_test_part(full, settings)
    data = search_data(full, settings)
    # through grouped_splits, as the driver's objective: each fold is checked for a patient on both sides
    folds = list(grouped_splits(patient_kfold(settings.folds, seed=settings.seed), data.X, data.y, data.groups))
    study = None
    if tracker is not None:  # before the study is written: a store MLflow cannot use left an empty study behind
        tracker.check()
    if storage is not None:
        study, settings = open_study(study_name, storage, settings, heartbeat=None, engine=f"keras-tuner:{tuner}")
        check_study_data(study, full)
        if study.user_attrs.get("keras_tuner_dir") is None:  # where a resume must find KerasTuner's own state
            study.set_user_attr("keras_tuner_dir", str(project.resolve()))
    project.mkdir(parents=True, exist_ok=True)
    # whole or not at all: the tuners of a distributed search (and its chief) read and write it as they start
    tmp = project / f".{STATE_FILE}.{os.getpid()}"
    tmp.write_text(json.dumps(fingerprint, indent=1))
    os.replace(tmp, project / STATE_FILE)
    if tracker is not None:
        name, tags = f"{study_name} (keras-tuner {tuner})", {"engine": "keras-tuner"}
        if study is not None:  # reused on resume; the final test is logged on it
            parent = tracker.study_run(study, settings.to_dict(), run_name=name, tags=tags)
        else:
            tracker.space_name = space.name  # as study_run does: a tag of the study run and its trial runs
            tracker.metric = settings.metric
            parent = tracker.client.create_run(tracker.experiment_id, run_name=name,
                                               tags={"ecg_automl.kind": "study", **tags, "space": space.name,
                                                     "mlflow.note.content": STUDY_RUN_NOTE,
                                                     **version_tags()}).info.run_id
            tracker.log_params(parent, {f"study.{k}": v for k, v in settings.to_dict().items() if k != "space_yaml"})
    if tracker is not None and "KERASTUNER_ORACLE_IP" not in os.environ:  # one process: no other runs a trial now
        _end_orphaned_trial_runs(tracker, parent, print_fn)
    if study is not None:
        clear_dead_final_at_start(study, final, print_fn)
    epochs = space.epochs_range[1]
    # the Bayesian oracle's random start-up as long as the driver's TPE's
    oracle = make_oracle(tuner, n_trials, epochs, settings.seed, space,
                         initial_points=tpe_startup_trials(settings.folds))
    history: list[dict[str, Any]] = []
    start = time.perf_counter()
    bar = tqdm(total=n_trials, desc=f"keras-tuner {tuner}", unit="trial", disable=not progress, file=sys.stderr)
    say, note = _trial_writers(bar, progress, trial_print_fn)  # as the driver writes its trial lines

    # a resumed search's earlier trials count for the best shown on each trial's line (not for the history)
    earlier = [tr.value for tr in study.get_trials(deepcopy=False) if tr.state.name == "COMPLETE"] if study else []

    def on_trial(number, value, config, threshold, trial_id, run_id=None, attrs=None):
        best = max([h["value"] for h in history] + [value])
        history.append({"trial": number, "seconds": time.perf_counter() - start, "value": value, "best": best,
                        "config": config, "threshold": threshold})
        if study is not None:
            record_trial(study, space, config, value, threshold, trial_id, tuner, run_id=run_id, attrs=attrs)
        if on_trial_end is not None:
            on_trial_end(history[-1])
        bar.update(1)
        say(f"keras-tuner trial {number}: {describe_values(settings.metric, [value])} "
            f"(best {max([best, *earlier]):.4f})")
        if timeout is not None and time.perf_counter() - start > timeout:
            oracle.max_trials = len(oracle.trials)

    def on_failed(number, config, trial_id, run_id, reason, attrs):
        if study is not None:
            record_trial(study, space, config, None, 0.5, trial_id, tuner, run_id=run_id,
                         attrs={**attrs, "fail_reason": reason})
        # --trials counts finished (complete or pruned) trials, as the driver's: a failed one does not use one up
        oracle.max_trials += 1
        bar.total += 1
        bar.update(1)
        say(f"keras-tuner trial {number} failed: {reason}")

    def on_pruned(number, config, trial_id, run_id, reason):
        if study is not None:
            record_trial(study, space, config, None, 0.5, trial_id, tuner, run_id=run_id,
                         attrs={"prune_reason": reason}, pruned=True)
        bar.update(1)
        say(f"keras-tuner trial {number} pruned: {reason}")
        if timeout is not None and time.perf_counter() - start > timeout:
            oracle.max_trials = len(oracle.trials)

    cls = _tuner_class()
    t = cls(oracle, space=space, data=data, folds=folds, metric=settings.metric, seed=settings.seed,
            tracker=tracker, parent_run_id=parent, on_trial=on_trial, on_failed=on_failed, on_pruned=on_pruned,
            verbose=verbose,
            directory=str(Path(out_dir) / "keras_tuner"), project_name=study_name, overwrite=False)
    bar.update(_finished_before(oracle))  # a resumed search's bar starts where the last one stopped
    # KerasTuner does not keep max_trials: a resume gets again one more trial per failed one (--trials counts
    # finished trials), and counts failures in a row from its own start (KerasTuner's check found any run of them
    # in the whole history, so a resume after such a stop stopped again at its first trial)
    oracle.max_trials += _failed(oracle)
    stopped_failing = _stop_when_failing(oracle, MAX_FAILURES_IN_A_ROW)
    try:  # each failed trial printed its traceback (KerasTuner's DEBUG, on by default); its line says why it failed
        from keras_tuner.src import config as kt_config

        kt_config.DEBUG = False
    except ImportError:  # a KerasTuner without that module: its tracebacks stay
        pass
    previous = interrupt.install()  # SIGTERM stops it as Ctrl-C does: the runs are closed, not left RUNNING
    try:
        interrupt.check()  # a SIGTERM swallowed in a finaliser while the data loaded: no trial is started
        t.search(verbose=0)  # our progress bar and trial lines replace KerasTuner's own tables
        interrupt.check()  # one swallowed after the last trial's checks: not the final model
    except KeyboardInterrupt:
        if tracker is not None:
            tracker.end_study(parent, "KILLED")
        raise
    except Exception as e:  # the study was taken over (record_trial), trials that kept failing: the study run is
        if tracker is not None:  # closed (it was left RUNNING for good but for the first)
            tracker.end_study(parent, "FAILED")
        if not isinstance(e.__cause__, StudyMismatchError):
            raise
        raise e.__cause__ from None
    finally:
        interrupt.restore(previous)
        bar.close()
    if stopped_failing:  # the search ended itself after the last failure was saved (so a resume does not redo it)
        if tracker is not None:
            tracker.end_study(parent, "FAILED")
        where = f"study {study_name!r}" if study is not None else f"{project}"
        raise TrialsKeepFailingError(
            f"stopped after {MAX_FAILURES_IN_A_ROW} failed trials in a row (the last: {_last_failure(oracle)}); that "
            f"points at the setup rather than at the configs tried. Every trial is kept in {where}: fix the cause "
            f"and run the same command again to resume")
    finished = _finished_before(oracle)
    distributed = "KERASTUNER_ORACLE_IP" in os.environ  # a tuner of KerasTuner's distributed mode sees its own trials
    if (finished < oracle.max_trials and not distributed
            and not (timeout is not None and time.perf_counter() - start > timeout)):
        note(f"note: KerasTuner ({tuner}) stopped after {finished} of {oracle.max_trials} trials: it found no new "
             f"configuration to try (the space holds few distinct ones)")
    best = max(history, key=lambda h: h["value"]) if history else None
    out: dict[str, Any] = {"history": history, "best": best, "seconds": time.perf_counter() - start,
                           "study": study, "final": None}
    if study is not None:
        trials = study.get_trials(deepcopy=False)
        done = [tr for tr in trials if tr.state.name == "COMPLETE"]
        if trials:  # "2 trials recorded" said nothing of the pruned or failed third; all pruned said nothing at all
            b = study.best_trial if done else None
            print_fn(f"keras-tuner study {study_name}: {len(trials)} trial(s) recorded ({trial_counts(trials)}) in "
                     f"{redact_url(storage)}" + (f"; best trial {b.number}: validation {settings.metric} "
                                                 f"{b.value:.4f} (KerasTuner trial "
                                                 f"{b.user_attrs.get('keras_tuner.trial_id')})" if b else
                                                 "; none completed"))
        if final and done and len(settings.objectives) == 1:
            try:
                out["final"] = run_final(study, settings, full, tracker=tracker, out_dir=out_dir, print_fn=print_fn,
                                         progress=progress)
            except BaseException as exc:  # Ctrl-C/SIGTERM or an error in the final model: the study run was left
                if tracker is not None:  # RUNNING, and a later sync ended it FINISHED with no final model made
                    tracker.end_study(parent, "FAILED" if isinstance(exc, Exception) else "KILLED")
                raise
    if tracker is not None:
        if study is not None and len(settings.objectives) == 1:
            log_study_figures(study, tracker)
        tracker.end_study(parent)
    return out


def _hyperband_tags(hp: Any) -> dict[str, str]:
    """A Hyperband trial's place in its schedule as run tags: its bracket and round, and the trial whose config it
    trains again for more epochs (``keras_tuner.promoted_from``): why one config has runs of 2, 4 and 8 epochs.
    Nothing for the other tuners."""
    values = getattr(hp, "values", {}) or {}
    names = {"tuner/bracket": "keras_tuner.bracket", "tuner/round": "keras_tuner.round",
             "tuner/trial_id": "keras_tuner.promoted_from"}
    return {tag: str(values[key]) for key, tag in names.items() if values.get(key) is not None}


def _run_tags() -> dict[str, str]:
    """A trial run's tags at its start: ``worker`` (host:pid) as the driver's runs have, with the process's start
    and pid namespace, which tell a later search whether that process is dead (:func:`_end_orphaned_trial_runs`)."""
    return {"tf_threads": str(tf_threads()), "worker": worker_id(), "worker_started": start_token(os.getpid()) or "",
            "worker_pidns": pid_namespace() or ""}


def _end_orphaned_trial_runs(tracker: Tracker, parent: str | None, print_fn: Callable[[str], None]) -> None:
    """End FAILED the trial runs of this study's run left RUNNING by a search whose process died (kill -9, the OOM
    killer, a crash): KerasTuner redoes that trial under the same number in a new run, and the old one stayed
    RUNNING for good, which `sync` (it follows the Optuna study) never touched. A run whose process is alive on this
    host, or ran on another, is left alone."""
    if parent is None:
        return
    runs = tracker._safe("trial runs of the study", tracker._nested_runs, parent) or []
    dead = []
    for run in runs:
        if run.info.status != "RUNNING":
            continue
        tags = run.data.tags
        if "worker" in tags and worker_alive(tags["worker"], tags.get("worker_started") or None,
                                             tags.get("worker_pidns") or None) is not False:
            continue  # alive, or where it cannot be seen; runs from before the tag were made by a search that ended
        tracker.set_tags(run.info.run_id, {"optuna.state": "FAIL", "fail_reason": "its search process died (killed, "
                                           "out of memory or a crash): the trial is redone under its number"})
        tracker._safe("end of trial run", tracker.client.set_terminated, run.info.run_id, "FAILED")
        dead.append(tags.get("optuna.trial_number", "?"))
    if dead:
        print_fn(f"note: the MLflow run(s) of trial(s) {', '.join(dead)} were left RUNNING by a search that died: "
                 f"ended FAILED (KerasTuner redoes such a trial under its number)")


def check_tuner_state(project: Path, fingerprint: dict[str, Any], storage: str | None) -> None:
    """Refuse KerasTuner state that belongs to another search, before the data loads: KerasTuner resumes whatever
    its project folder holds, so a search with another storage or space drew from the old one's ranges (clamped to
    the new), or found the old search complete and ran nothing; and a study resumed without its state retrained
    every earlier trial, then dropped the redo as recorded before."""
    if project.exists() and not project.is_dir() or project.parent.exists() and not project.parent.is_dir():
        raise StudyMismatchError(f"{project}: KerasTuner keeps its state in this folder, but a file is in the way")
    state = project / STATE_FILE
    if state.is_file():
        try:
            old = json.loads(state.read_text())
        except (OSError, ValueError):
            old = None
        if not isinstance(old, dict):
            what, settings = ["everything (the file is unreadable)"], []
        else:  # settings as the study compares them: a field added to StudySettings later reads as its default
            ours = StudySettings.from_dict(fingerprint["settings"]).to_dict()
            theirs = StudySettings.from_dict(old.get("settings") or {}).to_dict()
            settings = [k for k in ours if theirs.get(k) != ours[k] and not (  # the same space in another order
                k == "space_yaml" and space_differences(str(theirs.get(k)), ours[k]) is None)]
            what = [k for k in ("study", "tuner", "storage") if old.get(k) != fingerprint[k]] + (
                ["settings"] if settings else [])
        if what:
            raise StudyMismatchError(
                f"{project} holds KerasTuner's state of another search (its {', '.join(what)} differ"
                + (f": {', '.join(settings)}" if settings else "") + "), which KerasTuner would resume. Remove that "
                f"folder to start over, or choose another --out-dir or --study")
        return
    if storage is None or (project / "oracle.json").exists():
        return  # a new search, or one made before searches recorded what they belong to
    study = stored_study(fingerprint["study"], storage)  # None: no study yet (and nothing is created here)
    if study is None:
        return
    mine = [t for t in study.get_trials(deepcopy=False) if "keras_tuner.trial_id" in t.user_attrs]
    if mine:
        made = study.user_attrs.get("keras_tuner_dir")
        raise StudyMismatchError(
            f"study {fingerprint['study']!r} holds {len(mine)} KerasTuner trials, but KerasTuner's state is not in "
            f"{project}" + (f" (it was made in {made})" if made else "") + ": without it KerasTuner would train "
            f"every earlier trial again. Run from where it was made (the same --out-dir), or use a new --study")


def _status(trial: Any) -> str:
    """A KerasTuner trial's status as text ("COMPLETED", "FAILED", ...)."""
    return str(getattr(trial.status, "value", trial.status))


def _failed(oracle: Any) -> int:
    """Trials KerasTuner's state holds as failed."""
    return sum(1 for t in oracle.trials.values() if _status(t) == "FAILED")


def _stop_when_failing(oracle: Any, limit: int) -> list[bool]:
    """Make ``oracle`` end the search (no new trial) once ``limit`` trials in a row have failed since now, instead
    of KerasTuner's own check, which raised before the last failure was saved (a resume redid it, and then dropped
    its result as recorded before) and counted runs of failures anywhere in the history. Returns a list that holds
    True once it has stopped the search."""
    stopped: list[bool] = []
    start = len(oracle.end_order)

    def check(self=oracle) -> None:
        streak = 0
        for trial_id in self.end_order[start:]:
            streak = streak + 1 if _status(self.trials[trial_id]) == "FAILED" else 0
        if streak >= limit and not stopped:
            stopped.append(True)
            self.max_trials = len(self.trials)  # create_trial then answers STOPPED

    oracle._check_consecutive_failures = check
    return stopped


def _finished_before(oracle: Any) -> int:
    """Trials KerasTuner has ended (completed or failed) in its state: a resume's progress starts there."""
    return sum(1 for t in oracle.trials.values() if _status(t) in ("COMPLETED", "FAILED", "INVALID"))


def _last_failure(oracle: Any) -> str:
    """The last failed trial's error line (KerasTuner keeps the whole traceback as its message)."""
    for tid in reversed(oracle.end_order):
        message = (oracle.trials[tid].message or "").strip().splitlines()
        if message:
            return message[-1]
    return "no message"


def record_trial(study: Any, space: SearchSpace, config: dict[str, Any], value: float | None, threshold: float,
                 trial_id: str, tuner: str, run_id: str | None = None, attrs: dict[str, Any] | None = None,
                 pruned: bool = False) -> None:
    """Add one finished KerasTuner trial to the Optuna ``study`` (once: a resumed search skips trials recorded
    before). Hyperband's epochs are its round's budget, not a draw from the space: kept in ``config`` only.
    ``run_id``, the trial's MLflow run, is kept as ``mlflow_run_id`` (as the driver's trials keep theirs), so
    ``ecg-automl export`` logs the .tflite and its sidecar there (and fetches the trial's model from it where
    :data:`MODEL_IN_MLFLOW` says it was logged). ``attrs``: more user attributes (the per-fold metrics and
    per-epoch curves, which ``ecg-automl sync`` logs to a run that missed them)."""
    import math

    import optuna

    if any(tr.user_attrs.get("keras_tuner.trial_id") == trial_id for tr in study.get_trials(deepcopy=False)):
        return
    made_by = study.user_attrs.get("engine", "optuna")
    if made_by != f"keras-tuner:{tuner}":  # another engine's search took the study over while this one ran
        raise StudyMismatchError(
            f"study {study.study_name!r} now belongs to {made_by}, not keras-tuner:{tuner} (another search took "
            f"it over before this one recorded a trial): KerasTuner trial {trial_id} is not recorded there. "
            f"Run this search under a new --study name.")
    dists = space.optuna_distributions()
    if tuner == "hyperband":
        dists.pop("epochs", None)
    ok = not pruned and value is not None and math.isfinite(value)
    # objective_names and worker as the driver's trials keep them: a run `sync` makes of the trial logs its value as
    # objective.quality (it logged objective_0) and says which process ran it
    attrs = {"worker": worker_id(), **(attrs or {}), "config": config, "threshold": float(threshold),
             "keras_tuner.trial_id": trial_id, "engine": f"keras-tuner:{tuner}", "tf_threads": tf_threads(),
             "objective_names": ["quality"]}
    if run_id is not None:
        attrs["mlflow_run_id"] = run_id
    if not ok and not pruned:
        attrs.setdefault("fail_reason", f"validation objective is {value}")
    state = optuna.trial.TrialState
    study.add_trial(optuna.trial.create_trial(
        params={k: config[k] for k in dists}, distributions=dists, value=float(value) if ok else None,
        state=state.PRUNED if pruned else state.COMPLETE if ok else state.FAIL, user_attrs=attrs))
