"""The ``ecg-automl`` command line: one entry point, one subcommand per job."""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import sys
from typing import Callable, Sequence

from .argtypes import (int_at_least, non_empty, non_negative_int, port, positive_float, positive_int, seconds_up_to, seed,
                       study_name)

# Quiet TensorFlow's C++ start-up chatter before anything imports it.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # MLflow resets its logger level on import
# MLflow's "Downloading artifacts" bars (export fetching a trial's model) in the middle of a command's output
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {}


def command(name: str) -> Callable[[Callable[[argparse.Namespace], int]], Callable[[argparse.Namespace], int]]:
    """Decorator: register ``fn`` as the handler of subcommand ``name`` (``main`` looks it up in :data:`COMMANDS`)."""
    def deco(fn):
        COMMANDS[name] = fn
        return fn
    return deco


class UsageError(Exception):
    """Options that contradict each other or that a command cannot take: one line, exit code 2 (as argparse)."""


def _user_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean bad input or environment: printed as one line, exit code 2."""
    from ecg_data import DataError
    from spaces import SpaceError

    from ecg_automl.tflite import CalibrationError

    errs: list[type[BaseException]] = [UsageError, DataError, SpaceError, FileNotFoundError, CalibrationError]
    if "search" in sys.modules:  # only commands that loaded the search stack can raise its errors
        from search import OutputError, StorageError, StudyMismatchError, TrackingError, TrialsKeepFailingError

        errs += [OutputError, StorageError, StudyMismatchError, TrackingError, TrialsKeepFailingError]
    try:
        from ecg_automl.tflite import TFLiteError

        errs.append(TFLiteError)
    except ImportError:
        pass
    return tuple(errs)


# --------------------------------------------------------------------------------------------
# search / worker
# --------------------------------------------------------------------------------------------
def _add_tracking_args(p: argparse.ArgumentParser, *, optional: bool = True, experiment: bool = True) -> None:
    """The MLflow options; ``--no-mlflow`` only where the command can run without MLflow (not sync, not ui),
    ``--experiment`` only where the command logs runs (not ui: the UI lists every experiment of the store)."""
    g = p.add_argument_group("MLflow")
    g.add_argument("--mlflow-config", type=non_empty("an MLflow settings file"), default=None,
                   help="MLflow settings file (default: ./mlflow.yaml if present)")
    g.add_argument("--tracking-uri", type=non_empty("a tracking URI"), default=None,
                   help="MLflow tracking URI (overrides mlflow.yaml and $MLFLOW_TRACKING_URI)")
    if experiment:
        g.add_argument("--experiment", type=non_empty("an experiment name"), default=None,
                       help="MLflow experiment name (overrides mlflow.yaml)")
    if optional:
        g.add_argument("--no-mlflow", action="store_true", help="do not log to MLflow")


def _tracking(args):
    from search import TrackingConfig

    if getattr(args, "no_mlflow", False):
        given = [flag for flag, value in (("--mlflow-config", args.mlflow_config), ("--tracking-uri", args.tracking_uri),
                                          ("--experiment", getattr(args, "experiment", None))) if value is not None]
        if given:  # they were ignored, even a config file that does not exist
            raise UsageError(f"{', '.join(given)} configure{'s' if len(given) == 1 else ''} MLflow, which --no-mlflow "
                             f"turns off: use one or the other")
        return None
    return TrackingConfig.load(args.mlflow_config, tracking_uri=args.tracking_uri,
                               experiment_name=getattr(args, "experiment", None))


@command("search")
def cmd_search(args: argparse.Namespace) -> int:
    """``ecg-automl search``: create or resume a study and run it (the driver or KerasTuner), then its final model."""
    from search import run_search, set_threads
    from spaces import SearchSpace

    if args.tuner is not None and args.engine != "keras-tuner":
        raise UsageError(f"--tuner {args.tuner} chooses a KerasTuner tuner: it needs --engine keras-tuner")
    if args.pruner is not None and args.engine == "keras-tuner":  # it was ignored (None: not given)
        raise UsageError(f"--pruner {args.pruner} chooses an Optuna pruner: it needs --engine optuna (the KerasTuner "
                         f"engine has no pruner; its --tuner hyperband stops trials early on its own schedule)")
    if args.heartbeat is not None and args.engine == "keras-tuner":  # it was ignored
        raise UsageError(f"--heartbeat {args.heartbeat:g} sets the Optuna engine's trial heartbeat: the KerasTuner "
                         f"engine records its trials when they end, and has none")
    from search.storage import in_memory

    if in_memory(args.storage):  # e.g. --storage sqlite:///$DB with DB unset
        raise UsageError(f"--storage {args.storage} names no database file: SQLite keeps that study in memory, "
                         f"lost when the command ends (it could never be resumed, joined or exported). Give a "
                         f"file, e.g. --storage sqlite:///runs/optuna.db")
    set_threads(args.tf_threads)
    space = SearchSpace.load(args.space)
    if args.epochs is not None:
        space = space.with_overrides(epochs=args.epochs)
    objectives = parse_objectives(args.objective or "f1")
    _check_out_dir(args, objectives)
    args.metric = _quality_metric(args.objective, args.metric)
    if args.engine == "keras-tuner" and args.trials == 0:  # KerasTuner reads max_trials=0 as "no limit"
        raise UsageError("--trials 0 creates a study for `ecg-automl worker`, which runs the Optuna engine only: "
                         "the KerasTuner engine needs --trials 1 or more")
    if args.engine == "keras-tuner" and (len(objectives) > 1 or args.latency_budget_ms is not None
                                         or args.latency_target):
        # its trials are single-objective and ungated: a latency objective failed after the first trial and a
        # budget was ignored
        raise UsageError("the KerasTuner engine optimises --objective f1 or auc alone, with no latency gate: a "
                         "latency/size objective, --latency-budget-ms and --latency-target need --engine optuna")
    try:
        settings = _search_settings(args, space, objectives)
    except ValueError as exc:  # options that contradict each other (--final-model folds with --final-members 3)
        raise UsageError(str(exc)) from None
    from search.study import why_no_model

    if args.engine == "keras-tuner":
        from search import run_keras_tuner

        # recorded in the Optuna study of the same name, so the final test and `export` work as for the driver
        out = run_keras_tuner(args.study, settings, tuner=args.tuner or "hyperband", n_trials=args.trials,
                              tracking=_tracking(args), out_dir=args.out_dir, progress=not args.quiet,
                              verbose=args.verbose, timeout=args.timeout, storage=args.storage,
                              final=not args.no_final, trial_print_fn=_trial_lines(args))
        if out.get("study") is not None and (why := why_no_model(out["study"])):  # exit 0 read as a success
            print(f"error: study {args.study}: {why}", file=sys.stderr)
            return 1
        _print_next_steps(args, out.get("final"))
        return 0
    result = run_search(args.study, settings, n_trials=args.trials, storage=args.storage, tracking=_tracking(args),
                        timeout=args.timeout, pruner=args.pruner, final=not args.no_final, out_dir=args.out_dir,
                        progress=not args.quiet, verbose=args.verbose, heartbeat=_heartbeat(args),
                        trial_print_fn=_trial_lines(args))
    _print_summary(result, args)
    if result.interrupted:
        return _interrupted_exit_code()
    if args.trials > 0 and (why := why_no_model(result.study)):  # a scripted pipeline took it for a success
        print(f"error: study {args.study}: {why}", file=sys.stderr)
        return 1
    _print_next_steps(args, result.final)
    return 0


def _check_out_dir(args: argparse.Namespace, objectives: list[str]) -> None:
    """Refuse an --out-dir that cannot be written (a file in the way, a read-only folder) before the data loads
    and the study is made: the final model was trained, then its save was a traceback. Only when something goes
    there: the final model (its folder ``OUT/STUDY``), or KerasTuner's state."""
    from search import why_not_writable

    final = not args.no_final and args.trials > 0 and len(objectives) == 1
    if args.engine != "keras-tuner" and not final:
        return
    folder = os.path.join(args.out_dir, args.study) if final else args.out_dir
    why = why_not_writable(folder)
    if why:
        what = (f"KerasTuner's state{' and the final model' if final else ''}" if args.engine == "keras-tuner"
                else "the final model (or pass --no-final)")
        raise UsageError(f"--out-dir {args.out_dir} cannot be written ({why}): name a folder that can hold {what}")


