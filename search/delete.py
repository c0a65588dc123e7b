"""Deleting a study whole: its Optuna study, its MLflow runs and the files its searches wrote.

Optuna's ``delete-study`` removes the study alone; its MLflow runs (each trial's model, 0.25-1.3 MB) and its final
model file stayed behind with nothing to tell which study they belonged to.
"""

from __future__ import annotations

import json
import shlex
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import optuna
from optuna.trial import TrialState

from .final import final_model_problem
from .final_marker import final_in_progress
from .storage import redact_url, storage_option
from .tracking import Tracker, TrackingError, local_store


@dataclass
class StudyDeletion:
    """What :func:`delete_study` removes (``plan_deletion``), and what it leaves, in words (``kept``)."""

    study: str
    storage: str
    trials: int
    runs: list[str] = field(default_factory=list)  # MLflow run ids: the study run first, then its trial runs
    files: list[Path] = field(default_factory=list)
    folders: list[Path] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)

    def describe(self) -> list[str]:
        """One line per thing to delete, then what stays."""
        lines = [f"Optuna study {self.study!r} in {redact_url(self.storage)} ({self.trials} trial(s))"]
        if self.runs:
            lines.append(f"{len(self.runs)} MLflow run(s): the study run {self.runs[0]} and {len(self.runs) - 1} "
                         f"trial run(s) (marked deleted; `mlflow gc` frees their artifacts)")
        lines += [f"file {f}" for f in self.files] + [f"folder {d}" for d in self.folders]
        lines += [f"not deleted: {k}" for k in self.kept]
        if self.runs or self.files or self.folders:  # nothing tells a copy from the study it was copied from
            lines.append("(a copy of a study made with `optuna copy-study` names the same runs and files as the "
                         "original: to delete only the copy, use `optuna delete-study`)")
        return lines


def study_to_delete(name: str, storage: str) -> optuna.Study:
    """Study ``name`` as stored, whatever made it: :func:`search.open_study` refuses a study of an older data
    pipeline or one a killed search left half-created, the ones a user most wants gone. Creates nothing."""
    from .storage import StorageError, make_storage, sqlite_file_missing
    from .study import StudyMismatchError

    if sqlite_file_missing(storage):
        raise StorageError(f"no study storage at {redact_url(storage)} (give the --storage the study is in)")
    rdb = make_storage(storage, heartbeat=None, create=False)
    names = {s.study_name for s in optuna.get_all_study_summaries(rdb, include_best_trial=False)}
    if name not in names:
        raise StudyMismatchError(f"no study named {name!r} in {redact_url(storage)} (known: "
                                 f"{', '.join(sorted(names)) or 'none'})")
    return optuna.load_study(study_name=name, storage=rdb)


def plan_deletion(study: optuna.Study, storage: str, tracker: Tracker | None) -> StudyDeletion:
    """What deleting ``study`` removes: its MLflow runs in ``tracker``'s store, its final model file (only while it
    holds the bytes the study recorded: another study of the same name may have saved over it) and its KerasTuner
    folder (only while that folder's state names this study and its settings). Refused while a trial runs or a
    search makes the final model: a worker would go on writing to what is deleted."""
    running = [t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))]
    if running:
        sync = f"ecg-automl sync --study {shlex.quote(study.study_name)}{storage_option(storage)}"
        raise TrackingError(f"study {study.study_name!r} has trial(s) {', '.join(map(str, running))} RUNNING: stop its "
                            f"searches and workers first (a trial a killed worker left RUNNING is failed by `{sync}` "
                            f"once its heartbeat is stale)")
    marker, alive = final_in_progress(study)
    if marker and alive:
        raise TrackingError(f"a search ({marker.get('worker')}) is making study {study.study_name!r}'s final model: "
                            f"stop it first")
    plan = StudyDeletion(study.study_name, storage, len(study.trials))
    if marker and alive is None:
        plan.kept.append(f"what a search on another host ({marker.get('worker')}) may still be making: the study's "
                         f"final model (stop that search first if it runs)")
    _plan_runs(plan, study, tracker)
    final = study.user_attrs.get("final") or {}
    if final.get("model_path"):
        problem = final_model_problem(final)
        if problem is None and not final.get("model_sha256"):  # recorded before studies kept it: not known as its own
            problem = "is not known to be this study's (made before studies recorded their final model's SHA-256)"
        if problem is None:
            plan.files.append(Path(final["model_path"]))
        elif Path(final["model_path"]).exists():
            plan.kept.append(f"{final['model_path']}: it {problem}")
    kt_dir = study.user_attrs.get("keras_tuner_dir")
    if kt_dir and Path(kt_dir).is_dir():
        if _keras_tuner_folder_of(Path(kt_dir), study):
            plan.folders.append(Path(kt_dir))
        else:
            plan.kept.append(f"{kt_dir}: its KerasTuner state is not this study's (another search of the name "
                             f"with the same --out-dir)")
    return plan