def _print_next_steps(args: argparse.Namespace, final: dict | None) -> None:
    """After a final test: where the study's results are and the commands that browse and export them, with
    this run's storage and MLflow options, so a new user's next step is a copy and paste."""
    if not final:
        return
    from search import redact_url, storage_option

    at = storage_option(args.storage)
    mlflow = _mlflow_options(args)
    out = shlex.quote(f"{args.study}-int8.tflite")
    study = shlex.quote(args.study)
    lines = ["next:"]
    if not args.no_mlflow:
        # ui takes no --experiment (it lists every experiment of the store) and serves a local store only: a
        # tracking server has its own UI at its URL, which ui would refuse
        uri = _tracking(args).tracking_uri
        if uri.startswith(("http://", "https://")):
            lines.append(f"  browse the trials and the final test in MLflow:  open {redact_url(uri)} in a browser")
        else:
            lines.append(f"  browse the trials and the final test in MLflow:  ecg-automl ui"
                         f"{_mlflow_options(args, experiment=False)}")
    no_mlflow = " --no-mlflow" if args.no_mlflow else ""
    lines.append(f"  export the final model to TFLite:  ecg-automl export --study {study}{at}{mlflow}{no_mlflow} "
                 f"--mode int8 --out {out}")
    if args.dataset == "heartbeat-csv":  # a record's windows are not the CSV rows it learned (predict warns)
        lines.append(f"  classify a CSV of beats with it:  ecg-automl predict {out} --csv PATH/TO/BEATS.csv "
                     f"[--csv-has-label]")
    else:
        lines.append(f"  classify a record with it:  ecg-automl predict {out} --record PATH/TO/RECORD")
    print("\n".join(lines))


def _search_settings(args: argparse.Namespace, space, objectives: list[str]):
    """The study's settings from the search command line (ValueError: options that contradict each other)."""
    from search import StudySettings

    if args.latency_target and args.latency_budget_ms is None and objectives == ["quality"]:
        raise ValueError("--latency-target measures latency on a device for the latency gate: it needs "
                         "--latency-budget-ms or a latency objective (e.g. --objective f1,latency)")
    if args.fold_repeats > 1 and args.final_model != "folds":
        raise ValueError("--fold-repeats repeats the fold ensemble's training: it needs --final-model folds")
    if len(objectives) > 1 and (args.final_members > 1 or args.final_model != "refit"):
        # the gate would time K members while each Pareto member is exported alone
        raise ValueError("a multi-objective study has no final model (its Pareto front is exported trial by "
                         "trial, one model each): --final-members and --final-model folds need --objective f1 or auc")
    return StudySettings(dataset=args.dataset, space_yaml=space.to_yaml(), folds=args.folds,
                         metric=args.metric, seed=args.seed, max_beats=args.max_beats,
                         records=_record_list(args.records),
                         objectives=objectives, latency_budget_ms=args.latency_budget_ms,
                         latency_mode=args.latency_mode, latency_target=args.latency_target,
                         on_bad_record=args.on_bad_record, data_path=args.data_path,
                         final_members=args.final_members, final_model=args.final_model,
                         fold_repeats=args.fold_repeats)


def _record_list(text: str | None) -> list[str] | None:
    """``--records " 100, 101"`` -> ``["100", "101"]`` (None when not given): the spaces around each id were kept,
    and no record is named `` 101``."""
    if text is None:
        return None
    names = [r.strip() for r in text.split(",") if r.strip()]  # "" too: `--records "$RECS"` with RECS unset ran all
    if not names:
        raise UsageError(f"--records {text!r} names no record: give comma-separated record ids, e.g. 100,101")
    return names


def parse_objectives(text: str) -> list[str]:
    """``"f1,latency,size"`` -> the study's objective names (``["quality", "latency", "size"]``)."""
    names = [x.strip() for x in text.split(",") if x.strip()]
    mapping = {"f1": "quality", "auc": "quality", "quality": "quality", "latency": "latency", "size": "size"}
    bad = [n for n in names if n not in mapping]
    if bad or not names:
        raise UsageError(f"--objective takes f1 or auc, optionally followed by latency and/or size "
                         f"(e.g. f1,latency,size); got {text!r}")
    out = [mapping[n] for n in names]
    if out[0] != "quality" or len(set(out)) != len(out):
        raise UsageError("--objective must start with the quality metric and name each objective once")
    return out


def _quality_metric(objective: str | None, metric: str | None) -> str:
    """The validation metric a study optimises: ``--objective auc`` means ROC-AUC, ``f1`` an F1 (``--metric f1``,
    the default, or ``f1@0.5``); a ``--metric`` that says otherwise is a usage error, not silently overruled.
    Without ``--objective``, ``--metric`` alone decides."""
    named = (objective or "").split(",")[0].strip()
    if named == "auc":
        if metric not in (None, "auc"):
            raise UsageError(f"--objective {objective} optimises ROC-AUC but --metric {metric} says F1: give one "
                             f"of them (--metric auc is the same as --objective auc)")
        return "auc"
    if named == "f1" and metric == "auc":
        raise UsageError(f"--objective {objective} optimises F1 but --metric auc says ROC-AUC: use --objective auc"
                         f"{objective[len(named):]}")
    return metric or "f1"


def _interrupted_exit_code() -> int:
    """143 when SIGTERM stopped the search stack's run, else 130 (Ctrl-C)."""
    interrupt = sys.modules.get("search.interrupt")
    return interrupt.exit_code() if interrupt is not None else 130


def _interrupted_again(args: argparse.Namespace) -> str | None:
    """The line for a search or worker a second Ctrl-C/SIGTERM stopped, or None after one: the first one's line
    (resume) was printed, or the final model's stop was being recorded; the second stopped that wrap-up at once,
    before MLflow's study run was closed and its missed trial runs back-filled, which `sync` makes up."""
    interrupt = sys.modules.get("search.interrupt")
    if interrupt is None or not interrupt.repeated():
        return None
    line = f"interrupted again ({interrupt.cause()}): stopped at once"
    resume = "the study keeps its finished trials: run the same command again to resume it"
    if getattr(args, "no_mlflow", False):
        return f"{line}; {resume}"
    return (f"{line}, before MLflow was brought up to date; {resume}, and `{_sync_command(args.study, args)}` to "
            f"update MLflow")


def _interruptible(run: Callable[[], int]) -> int:
    """Run a search command with SIGTERM handled as Ctrl-C for its whole length (the final model too, not only
    the trials): one line and exit code 143 instead of a silent death, the study left resumable."""
    from search import interrupt

    interrupt.clear()
    previous = interrupt.install()
    try:
        return run()
    finally:
        interrupt.restore(previous)


def _trial_lines(args: argparse.Namespace) -> Callable[[str], None] | None:
    """Where the search's per-trial lines go: above the progress bar (None: the search's own choice), or printed
    with --quiet, which drops the bar only (without a bar the search itself prints nothing)."""
    return print if args.quiet else None


def _print_summary(result, args: argparse.Namespace) -> None:
    from search.study import trial_counts

    study = result.study
    print(f"study {study.study_name}: " + (trial_counts(study.get_trials(deepcopy=False)) or "no trial yet"))
    if result.tracking_failures:
        skipped = getattr(result, "tracking_skipped", 0)
        sync = _sync_command(study.study_name, args)
        print(f"warning: {len(result.tracking_failures)} MLflow calls failed"
              + (f" and {skipped} were skipped while the tracking store was unreachable" if skipped else "")
              + f"; the results are in the Optuna study: run `{sync}` when the tracking server is back",
              file=sys.stderr)


def _sync_command(study_name: str, args: argparse.Namespace) -> str:
    """The ``ecg-automl sync`` that back-fills this run's study, printed for the user to run next: with this run's
    storage and MLflow options, as sync's defaults name another study store and tracking store."""
    from search import storage_option

    return f"ecg-automl sync --study {shlex.quote(study_name)}{storage_option(args.storage)}{_mlflow_options(args)}"


def _mlflow_options(args: argparse.Namespace, *, experiment: bool = True) -> str:
    """`` --mlflow-config F --tracking-uri U --experiment E`` as given to this run (shell-quoted), for a command
    printed for the user to run next that logs to the same tracking store and experiment (``ui`` takes no
    ``--experiment``: ``experiment=False``)."""
    from search import redact_url

    uri = redact_url(args.tracking_uri) if args.tracking_uri else None  # a password stays out of terminals and logs
    return "".join(f" {flag} {shlex.quote(value)}" for flag, value in
                   (("--mlflow-config", args.mlflow_config), ("--tracking-uri", uri),
                    ("--experiment", args.experiment if experiment else None)) if value)


@command("worker")
def cmd_worker(args: argparse.Namespace) -> int:
    """``ecg-automl worker``: join an existing Optuna-engine study and run trials of it, its settings its own."""
    from search import run_search, set_threads
    from search.study import why_no_model

    set_threads(args.tf_threads)
    result = run_search(args.study, None, n_trials=args.trials, storage=args.storage, tracking=_tracking(args),
                        timeout=args.timeout, pruner=args.pruner, final=False, progress=not args.quiet,
                        verbose=args.verbose, heartbeat=_heartbeat(args), trial_print_fn=_trial_lines(args))
    _print_summary(result, args)
    if result.interrupted:
        return _interrupted_exit_code()
    if args.trials > 0 and (why := why_no_model(result.study)):  # as `search` (it exited 0 here)
        print(f"error: study {args.study}: {why}", file=sys.stderr)
        return 1
    return 0


@command("studies")
def cmd_studies(args: argparse.Namespace) -> int:
    """``ecg-automl studies``: the studies of a storage, a row each (names to pass to --study, and where each is)."""
    from search.listing import format_summaries, study_summaries

    rows = study_summaries(args.storage)
    print(json.dumps(rows, indent=2) if args.json else format_summaries(rows, args.storage))
    return 0


@command("delete")
def cmd_delete(args: argparse.Namespace) -> int:
    """``ecg-automl delete``: remove a study whole (Optuna study, MLflow runs, final model file, KerasTuner folder),
    after saying what and asking (``--yes``: without asking)."""
    from search import Tracker
    from search.delete import delete_study, plan_deletion, study_to_delete

    tracking = _tracking(args)
    tracker = None
    if tracking is not None:
        tracker = Tracker(tracking)
        tracker.ping(experiment=False)  # it looks for the study's runs in any experiment of the store
    study = study_to_delete(args.study, args.storage)  # an old pipeline's or a half-created one too
    plan = plan_deletion(study, args.storage, tracker)
    print(f"deleting study {args.study!r}:")
    for line in plan.describe():
        print(f"  {line}")
    if not args.yes:
        if not sys.stdin.isatty():
            raise UsageError("not deleted: pass --yes to delete without being asked (the input is not a terminal)")
        try:
            answer = input("delete these? [y/N] ")
        except EOFError:  # Ctrl-D: a no (it was a traceback)
            answer = ""
            print()
        if answer.strip().lower() not in ("y", "yes"):
            print("not deleted")
            return 1
    delete_study(plan, tracker)
    gc = ""
    if plan.runs:  # --run-ids: a bare `mlflow gc` purges every deleted run of the store, not only these
        uri, ids = tracking.tracking_uri, ",".join(plan.runs)
        gc = (f"; `mlflow gc --run-ids {ids}` on the tracking server's backend store frees its runs' artifacts"
              if "://" in uri and not uri.startswith(("sqlite:", "file:")) else
              f"; `MLFLOW_TRACKING_URI={shlex.quote(uri)} mlflow gc --run-ids {ids}` frees its runs' artifacts")
    print(f"deleted study {args.study!r}{gc}")
    return 0