def _plan_runs(plan: StudyDeletion, study: optuna.Study, tracker: Tracker | None) -> None:
    """The study's run and its nested trial runs, wherever in the store (not only in the configured experiment)."""
    parent = study.user_attrs.get("mlflow_parent_run_id")
    if not parent:
        return
    if tracker is None:
        plan.kept.append(f"its MLflow runs (study run {parent}): --no-mlflow")
        return
    store = local_store(tracker.config.tracking_uri)
    try:
        if store is not None and not store.exists():  # opening it would create an empty store here
            raise FileNotFoundError(store)
        run = tracker.client.get_run(parent)
    except Exception:
        # the study is the only record of which runs were its: deleted, they would be orphans for good
        raise TrackingError(f"study {study.study_name!r} logs to MLflow run {parent}, which is not in the tracking "
                            f"store {redact_url(tracker.config.tracking_uri)}: give the store it logged to "
                            f"(--tracking-uri, mlflow.yaml or $MLFLOW_TRACKING_URI; a relative sqlite:/// path is "
                            f"read from the current folder), or --no-mlflow to delete the study and leave its runs"
                            ) from None
    children, token = [], None
    while True:
        page = tracker.client.search_runs([run.info.experiment_id], f"tags.`mlflow.parentRunId` = '{parent}'",
                                          max_results=1000, page_token=token)
        children += [r.info.run_id for r in page]
        token = page.token
        if not token:
            break
    if run.info.lifecycle_stage != "deleted" or children:
        plan.runs = [parent, *children]


def _keras_tuner_folder_of(folder: Path, study: optuna.Study) -> bool:
    """Whether KerasTuner's project ``folder`` was made for ``study``: its state file names the study and its
    settings (not its storage URL, which the state keeps as typed: ``sqlite:///kt.db`` there, an absolute path in
    the delete command, was "another study's")."""
    from .keras_tuner_engine import STATE_FILE

    try:
        state = json.loads((folder / STATE_FILE).read_text())
    except (OSError, ValueError):
        return False
    return (isinstance(state, dict) and state.get("study") == study.study_name
            and state.get("settings") == study.user_attrs.get("settings"))


def delete_study(plan: StudyDeletion, tracker: Tracker | None) -> None:
    """Delete what ``plan`` lists, the Optuna study last: a deletion cut short leaves the study, and running it
    again finishes the job."""
    for run_id in plan.runs:
        run = tracker.client.get_run(run_id)
        if run.info.lifecycle_stage != "deleted":
            tracker.client.delete_run(run_id)
    for f in plan.files:
        f.unlink(missing_ok=True)
        try:
            f.parent.rmdir()  # runs/NAME/, when nothing else is in it
        except OSError:
            pass
    for d in plan.folders:
        shutil.rmtree(d, ignore_errors=True)
    optuna.delete_study(study_name=plan.study, storage=plan.storage)