@command("sync")
def cmd_sync(args: argparse.Namespace) -> int:
    """``ecg-automl sync``: back-fill the MLflow runs a study's trials lack (an outage, a dead worker)."""
    from search import Tracker, fail_stale_trials, open_study

    tracker = Tracker(_tracking(args))
    tracker.ping()
    study, _ = open_study(args.study, args.storage, None)  # the study must exist: nothing is created
    tracker.require_study_run(study)  # a wrong store would get runs with no study run to belong to; before
    tracker.check()  # check(), which creates the experiment (and a SQLite store) a refused sync must not leave
    stale = fail_stale_trials(study)  # a worker killed with no other worker left to notice
    if stale:
        print(f"trial(s) {', '.join(map(str, stale))}: RUNNING without a heartbeat for longer than their worker's "
              f"grace period (the worker is gone): failed, and queued again for the next search run of the study")
    running = [t for t in study.get_trials(deepcopy=False) if t.state.name == "RUNNING"]
    if running:  # left alone, silently: a worker killed a moment ago looks alive until its grace period ends
        print(f"trial(s) {', '.join(str(t.number) for t in running)} still RUNNING ("
              + "; ".join(f"{t.user_attrs.get('worker', 'worker unknown')}, since "
                          f"{t.datetime_start:%Y-%m-%d %H:%M:%S}" for t in running)
              + "): left to their workers. A worker that was killed is found by its missing heartbeat "
                f"({_grace_text(running)} after its last one): run sync again then, or resume the search")
    lost, failed = tracker.lost, len(tracker.failures)
    counts = tracker.sync(study, study_run=True)
    print(f"MLflow back-fill for study {args.study}: {counts['created']} runs created, {counts['updated']} updated"
          + (f"; study run: {', '.join(counts['study_run'])}" if counts["study_run"] else ""))
    if counts["left_running"]:
        print(counts["left_running"])
    if counts["not_back_filled"]:
        print(f"warning: not back-filled on the study run: {'; '.join(counts['not_back_filled'])}", file=sys.stderr)
    if counts["trial_files_lost"]:  # the runs were whole but for these, and nothing said so
        print(f"warning: not back-filled on the trial runs (made from each trial's predictions and weights, which the "
              f"study does not keep; `ecg-automl export --trial N` retrains a model MLflow lacks): "
              f"{'; '.join(counts['trial_files_lost'])}", file=sys.stderr)
    if tracker.lost > lost:  # said "1 updated", exit 0, while every write had failed and the run stayed RUNNING
        trials = counts["incomplete"]
        print(f"error: {tracker.lost - lost} MLflow call(s) of the back-fill failed (the first: "
              f"{tracker.failures[failed] if len(tracker.failures) > failed else 'skipped: the store was unreachable'})"
              + (f"; trial(s) {', '.join(map(str, trials))} not fully back-filled" if trials else "")
              + f": run `{_sync_command(args.study, args)}` again once the tracking store takes writes",
              file=sys.stderr)
        return 1
    return 0


def _grace_text(trials) -> str:
    """How long a RUNNING trial may go without a heartbeat before sync fails it, for a message."""
    from search.storage import HEARTBEAT_ATTR, grace_period

    graces = sorted({grace_period(t.user_attrs[HEARTBEAT_ATTR]) for t in trials
                     if isinstance(t.user_attrs.get(HEARTBEAT_ATTR), (int, float))})
    if not graces:
        return "its worker's grace period"
    return f"{graces[0]} s" if len(graces) == 1 else f"{graces[0]}-{graces[-1]} s"


# --------------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------------
def _mb(n: int) -> str:
    return f"{n / 1e6:,.1f} MB"


def _data_cache(args: argparse.Namespace) -> int:
    """``ecg-automl data cache``: list the array cache's entries; ``--remove-stale``/``--remove-all`` delete them (and
    the temporary files killed writers left). Nothing else removes an entry, and each upgrade starts new ones."""
    import datetime as dt

    from ecg_data import cache_dir
    from ecg_data.cache import cache_entries, remove_cache_entries, stray_cache_files

    where = cache_dir()
    entries, stray = cache_entries(where), stray_cache_files(where)
    stale = [e for e in entries if not e.current]
    if args.remove_all or args.remove_stale or args.unused_for is not None:
        import time

        cutoff = time.time() - 86400 * (args.unused_for or 0)
        gone = (entries if args.remove_all else stale if args.remove_stale
                else [e for e in entries if e.last_used < cutoff])
        freed = remove_cache_entries(gone, stray)
        if args.json:
            print(json.dumps({"cache_dir": str(where), "entries_before": len(entries),
                              "removed": [e.path.stem for e in gone], "temporary_files_removed": [str(f) for f in stray],
                              "freed_bytes": freed}, indent=2))
            return 0
        print(f"removed {len(gone)} of the {len(entries)} entries of the array cache {where}"
              + (f" and {len(stray)} temporary file(s) of killed writers" if stray else "") + f": {_mb(freed)} freed"
              + ("; each is rebuilt from the records on its next use" if gone else ""))
        return 0
    total = sum(e.size_bytes for e in entries)
    if args.json:  # for scripts: sizes in bytes, last use in UTC, current true/false/null as CacheEntry has it
        utc = dt.timezone.utc
        print(json.dumps({"cache_dir": str(where), "exists": where.is_dir(), "total_bytes": total, "entries": [
            {"name": e.path.stem, "dataset": e.dataset, "path": str(e.path), "size_bytes": e.size_bytes,
             "last_used": dt.datetime.fromtimestamp(e.last_used, utc).isoformat(timespec="seconds"),
             "current": e.current} for e in entries],
            "temporary_files": [str(f) for f in stray], "stale_entries": len(stale)}, indent=2))
        return 0
    print(f"array cache {where}: {len(entries)} entr{'y' if len(entries) == 1 else 'ies'}, {_mb(total)}"
          + ("" if where.is_dir() else " (the folder does not exist yet)"))
    for e in entries:
        made = {True: "this installation's", False: "another version's", None: "origin unknown"}[e.current]
        used = dt.datetime.fromtimestamp(e.last_used).strftime("%Y-%m-%d %H:%M")
        print(f"  {e.path.stem:<32} {_mb(e.size_bytes):>10}  last used {used}  {made}")
    if stray:
        print(f"  {len(stray)} temporary file(s) of killed writers: "
              f"{_mb(sum(f.stat().st_size for f in stray if f.exists()))}")
    if stale:
        print(f"{len(stale)} entr{'y' if len(stale) == 1 else 'ies'} ({_mb(sum(e.size_bytes for e in stale))}) "
              f"{'is' if len(stale) == 1 else 'are'} not known to be this installation's: made by another version of "
              f"ecg-automl, wfdb, SciPy or scikit-learn, or written before entries recorded which and not read since. "
              f"`ecg-automl data cache --remove-stale` removes them; one still needed (here or by another installation "
              f"sharing this cache) is rebuilt from the records on its next use.")
    if entries:  # this code's entries of a moved data folder or changed records are not stale, but never read again
        print("`--unused-for DAYS` removes the entries no command has read for DAYS days, `--remove-all` every one.")
    return 0


@command("data")
def cmd_data(args: argparse.Namespace) -> int:
    """``ecg-automl data fetch|info|cache``: download a PhysioNet database, summarise the beats a source gives, or
    list (and clear) the array cache."""
    from ecg_data import fetch_database, load_dataset

    if args.data_cmd is None:
        raise UsageError("`ecg-automl data` needs a subcommand: `data fetch NAME` downloads a PhysioNet database "
                        "(mitdb, ptbdb, ptbxl) into the data root; `data info NAME` shows its records, beats, "
                        "class balance and splits; `data cache` lists the cached arrays (see `ecg-automl data "
                        "--help`)")
    if args.data_cmd == "fetch":
        path = fetch_database(args.name, args.root)
        print(f"{args.name} is in {path}")
        return 0
    if args.data_cmd == "cache":
        return _data_cache(args)
    if args.root is not None and args.data_path is not None:  # --data-path wins: the root was silently unused
        raise UsageError("--root and --data-path both say where the data is: give --data-path (the database's own "
                         "folder or file) or --root (the folder holding NAME/), not both")
    from spaces import DATA_KEYS, check_value

    check_value("--fs", args.fs, DATA_KEYS["fs"])  # the rates and windows a space file may ask for
    check_value("--window", args.window, DATA_KEYS["window"])
    # info only reads: a database missing from the data root is reported with the fetch command, not downloaded
    ds = load_dataset(args.name, root=args.root, fs=args.fs, window=args.window,
                      records=_record_list(args.records),
                      on_bad_record=args.on_bad_record, path=args.data_path, download=False)
    summary = ds.summary()
    left_out = {k: ds.info[k] for k in _LEFT_OUT_KEYS if k in ds.info}
    if args.json:
        print(json.dumps({**summary, "skipped": ds.info.get("skipped", []), "protocol": ds.info.get("protocol"),
                          "left_out": left_out}, indent=2))
        return 0
    print(f"{ds.name}: {summary['beats']} beats at {summary['fs']:g} Hz, windows of {summary['window']} samples "
          f"x {summary['channels']} channel(s)")
    for part, title in (("search", "search side (train/validation folds)"), ("test", "held-out test patients")):
        s = summary[part]
        classes = ", ".join(f"{k} {v}" for k, v in s["classes"].items())
        pct = 100 * s["abnormal"] / max(s["beats"], 1)
        print(f"  {title}: {s['patients']} patients, {s['records']} records, {s['beats']} beats, "
              f"{s['abnormal']} abnormal ({pct:.1f}%)\n    classes: {classes}")
    import numpy as np

    for part in ("search", "test"):
        recs = sorted(np.unique(ds.records[ds.split == part]).tolist(),  # PTB-XL's ecg_ids as numbers: 2 before 10
                      key=lambda r: (0, int(r), "") if r.isdigit() else (1, 0, r))
        print(f"  {part} records: {' '.join(recs[:60])}{' ...' if len(recs) > 60 else ''}")
    if ds.info.get("protocol"):
        print(f"  protocol: {ds.info['protocol']}")
    lines = _left_out_lines(left_out)
    if lines:
        print("  left out:")
        for line in lines:
            print(f"    {line}")
    skipped = ds.info.get("skipped", [])
    if skipped:
        print(f"  skipped {len(skipped)} bad record(s):")
        for s in skipped:
            print(f"    {s['path']}: {s['problem']}")
    return 0


#: ``info`` keys of the readers that count what a protocol leaves out (shown by ``data info``).
_LEFT_OUT_KEYS = ("paced_records_excluded", "beats_left_out", "excluded_no_diagnosis", "skipped_few_beats",
                  "no_full_window", "not_in_copy")


def _left_out_lines(left: dict) -> list[str]:
    """What the reader left out and why, one line each (none for a count of 0), so that the counts above
    can be checked against the database's own."""
    def split(counts: dict[str, int]) -> str:
        return f"{sum(counts.values())} (search {counts.get('search', 0)}, test {counts.get('test', 0)})"

    def examples(d: dict) -> str:
        return f" (e.g. {', '.join(str(e) for e in d['examples'])})" if d.get("examples") else ""

    lines = []
    if left.get("paced_records_excluded"):
        lines.append(f"paced records {' '.join(left['paced_records_excluded'])} (the AAMI protocol excludes them)")
    beats = left.get("beats_left_out") or {}
    if sum((beats.get("class_q") or {}).values()):
        lines.append(f"{split(beats['class_q'])} annotated beats of AAMI class Q (paced, fusion of paced and "
                     f"normal, unclassifiable)")
    if sum((beats.get("no_full_window") or {}).values()):
        lines.append(f"{split(beats['no_full_window'])} beats too close to a record's start or end for a full "
                     f"window")
    if sum((beats.get("no_signal") or {}).values()):
        lines.append(f"{split(beats['no_signal'])} annotated beats where the signal is flat or missing (a lead off)")
    if left.get("excluded_no_diagnosis"):
        lines.append(f"{left['excluded_no_diagnosis']} record(s) without a diagnostic statement")
    few = left.get("skipped_few_beats") or {}
    if few.get("count"):
        lines.append(f"{few['count']} record(s) where QRS detection found fewer than {few.get('min_beats')} "
                     f"beats{examples(few)}")
    if isinstance(left.get("no_full_window"), dict) and left["no_full_window"].get("count"):
        lines.append(f"{left['no_full_window']['count']} record(s) too short for one full window"
                     f"{examples(left['no_full_window'])}")
    absent = left.get("not_in_copy") or {}
    if absent.get("count"):
        lines.append(f"{absent['count']} record(s) listed in the database's table but not in this copy"
                     f"{examples(absent)}")
    return lines


# --------------------------------------------------------------------------------------------
# MLflow UI
# --------------------------------------------------------------------------------------------
@command("ui")
def cmd_ui(args: argparse.Namespace) -> int:
    """``ecg-automl ui``: start the MLflow UI on the configured tracking store (a local one must exist)."""
    import subprocess

    from search import redact_url
    from search.tracking import local_store

    cfg = _tracking(args)
    if cfg.tracking_uri.startswith(("http://", "https://")):
        uri = redact_url(cfg.tracking_uri)
        raise UsageError(f"`ecg-automl ui` serves a tracking store it opens itself (sqlite:///FILE, a database URL); "
                         f"{uri} is a tracking server, which has its own UI: open {uri} in a browser")
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: the MLflow UI will listen on {args.host}, reachable from other machines; it has no "
              f"authentication", file=sys.stderr)
    _check_ui_store(cfg)
    store = local_store(cfg.tracking_uri)
    if store is not None and not store.exists():  # e.g. run from another folder than the searches' runs/
        print(f"warning: no MLflow store at {store}: the UI will be empty until a search logs there (give the "
              f"store with --tracking-uri, mlflow.yaml or $MLFLOW_TRACKING_URI)", file=sys.stderr)
    port = _free_port(args.host, args.port)
    if store is not None and cfg.tracking_uri.startswith("sqlite:"):
        store.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", cfg.tracking_uri,
           "--host", args.host, "--port", str(port), "--workers", "1"]
    if cfg.artifact_location:
        from pathlib import Path

        art = cfg.artifact_location if "://" in cfg.artifact_location else Path(cfg.artifact_location).resolve().as_uri()
        cmd += ["--default-artifact-root", art]
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        cmd += ["--allowed-hosts", "*"]
    where = (f"http://[{args.host}]:{port}" if ":" in args.host else f"http://{args.host}:{port}")
    if args.host in ("0.0.0.0", "::", ""):  # no browser reaches http://0.0.0.0: this machine's own name does
        import socket

        where = (f"port {port} of every address of this machine (http://127.0.0.1:{port} here, "
                 f"http://{socket.gethostname()}:{port} from another machine)")
    print(f"MLflow UI on {where} (store {redact_url(cfg.tracking_uri)}); Ctrl-C to stop", flush=True)
    # The server forks workers: run it in its own process group and stop the whole group with us, so
    # neither Ctrl-C nor a SIGTERM to this process leaves a server behind.
    import signal

    proc = subprocess.Popen(cmd, start_new_session=True)

    def stop():
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    terminated = []

    def on_term(*_):  # stop the server after the main thread's proc.wait() has let go (not inside it: a
        terminated.append(True)  # second wait in the handler would block on the first one's lock until its timeout)
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        stop()
        return 143 if terminated else 130  # as every other command stopped so (it was 0, as if the UI had ended)


def _check_ui_store(cfg) -> None:
    """UsageError (or TrackingError) for a store the MLflow server cannot open: another scheme (``sqllite://``,
    ``ftp://``), a file that is no SQLite database, a database server that does not answer. Each printed the UI's
    URL, then a traceback from the server's start-up, exit 1."""
    from pathlib import Path

    from search import redact_url
    from search.tracking import Tracker, local_store

    uri = cfg.tracking_uri
    scheme = uri.split("://", 1)[0].split("+", 1)[0].lower() if "://" in uri else "file"
    if scheme not in ("sqlite", "file", "postgresql", "postgres", "mysql", "mssql"):
        raise UsageError(f"{redact_url(uri)} is no tracking store the MLflow UI can open: give sqlite:///FILE, a folder "
                         f"(file:///DIR), or a postgresql:// or mysql:// database")
    store = local_store(uri)
    if scheme == "sqlite" and store is not None and Path(store).is_file() and Path(store).stat().st_size:
        with open(store, "rb") as fh:  # (an empty file is a new database to SQLite)
            if fh.read(16) != b"SQLite format 3\x00":
                raise UsageError(f"{store} is not an SQLite database (the --tracking-uri, mlflow.yaml or "
                                 f"$MLFLOW_TRACKING_URI names another file?)")
    # a database server that does not answer (MLflow retried it for two minutes); not the experiment: the UI lists
    # them all, and restores one deleted from its trash
    Tracker(cfg).ping(experiment=False)


def _free_port(host: str, port: int) -> int:
    """``port`` if the UI can listen on it at ``host`` (for 0, the free port the system picks), else UsageError.
    On a port in use the MLflow server logs a bind error among its start-up lines and exits 0 half a minute
    later, while the URL printed before it points at whatever holds the port."""
    import socket

    try:
        family, kind, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        with socket.socket(family, kind) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server does
            probe.bind(address)
            return int(probe.getsockname()[1])
    except OSError as exc:  # in use, an address this host does not have, a host name that does not resolve
        import errno

        hint = " (another UI already running? choose another --port)" if exc.errno == errno.EADDRINUSE else ""
        raise UsageError(f"the MLflow UI cannot listen on {host}:{port}: {exc.strerror or exc}{hint}") from None


# --------------------------------------------------------------------------------------------
# parser
# --------------------------------------------------------------------------------------------


def _heartbeat(args: argparse.Namespace) -> float:
    """``--heartbeat``, 30 s when not given."""
    return 30.0 if args.heartbeat is None else args.heartbeat


def _add_run_args(p: argparse.ArgumentParser) -> None:
    """How a search or worker process runs its trials: heartbeat, TensorFlow threads, progress output."""
    p.add_argument("--heartbeat", type=seconds_up_to(86_400), default=None,  # None: not given (30)
                   help="seconds between trial heartbeats (default 30); a trial silent for 4 beats is failed and "
                        "retried")
    p.add_argument("--tf-threads", type=positive_int, default=None, metavar="N",
                   help="TensorFlow threads for this process (default: its own choice, one per CPU); on a small "
                        "machine run one worker per core with --tf-threads 1 (see README, Scaling out). The values "
                        "depend on the count (each trial records its tf_threads): pass the same N to repeat a study")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--verbose", type=int, default=0, choices=(0, 1, 2),  # Keras takes these (5 passed silently)
                   help="Keras fit verbosity (0 quiet, the default; 1 a progress bar; 2 one line per epoch)")


def _version_text() -> str:
    """What ``ecg-automl --version`` prints: this package's version, Python's and those of the installed libraries
    that decide results, for a bug report; run from a git checkout, the commit too."""
    from ecg_automl import __version__, git_source, versions

    found = versions()
    python = found.pop("python")
    libraries = [f"{name} {version}" for name, version in found.items() if version is not None]
    if found["tensorflow"] is None:
        libraries.append("no TensorFlow (the base install)")
    source = git_source()
    commit = (f", git {str(source['commit'])[:12]}{' with uncommitted changes' if source['dirty'] else ''}"
              if source else "")
    return f"ecg-automl {__version__}{commit} (Python {python}; {', '.join(libraries)})"


class _VersionAction(argparse.Action):
    """``--version``, its text read only when asked for (argparse's own action takes it at parser build)."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        print(_version_text())
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    """The ``ecg-automl`` argument parser with every subcommand (export, predict and bench-server included)."""
    from ecg_automl.defaults import DEFAULT_STORAGE

    p = argparse.ArgumentParser(prog="ecg-automl",
                                description="Search ECG classifiers that are accurate on unseen patients and fast on a Raspberry Pi.")
    p.add_argument("--version", action=_VersionAction,
                   help="show the versions of ecg-automl, Python and the libraries that decide results, and exit")
    _add_log_level(p, default="WARNING")
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")

    s = sub.add_parser("search", help="launch or resume a study")
    s.add_argument("--dataset", default="mitdb", help="mitdb (default), ptbdb, ptbxl or heartbeat-csv")
    s.add_argument("--data-path", default=None, help="read the dataset from this file/folder instead of the data root")
    s.add_argument("--space", default="default", type=non_empty("a space file or built-in name"),
                   help="space file, or a built-in name: default (the default), edge")
    s.add_argument("--trials", type=non_negative_int, default=20,
                   help="finished (complete or pruned) trials the study should hold (default 20; 0: create the study "
                        "only, for workers to join)")
    s.add_argument("--folds", type=int_at_least(2), default=3, help="patient-grouped, stratified CV folds per trial (default 3)")
    s.add_argument("--study", required=True, type=study_name, help="study name (rerun the same command to resume it)")
    s.add_argument("--storage", default=DEFAULT_STORAGE, help=f"Optuna RDB URL (default {DEFAULT_STORAGE})")
    s.add_argument("--timeout", type=positive_float, default=None,
                   help="stop starting new trials after this many seconds (default: no limit)")
    s.add_argument("--seed", type=seed, default=0,
                   help="seed of the sampler, folds, subsample and training (default 0); one process with the same "
                        "seed and --tf-threads repeats a study exactly, workers do not (docs/REPRODUCIBILITY.md)")
    s.add_argument("--epochs", type=positive_int, default=None, help="override the space's epochs")
    s.add_argument("--max-beats", type=positive_int, default=None,
                   help="subsample the search side to this many beats for the trials (stratified by patient and "
                        "class; every patient kept unless there are more patients than beats); the final model "
                        "still trains on every search beat (--no-final skips it)")
    s.add_argument("--records", default=None, help="comma-separated record ids to use (default: all)")
    s.add_argument("--metric", choices=["f1", "f1@0.5", "auc"], default=None,
                   help="validation metric of the abnormal class: F1 at the threshold chosen on the folds (the one "
                        "the exported model uses; default), F1 at 0.5, or ROC-AUC")
    s.add_argument("--objective", default=None,
                   help="f1 (the default) or auc (single objective; auc is the same as --metric auc) or e.g. "
                        "f1,latency,size (multi-objective, Pareto front)")
    s.add_argument("--latency-budget-ms", type=positive_float, default=None,
                   help="reject, before training, candidates slower than this many Raspberry Pi 4 milliseconds per "
                        "beat: the Pi 4 estimate of the --latency-mode file at 1 thread, or with --latency-target "
                        "the bench-server's median")
    s.add_argument("--latency-target", default=None, help="measure latency on a bench-server (http://HOST:PORT)")
    s.add_argument("--latency-mode", choices=["fp32", "dynamic", "fp16", "int8"], default="int8",
                   help="TFLite mode whose latency is gated and optimised (default int8, the Pi deployment)")
    s.add_argument("--pruner", choices=["median", "hyperband", "none"], default=None,
                   help="pruner of a new study (default median); stored with the study, so a resume or a "
                        "worker uses the same one unless given here")
    s.add_argument("--engine", choices=["optuna", "keras-tuner"], default="optuna",
                   help="optuna (the default: TPE, pruner, latency gate) or keras-tuner (its trials recorded in the "
                        "Optuna study of the same name)")
    s.add_argument("--tuner", choices=["hyperband", "bayesian", "random"], default=None,
                   help="KerasTuner tuner (with --engine keras-tuner; default hyperband)")
    s.add_argument("--on-bad-record", choices=["error", "skip"], default="error",
                   help="a corrupt record stops the run (default) or is skipped with a warning")
    s.add_argument("--no-final", action="store_true", help="skip the final retrain and held-out test")
    s.add_argument("--final-members", type=positive_int, default=1, metavar="K",
                   help="final model = average of the best config trained with K seeds (one exported file, "
                        "K times the latency; default 1; not with --final-model folds)")
    s.add_argument("--final-model", choices=["refit", "folds"], default="refit",
                   help="refit: the best config retrained on all search patients (default); folds: the average of "
                        "its --folds patient-grouped fold models, threshold from their out-of-fold predictions "
                        "(one exported file, --folds times the latency)")
    s.add_argument("--fold-repeats", type=positive_int, default=1, metavar="R",
                   help="with --final-model folds: train each fold model R times with other seeds (R x --folds "
                        "models averaged, R x the latency; each search beat scored out of fold by R of them for "
                        "the threshold; default 1)")
    s.add_argument("--out-dir", default="runs", help="where final models go (default runs/)")
    _add_run_args(s)
    _add_tracking_args(s)

    w = sub.add_parser("worker", help="join an existing study and run its trials (scale-out)")
    w.add_argument("--study", required=True, type=study_name, help="name of the study to join (created by `search --trials 0`)")
    w.add_argument("--storage", required=True, help="the study's Optuna RDB URL")
    w.add_argument("--trials", type=non_negative_int, required=True,
                   help="total finished trials the study should reach (all workers together, not per worker)")
    w.add_argument("--timeout", type=positive_float, default=None,
                   help="stop starting new trials after this many seconds (default: no limit)")
    w.add_argument("--pruner", choices=["median", "hyperband", "none"], default=None,
                   help="default: the pruner the study was created with")
    _add_run_args(w)
    _add_tracking_args(w)

    ls = sub.add_parser("studies", help="list the studies of a storage: trials, best, final test",
                        description="One row per study of the storage: its engine, data, objectives, trials by "
                                    "state, best trial (or Pareto front), final test on held-out patients and when "
                                    "its last trial ended. Reads only.")
    ls.add_argument("--storage", default=DEFAULT_STORAGE, help=f"Optuna RDB URL (default {DEFAULT_STORAGE})")
    ls.add_argument("--json", action="store_true", help="print the rows as JSON")

    x = sub.add_parser("delete", help="delete a study: its Optuna study, MLflow runs and final model file",
                       description="Delete a study whole: the Optuna study, its MLflow study run and trial runs "
                                   "(marked deleted: `mlflow gc` then frees their artifacts), its final model file "
                                   "(while it holds the model the study recorded; earlier final models of resumes "
                                   "whose best trial changed are left) and a KerasTuner search's state folder. It "
                                   "says what it deletes and asks first. Refused while a trial of the study runs, "
                                   "and when its MLflow runs are not in the tracking store given (--no-mlflow: "
                                   "leave them). A copy made with `optuna copy-study` names the original's runs "
                                   "and files: delete only a copy with `optuna delete-study`.")
    x.add_argument("--study", required=True, type=study_name, help="name of the study to delete")
    x.add_argument("--storage", default=DEFAULT_STORAGE, help=f"the study's Optuna RDB URL (default {DEFAULT_STORAGE})")
    x.add_argument("--yes", action="store_true", help="delete without asking")
    _add_tracking_args(x, experiment=False, optional=False)
    x.add_argument("--no-mlflow", action="store_true",
                   help="leave the study's MLflow runs (and do not open the tracking store)")

    y = sub.add_parser("sync", help="back-fill MLflow from the Optuna study (after a tracking outage)")
    y.add_argument("--study", required=True, type=study_name, help="name of the study whose trials MLflow should hold")
    y.add_argument("--storage", default=DEFAULT_STORAGE, help=f"the study's Optuna RDB URL (default {DEFAULT_STORAGE})")
    _add_tracking_args(y, optional=False)

    d = sub.add_parser("data", help="fetch a database or show what it holds")
    dsub = d.add_subparsers(dest="data_cmd")  # none given: cmd_data names the subcommands
    f = dsub.add_parser("fetch", help="download a PhysioNet database into the data root")
    f.add_argument("name", choices=["mitdb", "ptbdb", "ptbxl"])
    f.add_argument("--root", default=None, help="data root (default $ECG_AUTOML_DATA or the user cache)")
    c = dsub.add_parser("cache", help="list the cached arrays and what they take, or remove them",
                        description="The prepared beat arrays are cached (in $ECG_AUTOML_CACHE or "
                                    "~/.cache/ecg-automl/arrays) under a key of everything that makes them: each "
                                    "upgrade of ecg-automl, wfdb, SciPy or scikit-learn, or a moved data folder, "
                                    "starts new entries (116 MB for all of MIT-BIH), and nothing removes the old "
                                    "ones but this command. Removing an entry is safe: it is rebuilt from the "
                                    "records when it is needed. Only files named as entries (NAME-KEY.npz and its "
                                    ".json) are listed or removed.")
    rm = c.add_mutually_exclusive_group()
    rm.add_argument("--remove-stale", action="store_true",
                    help="remove the entries this installation will not read (made by another version, or of "
                         "unknown origin), and temporary files killed writers left")
    rm.add_argument("--remove-all", action="store_true", help="remove every entry (each is rebuilt on its next use)")
    rm.add_argument("--unused-for", type=positive_float, default=None, metavar="DAYS",
                    help="remove the entries no command has read for DAYS days (those of a data folder since moved, "
                         "or of records since changed, are this version's but never read again)")
    c.add_argument("--json", action="store_true",
                   help="print the entries (or, with a removal, what was removed) as JSON; sizes in bytes")
    i = dsub.add_parser("info", help="records, beats, class balance and the splits")
    i.add_argument("name", help="mitdb, ptbdb, ptbxl or heartbeat-csv")
    i.add_argument("--root", default=None, help="data root (default $ECG_AUTOML_DATA or the user cache)")
    i.add_argument("--data-path", default=None, help="read the dataset from this file/folder instead of the data root")
    i.add_argument("--fs", type=float, default=180.0, help="sampling rate in Hz after resampling, 50-1000 (default 180)")
    i.add_argument("--window", type=int, default=256, help="samples per beat window (default 256)")
    i.add_argument("--records", default=None, help="comma-separated record ids to use (default: all)")
    i.add_argument("--on-bad-record", choices=["error", "skip"], default="error",
                   help="a corrupt record stops the command (default) or is skipped and listed")
    i.add_argument("--json", action="store_true", help="print the summary as JSON")

    u = sub.add_parser("ui", help="start the MLflow UI on the tracking store")
    u.add_argument("--host", default="127.0.0.1",
                   help="bind address (default 127.0.0.1: this machine only). Any other address exposes the "
                        "UI, which has no authentication, to the network; a warning says so")
    u.add_argument("--port", type=port, default=5000, help="TCP port, 0-65535 (default 5000)")
    _add_tracking_args(u, optional=False, experiment=False)

    for extra in _extra_parsers:
        extra(sub)
    _add_log_level_to_subcommands(sub)
    return p


def _add_log_level(parser: argparse.ArgumentParser, default: str) -> None:
    """The ``--log-level`` option (on the top parser with its default, on each subcommand with SUPPRESS)."""
    parser.add_argument("--log-level", default=default, type=str.upper,
                        choices=["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"],
                        help="Python log level (default WARNING; INFO shows data/cache details)")


def _add_log_level_to_subcommands(sub) -> None:
    """``--log-level`` after the subcommand too (``ecg-automl sync --log-level INFO`` was "unrecognized
    arguments"); there it leaves the value given before the subcommand alone unless given."""
    for parser in sub.choices.values():
        if not any("--log-level" in a.option_strings for a in parser._actions):
            _add_log_level(parser, default=argparse.SUPPRESS)
        for action in parser._actions:  # `data fetch`, `data info`
            if isinstance(action, argparse._SubParsersAction):
                _add_log_level_to_subcommands(action)


#: Subcommands contributed by optional modules (TFLite export, predict, bench-server).
_extra_parsers: list[Callable] = []


def _load_extras() -> None:
    try:
        from ecg_automl.tflite import cli as tflite_cli
    except ImportError:
        return
    tflite_cli.register(_extra_parsers, COMMANDS)


#: Top-level modules that only the ``search`` extra installs (TensorFlow, Optuna, MLflow and their company).
SEARCH_EXTRA_MODULES = frozenset({"tensorflow", "keras", "keras_tuner", "optuna", "mlflow",
                                  "sklearn", "matplotlib", "tqdm", "psycopg", "psycopg2"})


def _missing_search_extra(exc: BaseException) -> str | None:
    """The module of the ``search`` extra whose absence ``exc`` reports, or None: on the base (Pi) install,
    ``search``, ``worker``, ``sync``, ``ui`` and ``export`` stopped with a ModuleNotFoundError traceback."""
    if isinstance(exc, ModuleNotFoundError) and exc.name:
        top = exc.name.split(".")[0]
        if top in SEARCH_EXTRA_MODULES:
            return top
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Run one ``ecg-automl`` command; returns its exit status. Output piped into a reader that stops early
    (``ecg-automl data info mitdb | head``) ends quietly with 141, as a shell's SIGPIPE would, not a traceback."""
    try:
        try:
            return _main(argv)
        finally:
            sys.stdout.flush()  # a reader gone shows here, not as an ignored BrokenPipeError at interpreter exit
    except BrokenPipeError:
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # the exit flush has nowhere to fail
        except (OSError, ValueError):
            pass
        return 141
    except KeyboardInterrupt:  # before a command ran (importing the toolkit takes a second): no traceback either
        print("interrupted", file=sys.stderr)
        return 130


def _main(argv: Sequence[str] | None) -> int:
    _load_extras()
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=getattr(logging, str(args.log_level).upper(), logging.WARNING),
                        format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("tensorflow", "absl", "mlflow", "alembic", "urllib3"):
        logging.getLogger(noisy).setLevel(max(logging.ERROR, logging.getLogger().level))
    if args.cmd not in ("predict", "bench-server"):  # the Pi commands never load the search stack
        try:
            import optuna
        except ImportError:  # the base (Pi) install: `data` runs without it, the search commands say what is missing
            pass
        else:
            optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        if args.cmd in ("search", "worker"):
            return _interruptible(lambda: COMMANDS[args.cmd](args) or 0)
        return COMMANDS[args.cmd](args) or 0
    except Exception as exc:
        if isinstance(exc, _user_errors()):
            print(f"error: {exc}", file=sys.stderr)
            return 2
        missing = _missing_search_extra(exc)
        if missing:
            from .install import install_hint

            print(f"error: `ecg-automl {args.cmd}` needs the search toolkit, which this install lacks (no module "
                  f"named {missing!r}): {install_hint('search')}; the base install runs predict, bench-server and "
                  f"data", file=sys.stderr)
            return 2
        raise
    except KeyboardInterrupt:
        resume = "; run the same command again to resume the study" if args.cmd in ("search", "worker") else ""
        print((resume and _interrupted_again(args)) or f"interrupted{resume}", file=sys.stderr)
        return _interrupted_exit_code() if resume else 130


if __name__ == "__main__":
    sys.exit(main())
