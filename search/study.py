"""The Optuna driver: create or resume a study, run trials until it holds N finished ones, final test."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import numbers
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import optuna
from optuna.trial import TrialState

from ecg_data import (PIPELINE_VERSION, BeatDataset, DataError, data_layout, describe_layout, grouped_splits,
                      load_dataset, patient_kfold, subsample_beats)
from spaces import SearchSpace, SpaceError

from . import interrupt
from .final import final_model_problem, final_test
from .final_marker import FINAL_IN_PROGRESS, FINAL_KILLED, clear_dead_final, final_in_progress, marker_since
from .metrics import describe_final_model, describe_values, format_report
from .objective import CVObjective, Gate, worker_id
from .pruners import make_pruner
from .samplers import make_sampler
from .settings import StudySettings
from .storage import (DEFAULT_STORAGE, StorageError, check_storage, fail_stale_trials, make_storage, redact_url,
                      sqlite_file_missing, storage_write_problem)
from .tracking import Tracker, TrackingConfig

log = logging.getLogger("search")

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
#: Objective name -> Optuna direction.
DIRECTIONS = {"quality": "maximize", "latency": "minimize", "size": "minimize"}


class StudyMismatchError(RuntimeError):
    """The named study exists with other settings than the command gives."""


class TrialsKeepFailingError(RuntimeError):
    """Trial after trial failed: the cause is the setup (an unreachable device, a broken install), not a
    config, so the run stops instead of failing trials forever. The study keeps everything; a rerun resumes."""


#: Failed trials in a row, in one process, after which a run stops (``run_trials(max_failures_in_a_row=)``).
MAX_FAILURES_IN_A_ROW = 10


@dataclass
class SearchResult:
    """What a search run leaves: the study, the final test report (if run) and MLflow problems."""

    study: optuna.Study
    final: dict[str, Any] | None
    tracking_failures: list[str]
    interrupted: bool = False
    tracking_skipped: int = 0  # MLflow calls not made while the tracking store was unreachable


def _refuse_mismatch(name: str, study: optuna.Study, stored: StudySettings, settings: StudySettings | None,
                     engine: str | None) -> None:
    """StudyMismatchError unless the stored study can go on with ``settings`` (None: the stored ones) under
    ``engine``: same data pipeline, same engine, same settings."""
    if stored.pipeline_version != PIPELINE_VERSION:
        raise StudyMismatchError(
            f"study {name!r} was made with data pipeline version {stored.pipeline_version or '5 or older'}, "
            f"this ecg-automl prepares beats with version {PIPELINE_VERSION} (other RR-interval features): "
            f"its trials were measured on other inputs, so it is not resumed or exported. Start a new "
            f"--study, or use the ecg-automl release that made it.")
    _refuse_other_layout(name, stored)
    made_by = study.user_attrs.get("engine", "optuna")  # studies from before the attr: the driver's
    if engine is not None and made_by != engine and settings is None:
        # a worker ("choose a new --study name" is nothing it can act on); KerasTuner records a trial only when it
        # ends, so even an empty study may be one it is searching now
        raise StudyMismatchError(
            f"study {name!r} is searched by {made_by}: `ecg-automl worker` joins Optuna-engine studies only. A "
            f"KerasTuner study runs in one process: resume it with the `ecg-automl search --engine keras-tuner` "
            f"command that made it.")
    if engine is not None and made_by != engine and study.get_trials(deepcopy=False):
        raise StudyMismatchError(
            f"study {name!r} holds trials searched by {made_by}, not {engine}: one study, one engine "
            f"(their draws and budgets differ). Choose a new --study name.")
    if settings is not None:
        diff = stored.differences(settings)
        if diff and _moved_bench_server(name, study, stored, settings):
            return  # a board of the same model and software at a new address: open_study stores the new URL
        if diff:
            raise StudyMismatchError(
                f"study {name!r} already exists with other settings ({'; '.join(diff)}). "
                f"Resume it with the same options, or choose a new --study name.")


def _moved_bench_server(name: str, study: optuna.Study, stored: StudySettings, settings: StudySettings) -> bool:
    """True when the bench-server URL is the only setting that differs and the server now at the given URL is a board
    of the same model and software (``/health``'s device: board name, machine, system, Python, LiteRT) as the one
    that timed the study's trials (a Pi that got a new address), or no trial was timed yet; StudyMismatchError when
    it is another kind or the trials or the server do not say which board. False when other settings differ too."""
    old, new = stored.latency_target, settings.latency_target
    if not old or not new or old == new or dataclasses.replace(stored, latency_target=new).differences(settings):
        return False
    from ecg_automl.tflite import check_target

    device = check_target(new).get("device")
    timed = [t for t in study.get_trials(deepcopy=False) if "latency_ms" in t.user_attrs]
    if not timed:
        return True
    boards = {json.dumps(t.user_attrs.get("latency_device"), sort_keys=True) for t in timed}
    if not isinstance(device, dict):
        found = f"the server at {new} does not say which board it is (its /health has no device)"
    elif boards == {json.dumps(device, sort_keys=True)}:
        return True
    elif "null" in boards:
        found = ("some of its trials do not record the board that timed them (ecg-automl before 2026-12-06 did not "
                 "keep it), so the board at the new address cannot be checked")
    else:
        found = (f"its trials were timed on {'; '.join(sorted(boards))}, and {new} is {json.dumps(device, sort_keys=True)}"
                 if len(boards) == 1 else f"its trials were timed on {len(boards)} different boards")
    raise StudyMismatchError(
        f"study {name!r} was timed on the bench-server at {old}; {found}. Latencies of two boards do not compare "
        f"within one study: point --latency-target at the study's board, or choose a new --study name.")


def _tracking_options(tracker: Tracker | None, *, changed_only: bool = False) -> str:
    """The MLflow options a worker needs to log where this run logs (the printed worker command failed with "logs to
    MLflow experiment 'X', not 'ecg-automl'" after a search with --experiment X): the store (password redacted) and
    experiment, or ``--no-mlflow``. ``changed_only``: those that differ from ./mlflow.yaml's, for a command run
    from here (the Pareto front's export, which refused another experiment than the study's, and logged a
    --no-mlflow study's export nowhere without a word)."""
    if tracker is None:
        return " --no-mlflow"
    default = None
    if changed_only:
        try:
            default = TrackingConfig.load()
        except Exception:  # a broken ./mlflow.yaml: both options said
            pass
    options = ""
    if default is None or tracker.config.tracking_uri != default.tracking_uri:
        options += f" --tracking-uri {shlex.quote(redact_url(tracker.config.tracking_uri))}"
    if default is None or tracker.config.experiment_name != default.experiment_name:
        options += f" --experiment {shlex.quote(tracker.config.experiment_name)}"
    return options


def _refuse_other_layout(name: str, stored: StudySettings) -> None:
    """StudyMismatchError when the study's dataset lays its arrays out otherwise now than when the study was made
    (``ecg_data.data_layout``). A study stored without a layout was made before studies recorded one: refused for a
    source that has a layout (heartbeat-csv: its windows changed then; ptbdb: its held-out patients changed with
    layout 2), resumed for the others (nothing changed)."""
    current = data_layout(stored.dataset)
    if stored.data_layout == current:
        return
    raise StudyMismatchError(
        f"study {name!r} was made on {stored.dataset} arrays laid out otherwise than this ecg-automl lays them out. "
        f"Study: {describe_layout(stored.dataset, stored.data_layout)}; now: "
        f"{describe_layout(stored.dataset, current)}. Its trials were measured on other inputs, so it is not "
        f"resumed or exported: start a new study (`ecg-automl search` with another --study name).")


def _stamped(settings: StudySettings) -> StudySettings:
    """``settings`` with the data pipeline version and the dataset's data layout of this ecg-automl filled in
    where not given (what a new study records, and what a resume is compared with)."""
    if settings.pipeline_version is None:
        settings = dataclasses.replace(settings, pipeline_version=PIPELINE_VERSION)
    if settings.data_layout is None:
        settings = dataclasses.replace(settings, data_layout=data_layout(settings.dataset))
    return settings


def stored_study(name: str, storage_url: str | None) -> optuna.Study | None:
    """The study ``name`` if the storage holds it (fully created), else None; writes nothing, not even a SQLite
    file that is not there yet (it is created later, once the command's input is accepted)."""
    url = storage_url or DEFAULT_STORAGE
    if sqlite_file_missing(url):
        return None
    storage = make_storage(url, heartbeat=None, create=False)
    try:
        summaries = optuna.get_all_study_summaries(storage, include_best_trial=False)
        if name not in {s.study_name for s in summaries} or _half_created(name, storage):
            return None
        return optuna.load_study(study_name=name, storage=storage)
    except Exception as exc:  # a corrupt page opens, then fails a read: a 99-line traceback
        said = storage_write_problem(exc)
        if said is None:
            raise
        raise StorageError(f"cannot read study storage {redact_url(url)} ({said}): restore the file from a copy, "
                           f"or use another --storage") from None


def refuse_other_settings(name: str, storage_url: str | None, settings: StudySettings, engine: str,
                          tracker: Tracker | None = None) -> None:
    """Before the data loads (minutes, or a download): refuse a resume whose settings or engine differ from
    the stored study's, as :func:`open_study` would after it, and (``tracker``) whose ``--experiment`` is not the
    one the study logs to, before :meth:`Tracker.check` creates it (the study's runs would be split over two
    experiments, and a refused resume left the mistyped experiment behind). Writes nothing; a study or SQLite
    file that is not there yet passes (it is created later)."""
    study = stored_study(name, storage_url)
    if study is not None:
        _refuse_mismatch(name, study, StudySettings.from_dict(study.user_attrs.get("settings", {})),
                         _stamped(settings), engine)
        if tracker is not None:
            tracker.require_study_run(study, missing_ok=True)


def open_study(name: str, storage_url: str | optuna.storages.BaseStorage | None = None,
               settings: StudySettings | None = None, pruner: str | None = None, heartbeat: float | None = 30,
               engine: str | None = None) -> tuple[optuna.Study, StudySettings]:
    """Create the study or load it; a loaded study keeps its stored settings (``settings=None`` means
    "take them from the study", as a worker does). Other settings than the stored ones are refused.

    ``study, settings = open_study("quickstart")`` reads an existing study of :data:`DEFAULT_STORAGE` (``storage_url``
    None) without writing to it: ``study.trials_dataframe()``, ``study.best_trial.user_attrs["config"]``.

    The pruner named when the study was created is stored with it; ``pruner=None`` (a worker, or a
    resume without ``--pruner``) uses that one, so every worker prunes alike. ``engine`` (``optuna``, or
    ``keras-tuner:<tuner>`` for trials KerasTuner ran) is stored on a new study; a study another engine
    searched is refused (``None``: any engine, as export does). So is a study made with another data pipeline
    version or another layout of its dataset's arrays (``ecg_data.data_layout``)."""
    if settings is not None:
        settings = _stamped(settings)
    settings_given = settings
    if isinstance(storage_url, optuna.storages.BaseStorage):
        storage = storage_url
    else:
        storage = make_storage(storage_url, heartbeat=heartbeat, create=settings is not None)
    existing = {s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)}
    if name in existing and _half_created(name, storage):
        if settings is None:
            raise StudyMismatchError(f"study {name!r} was never fully created (a search was stopped while creating "
                                     f"it): run the `ecg-automl search` command that creates it again")
        half = optuna.load_study(study_name=name, storage=storage)
        if [d.name.lower() for d in half.directions] != [DIRECTIONS[o] for o in settings.objectives]:
            optuna.delete_study(study_name=name, storage=storage)  # empty and without settings: nothing to keep
        existing.discard(name)  # created below (create_study loads one with the same directions)
    if name in existing:
        study = optuna.load_study(study_name=name, storage=storage)
        stored = StudySettings.from_dict(study.user_attrs.get("settings", {}))
        study.pruner = make_pruner(pruner or study.user_attrs.get("pruner", "median"), _epochs_per_fold(stored))
        _refuse_mismatch(name, study, stored, settings, engine)
        if pruner and pruner != study.user_attrs.get("pruner", "median"):  # this process only: said, not silent
            log.warning("study %r was created with the %s pruner: this process prunes with %s, other workers and later "
                        "resumes without --pruner with %s", name, study.user_attrs.get("pruner", "median"), pruner,
                        study.user_attrs.get("pruner", "median"))
        if settings is not None and settings.latency_target != stored.latency_target:  # the board moved
            timed = any("latency_ms" in t.user_attrs for t in study.get_trials(deepcopy=False))
            log.warning("study %r: its bench-server %s is now at %s (%s); the study times its trials there from now on",
                        name, stored.latency_target, settings.latency_target,
                        "a board of the same model and software answered there" if timed else "no trial was timed yet")
            moves = [*study.user_attrs.get("latency_target_moves", []),
                     {"from": stored.latency_target, "to": settings.latency_target,
                      "trials_before": len(study.get_trials(deepcopy=False))}]
            stored = dataclasses.replace(stored, latency_target=settings.latency_target)
            study.set_user_attr("settings", stored.to_dict())
            study.set_user_attr("latency_target_moves", moves)
        settings = stored
    else:
        if settings is None:
            raise StudyMismatchError(f"no study named {name!r} in the storage (known: {', '.join(sorted(existing)) or 'none'})")
        directions = [DIRECTIONS[o] for o in settings.objectives]
        study = optuna.create_study(study_name=name, storage=storage, directions=directions,
                                    pruner=make_pruner(pruner or "median", _epochs_per_fold(settings)),
                                    load_if_exists=True)
        study.set_user_attr("settings", settings.to_dict())
        study.set_user_attr("pruner", pruner or "median")
    if engine is not None and study.user_attrs.get("engine", "optuna") != engine:
        study.set_user_attr("engine", engine)  # a new study, or an empty one another engine left
    trials = study.get_trials(deepcopy=False)
    # A worker, or any run joining a study that other processes are running, gets its own seed;
    # a lone search keeps the reproducible one.
    shared = settings_given is None or any(t.state == TrialState.RUNNING for t in trials)
    study.sampler = make_sampler(settings, len(trials), salt=_process_salt() if shared else 0)
    return study, settings


def data_fingerprint(data: BeatDataset) -> dict[str, Any]:
    """What a study's trials were computed on: counts, and a hash of every beat's patient and label in order
    (not the samples, which may differ in the last bit between platforms)."""
    import hashlib

    h = hashlib.sha256("\n".join(map(str, data.groups)).encode())
    h.update(np.asarray(data.y, dtype=np.int8).tobytes())
    return {"beats": int(len(data)), "patients": int(len(np.unique(data.groups))), "abnormal": int(np.sum(data.y)),
            "sha256": h.hexdigest()[:16]}


def check_study_data(study: optuna.Study, data: BeatDataset) -> None:
    """Refuse a worker or resume whose copy of the dataset gives other beats than the study's (a record missing or
    skipped there, another PTB-XL subset): its trials were mixed in, no longer comparable, without a word. The
    first process to look records the fingerprint (a study made before this check gets it then)."""
    now, stored = data_fingerprint(data), study.user_attrs.get("data_fingerprint")
    if stored is None:
        study.set_user_attr("data_fingerprint", now)
    elif stored != now:
        def said(f: dict[str, Any]) -> str:
            return f"{f['beats']:,} beats of {f['patients']} patients ({f['abnormal']:,} abnormal)"

        raise StudyMismatchError(
            f"study {study.study_name!r} was searched on other data: {said(stored)} then, {said(now)} here"
            + (" (the same counts, other beats)" if said(stored) == said(now) else "")
            + ". Another copy of the dataset, or records missing or skipped here: its trials would not be comparable "
              "with the study's. Use the study's data (ECG_AUTOML_DATA, --data-path), or a new --study")


def _half_created(name: str, storage: optuna.storages.BaseStorage) -> bool:
    """True for a study a search was stopped in the middle of creating (killed between ``create_study`` and
    storing its settings): no settings, no trials. Loaded as it is, it would be refused for good as made by
    "pipeline version 5 or older"."""
    study = optuna.load_study(study_name=name, storage=storage)
    return "settings" not in study.user_attrs and not study.get_trials(deepcopy=False)


def _epochs_per_fold(settings: StudySettings) -> int:
    """The steps each fold takes in a trial's reports (:meth:`CVObjective._report_epoch`): the most epochs this
    study's space allows, so that every trial's second fold begins at this step; 0 if unknown."""
    try:
        return SearchSpace.from_yaml(settings.space_yaml).epochs_range[1]
    except SpaceError:  # a study stored without its space: the pruner then compares from the first epoch
        return 0


def _process_salt() -> int:
    """A number that differs between processes (host, pid, start time) to decorrelate their samplers."""
    import os
    import socket
    import time
    import zlib

    return zlib.crc32(f"{socket.gethostname()}:{os.getpid()}:{time.time_ns()}".encode())


def load_study_data(settings: StudySettings, space: SearchSpace) -> BeatDataset:
    """The study's dataset with the space's sampling rate and window; DataError when its search side has
    fewer patients than the study has folds (checked before any study is created)."""
    if settings.data_path is not None and not Path(settings.data_path).expanduser().exists():  # moved, or elsewhere
        relative = not Path(settings.data_path).expanduser().is_absolute()
        raise DataError(f"--data-path {settings.data_path} does not exist"
                        + (f" in {Path.cwd()} (a relative path is read from the folder a command runs in: run "
                           f"export, a worker or a resume from the folder the study was made in)" if relative else "")
                        + "; for an existing study put the same files there: where its data is is one of the "
                          "study's settings")
    data = load_dataset(settings.dataset, fs=space.fs, window=space.window, records=settings.records,
                        on_bad_record=settings.on_bad_record, path=settings.data_path)
    n = len(np.unique(data.groups[data.split == "search"]))
    if n < settings.folds:
        chosen = f" (--records {','.join(settings.records)})" if settings.records else ""
        if n == 0:
            raise DataError(f"{settings.dataset}{chosen} has no patient on the search side: every record given is a "
                            f"held-out test record (`ecg-automl data info {settings.dataset}` lists which are which)")
        raise DataError(f"{settings.folds} folds need at least {settings.folds} patients on the search side; "
                        f"{settings.dataset}{chosen} has {n}: lower --folds or add records")
    classes = np.unique(data.y[data.split == "search"])
    if len(classes) < 2:  # every trial failed on it, ten in a row, after the study was written
        kind = "abnormal" if classes[0] else "normal"
        chosen = f" (--records {','.join(settings.records)})" if settings.records else ""
        raise DataError(f"{settings.dataset}{chosen}: the search side holds only {kind} beats "
                        f"({int(np.count_nonzero(data.split == 'search')):,}); a classifier of normal vs abnormal "
                        f"needs both: add records or files with {'normal' if classes[0] else 'abnormal'} beats")
    if settings.max_beats:  # a very small subsample cannot make the folds (that failed after the study was made)
        search = search_data(data, settings)
        kept = len(np.unique(search.groups))
        try:
            folds = list(grouped_splits(patient_kfold(settings.folds, seed=settings.seed), search.X, search.y,
                                        search.groups))
        except ValueError as exc:
            raise DataError(f"--max-beats {settings.max_beats} keeps {len(search.y)} beat(s) of {kept} patient(s) on "
                            f"the search side, too few for {settings.folds} patient-grouped folds ({exc}): raise "
                            f"--max-beats (or lower --folds)") from None
        for k, (train, _) in enumerate(folds):  # every trial failed on such a fold, ten in a row, after the study
            # was made; and the fix, another --max-beats, was then refused as another setting of that study
            if len(np.unique(search.y[train])) < 2:
                raise DataError(f"--max-beats {settings.max_beats} keeps {len(search.y)} beat(s) of {kept} patient(s) "
                                f"({int(search.y.sum())} abnormal) on the search side: fold {k + 1} of "
                                f"{settings.folds} would train on {'abnormal' if search.y[train][0] else 'normal'} "
                                f"beats only; raise --max-beats (or lower --folds)")
    return data


def space_for_data(space: SearchSpace, data: BeatDataset, print_fn: Callable[[str], None] = print) -> SearchSpace:
    """The space trials draw from on ``data``: with ``rr_features`` fixed to false (and a note saying so) when
    the dataset has no RR intervals, so no model needs context that ``predict`` cannot give it either;
    :class:`SpaceError` if the space fixes ``rr_features`` to true."""
    if data.rr_available:
        return space
    narrowed = space.without_rr_features(f"dataset {data.name} has no RR intervals")
    spec = space.params["rr_features"]
    if isinstance(spec, dict) and True in spec["choices"]:
        print_fn(f"note: dataset {data.name} has no RR intervals: rr_features is fixed to false for this search "
                 f"(the space also allowed true)")
    return narrowed


def search_data(data: BeatDataset, settings: StudySettings) -> BeatDataset:
    """The search side (never a test patient), subsampled to ``max_beats`` if asked."""
    part = data.search_part()
    if settings.max_beats:
        part = part.subset(subsample_beats(part.y, part.groups, settings.max_beats, seed=settings.seed))
    return part


def _requeue_interrupted(study: optuna.Study) -> int:
    """Enqueue once more the params of trials stopped by Ctrl-C whose process could not enqueue them itself
    (``requeued``), so the resumed study redoes them."""
    done = set(study.user_attrs.get("requeued", []))
    todo = [t for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
            if t.user_attrs.get("interrupted") and t.number not in done and not t.user_attrs.get("requeued")]
    for t in todo:
        study.enqueue_trial(t.params, user_attrs={"retry_of": t.number}, skip_if_exists=False)
    if todo:
        study.set_user_attr("requeued", sorted(done | {t.number for t in todo}))
    return len(todo)


def n_finished(study: optuna.Study) -> int:
    """Trials of the study that ended COMPLETE or PRUNED (what ``--trials N`` counts)."""
    return len(study.get_trials(deepcopy=False, states=FINISHED))


def run_trials(
    study: optuna.Study,
    settings: StudySettings,
    *,
    n_trials: int,
    data: BeatDataset,
    space: SearchSpace,
    tracker: Tracker | None,
    timeout: float | None = None,
    gates: Sequence[Gate] = (),
    progress: bool = True,
    verbose: int = 0,
    extra_callbacks: Sequence[Callable] = (),
    poll: float = 5.0,
    max_failures_in_a_row: int | None = MAX_FAILURES_IN_A_ROW,
    trial_print_fn: Callable[[str], None] | None = None,
) -> bool:
    """Run trials until the study holds ``n_trials`` finished (complete or pruned) trials; failed trials
    do not count and the study goes on, unless ``max_failures_in_a_row`` of this process's trials fail one
    after another (:class:`TrialsKeepFailingError`; None: never stop). Returns False if interrupted with
    Ctrl-C or SIGTERM.

    ``progress`` shows a bar (stderr) with a line per finished trial and the run's notes (waiting for another
    worker's trials, interrupted) above it, on stdout; with ``progress=False`` nothing is printed: the lines go to
    the ``search`` logger (trial lines at INFO, notes at WARNING), or to ``trial_print_fn`` when given."""
    from tqdm.auto import tqdm

    parent = tracker.study_run(study, settings.to_dict()) if tracker is not None else None
    _requeue_interrupted(study)
    search = search_data(data, settings)
    cv = patient_kfold(settings.folds, seed=settings.seed)
    bar = tqdm(total=n_trials, initial=min(n_finished(study), n_trials), desc=f"study {study.study_name}",
               unit="trial", disable=not progress, file=sys.stderr, dynamic_ncols=True)
    objective = CVObjective(search, space, cv, metric=settings.metric, seed=settings.seed, tracker=tracker,
                            parent_run_id=parent, gates=gates, objectives=settings.objectives,
                            progress=bar if progress else None, verbose=verbose)
    say, note = _trial_writers(bar, progress, trial_print_fn)

    failures: list[str] = []  # reasons of this process's latest trials, while they keep failing
    stopping: list[tuple[int, bool]] = []  # (trial, requeued): failed by the setup (a bench-server gone), which
    # stops the run at once

    def on_trial_end(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if tracker is not None:
            tracker.end_trial(trial)
        bar.n = min(n_finished(study), n_trials)
        state = trial.state.name.lower()
        if trial.state == TrialState.FAIL and not trial.user_attrs.get("interrupted"):
            failures.append(str(trial.user_attrs.get("fail_reason") or "?"))
            if trial.user_attrs.get("stops_study"):
                stopping.append((trial.number, bool(trial.user_attrs.get("requeued"))))
        else:
            failures.clear()
        if trial.state == TrialState.FAIL:
            say(f"trial {trial.number} failed: {trial.user_attrs.get('fail_reason', '?')}")
        elif trial.state == TrialState.PRUNED:
            say(f"trial {trial.number} pruned: {trial.user_attrs.get('prune_reason', '')}")
        else:
            names = trial.user_attrs.get("objective_names") or settings.objectives
            say(f"trial {trial.number} {state}: {describe_values(settings.metric, trial.values, names)}")
        bar.refresh()

    interrupted = False
    if not interrupt.active():  # inside the search command's handler, a request made while the data loaded stays
        interrupt.clear()
    previous_handler = interrupt.install()

    def failing() -> bool:
        return bool(stopping) or (max_failures_in_a_row is not None and len(failures) >= max_failures_in_a_row)

    try:
        interrupt.check()  # a SIGTERM swallowed in a finaliser while the data loaded: no trial is started
        with _storage_failures_said(study):
            _optimize_until(study, objective, n_trials, timeout, [on_trial_end, *extra_callbacks], poll, failing,
                            say=note)
        interrupt.check()  # one swallowed after the loop's last check: not the final model, then exit 0
    except KeyboardInterrupt:
        interrupted = True
        stopped = ", ".join(map(str, objective.interrupted))  # none when it was waiting for other workers
        note((f"interrupted: trial {stopped} is marked failed and will be redone; " if stopped
                   else "interrupted while no trial of this process was running; ")
                  + "run the same command again to resume the study")
    finally:
        interrupt.restore(previous_handler)
    bar.close()
    if tracker is not None:
        # trials of dead workers (failed by the heartbeat) and runs missed while MLflow was down
        lost = tracker.lost
        counts = tracker._safe("sync", tracker.sync, study)
        if counts and (counts["created"] or counts["updated"]):
            log.warning("MLflow back-fill: %d trial runs created and %d completed (runs the tracking store missed, "
                        "or trials of stopped workers)", counts["created"], counts["updated"])
        if tracker.lost > lost:  # the trials whose back-fill failed were counted as done
            log.warning("MLflow back-fill incomplete (%d call(s) failed): the trials it could not complete are left to "
                        "`ecg-automl sync`", tracker.lost - lost)
    if stopping:
        number, requeued = stopping[-1]
        raise TrialsKeepFailingError(
            f"stopped at trial {number}: {failures[-1].rstrip('.')}. Not the config's fault"
            + (": it is queued again, and" if requeued else " (it could not be queued again);")
            + f" every trial is kept in study {study.study_name!r}: fix the cause and run the same command again to "
              f"resume")
    if failing():
        raise TrialsKeepFailingError(
            f"stopped after {len(failures)} failed trials in a row (the last: {failures[-1]}); that points at the "
            f"setup rather than at the configs tried. Every trial is kept in study {study.study_name!r}: fix the "
            f"cause and run the same command again to resume")
    return not interrupted


def _trial_writers(bar, progress: bool, print_fn: Callable[[str], None] | None
                   ) -> tuple[Callable[[str], None], Callable[[str], None]]:
    """Where a run's per-trial lines and its notes go: ``print_fn`` when given, above the bar when it is shown
    (tqdm writes them to stdout), else the ``search`` logger (lines at INFO, notes at WARNING)."""
    if print_fn is not None:
        return print_fn, print_fn
    if progress:
        return bar.write, bar.write
    return (lambda s: log.info("%s", s)), (lambda s: log.warning("%s", s))


def _optimize_until(study: optuna.Study, objective, n_trials: int, timeout: float | None,
                    callbacks: list, poll: float, stop: Callable[[], bool] = lambda: False,
                    say: Callable[[str], None] = log.warning) -> None:
    """Run one trial at a time until the study holds ``n_trials`` finished trials, across all workers.

    A worker starts a trial only while finished + running trials (of every worker) stay below the
    target, so N workers end with ``n_trials`` (more only when two check at the same instant: the count and the
    new trial are not one transaction). When the rest are running elsewhere it waits:
    if their worker dies, the heartbeat fails the trial, the retry callback re-queues it, and a waiting
    worker runs it. (Optuna's MaxTrialsCallback alone would overshoot by up to N-1 trials.) ``stop()``
    true ends it before the next trial; ``say`` tells the user which trials it is waiting for, and for how long.
    """
    import time

    start = time.monotonic()
    heartbeat = optuna.storages._heartbeat.is_heartbeat_enabled(study._storage)
    announced: set[int] = set()
    while True:
        interrupt.check()
        if stop() or (timeout is not None and time.monotonic() - start >= timeout):
            return
        if heartbeat:  # each running trial judged by its own worker's heartbeat interval
            fail_stale_trials(study)
        trials = study.get_trials(deepcopy=False)
        finished = sum(t.state in FINISHED for t in trials)
        running = sum(t.state == TrialState.RUNNING for t in trials)
        waiting = sum(t.state == TrialState.WAITING for t in trials)
        if finished >= n_trials:
            return
        if finished + running >= n_trials and not waiting:
            if not heartbeat:
                return  # without a heartbeat a dead worker's trial would be waited for forever
            others = {t.number for t in trials if t.state == TrialState.RUNNING}
            if others - announced:  # a killed run's trial looks like another worker's: say what happens next
                rdb = getattr(study._storage, "_backend", study._storage)  # under Optuna's cache
                grace = getattr(rdb, "grace_period", None) or 2 * study._storage.get_heartbeat_interval()
                say(f"waiting for trial(s) {', '.join(map(str, sorted(others)))}, running in another process; if that "
                    f"process is gone (killed), the trial is failed after {grace:g} s without a heartbeat and redone")
                announced |= others
            time.sleep(poll)
            continue
        taken: list[int] = []  # this process's trial, failed by another worker while it ran
        try:
            # a Ctrl-C from the objective's return until the first callback (Optuna storing the result) waits for
            # the check at the top of the loop: the finished trial is stored whole
            study.optimize(_noting_taken(objective, taken), n_trials=1, gc_after_trial=True, catch=(Exception,),
                           callbacks=[lambda study, trial: interrupt.undefer(), *callbacks])
        except Exception:
            if not taken:
                raise
            say(f"trial {taken[0]} was failed by another worker while it ran here (its heartbeat was judged stale: "
                f"this process paused, or a worker judged it by a shorter interval); its result is dropped and "
                f"the trial is redone as a retry")
        finally:  # Optuna refused the result (no callback ran): the held request counts from here
            interrupt.undefer()


@contextlib.contextmanager
def _storage_failures_said(study: optuna.Study):
    """A study storage that fails in use (a full disk, its file deleted or made read-only, a lost server) was a
    100-200 line traceback ending in Optuna's "AssertionError: Should not reach", beside one of the heartbeat
    thread's: one :class:`StorageError` instead, saying what the database said and that a resume goes on."""
    import threading

    rdb = getattr(study._storage, "_backend", study._storage)
    url = redact_url(str(getattr(rdb, "url", "") or "the study storage"))
    hook = threading.excepthook

    def quiet_heartbeat(args) -> None:  # its failure is the one said below
        if storage_write_problem(args.exc_value) is None:
            hook(args)

    threading.excepthook = quiet_heartbeat
    try:
        yield
    except Exception as exc:
        said = storage_write_problem(exc)
        if said is None:
            raise
        raise StorageError(f"the study storage {url} failed in use ({said}): the trials it holds are kept. Fix it "
                           f"(free space, a writable file, the server back) and run the same command again: the "
                           f"study resumes, and the trial that was running is redone") from None
    finally:
        threading.excepthook = hook


def _noting_taken(objective, taken: list[int]):
    """``objective``, noting in ``taken`` the number of its trial if another worker failed that trial while it ran:
    Optuna then refuses the result ("Cannot tell a FAIL trial") with an error out of ``study.optimize``."""
    def run(trial: optuna.Trial):
        value = None
        try:
            value = objective(trial)
            interrupt.defer()  # undone by the first callback, after Optuna has stored the value
            return value
        except KeyboardInterrupt:
            if value is None:  # in the trial: it marked itself interrupted
                raise
            # after it finished, before the write was held: Optuna stored the trial FAIL, without the mark that
            # redoes it, and its value was lost. It is kept; the flag stops the loop at its next check
            interrupt.defer()
            return value
        except Exception:  # pruned, or failed (Optuna stores it as FAIL): that write too
            interrupt.defer()
            raise
        finally:
            with contextlib.suppress(Exception):  # the storage out of reach: Optuna's own error says so next
                if trial.storage.get_trial(trial._trial_id).state == TrialState.FAIL:
                    taken.append(trial.number)
    return run


def state_counts(trials: Sequence[optuna.trial.FrozenTrial]) -> dict[str, int]:
    """``{"complete": 2, "pruned": 1}``: how many trials are in each state, by state name."""
    states: dict[str, int] = {}
    for t in trials:
        states[t.state.name.lower()] = states.get(t.state.name.lower(), 0) + 1
    return dict(sorted(states.items()))


def trial_counts(trials: Sequence[optuna.trial.FrozenTrial]) -> str:
    """``2 complete, 1 pruned``: how many trials are in each state (the closing line of a search, either engine)."""
    return ", ".join(f"{n} {state}" for state, n in state_counts(trials).items())


def why_no_model(study: optuna.Study) -> str | None:
    """Why a study whose trials all ended holds no completed one (every trial over the latency budget, say), for
    a search that would otherwise end "no completed trial" with exit 0; None when it has one, or none ended."""
    trials = study.get_trials(deepcopy=False, states=FINISHED)
    if not trials or any(t.state == TrialState.COMPLETE for t in trials):
        return None
    budget = StudySettings.from_dict(study.user_attrs["settings"]).latency_budget_ms \
        if "settings" in study.user_attrs else None
    over = [t for t in trials if budget is not None and "latency_ms" in t.user_attrs
            and float(t.user_attrs["latency_ms"]) > budget]
    if budget is not None and len(over) == len(trials):
        fastest = min(float(t.user_attrs["latency_ms"]) for t in over)
        return (f"every trial ({len(trials)}) was over the latency budget of {budget:g} ms (the fastest: "
                f"{fastest:.3f} ms), so there is no model to test or export. The budget is one of the study's "
                f"settings: start a new --study with a higher --latency-budget-ms, or a space of smaller models "
                f"(--space edge)")
    reasons = sorted({str(t.user_attrs.get("prune_reason") or "pruned") for t in trials})
    return (f"none of the study's {len(trials)} finished trial(s) completed, so there is no model to test or export "
            f"(pruned: {'; '.join(reasons[:3])}{'; ...' if len(reasons) > 3 else ''})")


def check_latency_basis(study: optuna.Study, gates: Sequence[Gate]) -> None:
    """Refuse a worker or resume whose Raspberry Pi latency estimates would not be comparable with the study's:
    they are this host's timings through a host->Pi fit, and another CPU, or another fit
    (``$ECG_AUTOML_PI_CALIBRATION``), put a faster model above a slower one on the front and past a budget the
    slower one met, without a word. The first process to look records the basis (CPU and fit); a study whose
    latency comes from a bench-server (``--latency-target``) has one device, and no basis to check."""
    if not any(getattr(g, "target", "") is None for g in gates):  # no host-estimated LatencyGate
        return
    from ecg_automl.tflite.pi_estimate import CALIBRATION_ENV, active_calibration

    cal = active_calibration()
    now = json.loads(json.dumps({"timed_on": cal["this_host_cpu"], "fit_measured_on": cal["host_cpu"],
                                 "fit": cal["fit"]}))  # as the study stores it
    stored = study.user_attrs.get("latency_basis")
    if stored is None:
        study.set_user_attr("latency_basis", now)
        return
    if stored == now:
        return

    def said(basis: dict[str, Any]) -> str:
        return f"timed on {basis.get('timed_on')!r} through the fit measured on {basis.get('fit_measured_on')!r}"

    other_fit = stored.get("fit") != now["fit"]
    raise StudyMismatchError(
        f"study {study.study_name!r} estimates Raspberry Pi latency from host timings {said(stored)}; here they would "
        f"be {said(now)}{' (another fit: ' + CALIBRATION_ENV + ' differs)' if other_fit else ''}. Hosts differ in "
        f"speed model by model (0.64-1.6x, docs/PI_LATENCY.md), so these trials' latencies would not be comparable "
        f"with the study's: run it where the study was made, with the same {CALIBRATION_ENV}, or make a study that "
        f"measures every trial on one Pi with --latency-target (ecg-automl bench-server)")


def require_test_part(data: BeatDataset, settings: StudySettings) -> None:
    """Refuse, before any trial, a search whose final test would find no held-out patient (it failed after
    the whole search with a traceback), or held-out beats of one class only (the whole search ran, then its
    test printed F1 0 and ROC-AUC nan without a word)."""
    test = data.split == "test"
    if test.any():
        classes = np.unique(data.y[test])
        if len(classes) > 1:
            return
        kind, lacking = ("abnormal", "normal") if classes[0] else ("normal", "abnormal")
        chosen = f" (--records {','.join(settings.records)})" if settings.records else ""
        raise DataError(f"{data.name}{chosen}: the held-out test part holds only {kind} beats "
                        f"({int(np.count_nonzero(test)):,} beats of {len(np.unique(data.groups[test]))} patient(s)), so "
                        f"the final test's F1 and ROC-AUC would be undefined; add test records with {lacking} "
                        f"beats (`ecg-automl data info {data.name}` lists which are which), or pass --no-final to "
                        f"search without the final test")
    where = (" (its test part is the CSV files whose name contains 'test', e.g. mitbih_test.csv)"
             if data.name == "heartbeat-csv" else
             f" (--records {','.join(settings.records)} are all search records)" if settings.records else "")
    raise DataError(f"{data.name}: no held-out test patient in the data{where}, so the final test after the search "
                    f"could not run; add them, or pass --no-final to search without the final test")


def run_search(
    study_name: str,
    settings: StudySettings,
    *,
    n_trials: int,
    storage: str | None = None,
    tracking: TrackingConfig | None = None,
    timeout: float | None = None,
    pruner: str | None = None,
    final: bool = True,
    out_dir: str | Path = "runs",
    progress: bool = True,
    verbose: int = 0,
    gates: Sequence[Gate] = (),
    print_fn: Callable[[str], None] = print,
    heartbeat: float | None = 30,
    max_failures_in_a_row: int | None = MAX_FAILURES_IN_A_ROW,
    trial_print_fn: Callable[[str], None] | None = None,
) -> SearchResult:
    """Launch or resume ``study_name`` and, when it holds ``n_trials`` finished trials, run the final test.

    ``storage`` None is :data:`DEFAULT_STORAGE`, ``sqlite:///runs/optuna.db`` under the working directory; the
    final model is saved under ``out_dir/<study_name>/``; ``tracking`` None logs nothing to MLflow.

    Bad input is rejected before anything is written: the tracking server is reached, the space and the
    dataset are loaded, the storage URL is opened, and only then are the MLflow experiment and the study
    created (a rejected command leaves no study behind that a corrected command would then refuse as
    "other settings"). Trials that keep failing stop the run (:func:`run_trials`).

    ``progress`` shows the trials' and the final model's progress bars and prints a line per finished trial;
    with ``progress=False`` the trial lines go to the ``search`` logger, or to ``trial_print_fn`` when given
    (:func:`run_trials`). ``print_fn`` prints the rest (notes, the final report)."""
    # a study was written before n_trials=-1 ended the run with nothing done, or n_trials="2" failed in a comparison
    if isinstance(n_trials, bool) or not isinstance(n_trials, numbers.Integral) or n_trials < 0:
        raise ValueError(f"n_trials must be a whole number of at least 0 (0: create the study only), not {n_trials!r}")
    if not isinstance(settings, (StudySettings, type(None))):  # a dict failed as an AttributeError
        raise TypeError(f"settings must be a StudySettings (or None: join the existing study), not "
                        f"{type(settings).__name__}: StudySettings(**...)")
    if not isinstance(tracking, (TrackingConfig, type(None))):
        raise TypeError(f"tracking must be a TrackingConfig (or None: no MLflow), not {type(tracking).__name__}: "
                        f"TrackingConfig.load() or TrackingConfig(tracking_uri=...)")
    tracker = None
    if tracking is not None:
        tracker = Tracker(tracking)
        tracker.ping()  # an unreachable tracking server is an error before anything else
    check_storage(storage)  # so is a bad storage URL (the data loading below can take minutes)
    if settings is not None:  # a new or resumed study: check the input first
        space = SearchSpace.from_yaml(settings.space_yaml, f"study {study_name}")
        refuse_other_settings(study_name, storage, settings, engine="optuna", tracker=tracker)  # before the data
        data = load_study_data(settings, space)
        space = space_for_data(space, data, print_fn)
        if final and len(settings.objectives) == 1:
            require_test_part(data, settings)
        own_gates = latency_gates(settings, data)  # an unreachable bench-server or a bad calibration file, too
        rdb = make_storage(storage, heartbeat=heartbeat)
        if tracker is not None:
            tracker.check()
        study, settings = open_study(study_name, rdb, settings, pruner, heartbeat=heartbeat, engine="optuna")
        check_study_data(study, data)
        check_latency_basis(study, own_gates)
    else:  # a worker: everything comes from the existing study
        study, settings = open_study(study_name, storage, None, pruner, heartbeat=heartbeat, engine="optuna")
        space = SearchSpace.from_yaml(settings.space_yaml, f"study {study_name}")
        data = load_study_data(settings, space)
        check_study_data(study, data)
        space = space_for_data(space, data, print_fn)
        own_gates = latency_gates(settings, data)
        check_latency_basis(study, own_gates)
        if tracker is not None:  # its runs go under the study's run, not a new one elsewhere; checked before
            tracker.ping()  # check(), which creates the experiment (and a SQLite store) a refused worker must
            tracker.require_study_run(study)  # not leave behind
            tracker.check()
    clear_dead_final_at_start(study, final, print_fn)
    _note_one_lead_gate(study, own_gates, print_fn)
    gates = [*own_gates, *gates]
    before = len(study.get_trials(deepcopy=False))  # a run that stops before adding a trial changed nothing
    try:
        completed = run_trials(study, settings, n_trials=n_trials, data=data, space=space, tracker=tracker,
                               timeout=timeout, gates=gates, progress=progress, verbose=verbose,
                               max_failures_in_a_row=max_failures_in_a_row, trial_print_fn=trial_print_fn)
        if not completed:
            _end_stopped_study_run(study, tracker, "KILLED", trials_before=before)
        report = None
        if n_trials == 0 and not study.get_trials(deepcopy=False, states=FINISHED):
            from .storage import storage_option

            print_fn(f"study {study_name!r} is ready and holds no trial (--trials 0): workers join it with "
                     f"`ecg-automl worker --study {study_name}{storage_option(storage, always=True)} --trials N"
                     f"{_tracking_options(tracker)}`")
        elif completed and final and len(settings.objectives) == 1:
            report = run_final(study, settings, data, tracker=tracker, out_dir=out_dir, print_fn=print_fn,
                               progress=progress)
    except BaseException as exc:  # Ctrl-C/SIGTERM in the final training, trials that keep failing
        _end_stopped_study_run(study, tracker, "FAILED" if isinstance(exc, Exception) else "KILLED",
                               trials_before=before)
        raise
    if len(settings.objectives) > 1:
        report_pareto(study, tracker, print_fn, storage=storage)
    if tracker is not None and len(settings.objectives) == 1:
        log_study_figures(study, tracker)
    if tracker is not None and completed and n_finished(study) >= n_trials:
        parent = study.user_attrs.get("mlflow_parent_run_id")
        if parent and final_in_progress(study)[1] is not True:  # another live search making the final model
            tracker.end_study(parent)  # logs to the study run, which stays RUNNING until that one ends it
    elif completed:  # --timeout ended this process's share before the study's trial count
        _end_stopped_study_run(study, tracker, "FINISHED")
    return SearchResult(study, report, tracker.failures if tracker else [], interrupted=not completed,
                        tracking_skipped=tracker.skipped if tracker else 0)


def clear_dead_final_at_start(study: optuna.Study, final: bool,
                              print_fn: Callable[[str], None] = print) -> None:
    """Clear the final-model marker of a search killed on this host while making it, as a search or worker starts
    here (that search cannot be in progress; with ``final`` False nothing else would clear it), saying so; a marker
    whose search may be alive (another process, or another host) is left alone."""
    killed = clear_dead_final(study)
    if killed is None:
        return
    then = ("this search makes it after its trials" if final
            else "run the search command without --no-final to make it")
    print_fn(f"note: an earlier search of study {study.study_name!r} ({killed.get('worker', '?')}) was stopped while "
             f"making trial {killed.get('trial', '?')}'s final model; {then}")


def _end_stopped_study_run(study: optuna.Study, tracker: Tracker | None, status: str,
                           trials_before: int | None = None) -> None:
    """Close the study's MLflow run as ``status`` when this process stops it early, so the UI does not show a
    stopped study as running for good; left RUNNING while another worker runs a trial (the next trial any
    process starts, or a resume, marks it RUNNING again). A run that stopped before it added a trial
    (``trials_before``: the study's count when it began) left the study's trials as they were: the status this
    process reopened the run from stands (a resume whose storage was read-only made a finished study's run FAILED,
    which `sync` left so)."""
    parent = study.user_attrs.get("mlflow_parent_run_id") if tracker is not None else None
    try:
        trials = study.get_trials(deepcopy=False) if parent else []
    except Exception as exc:  # the storage failed (what stopped the run): its own error is said, not this one
        log.warning("the study's MLflow run is left as it is: the study storage cannot be read (%s)", exc)
        return
    if parent and not any(t.state == TrialState.RUNNING for t in trials):
        run = tracker._safe("study run", tracker.client.get_run, parent)
        if run is not None and run.info.status == "FINISHED":  # another worker ended the study while this one
            return  # waited: its FINISHED stands (a KILLED over it was never repaired by sync)
        was = tracker.reopened_from.get(parent)
        if was is not None and trials_before is not None and len(trials) == trials_before:
            status = was
        tracker.end_study(parent, status)


def _note_one_lead_gate(study: optuna.Study, gates: Sequence[Gate], print_fn: Callable[[str], None]) -> None:
    """Say so when a multi-lead study resumed here has trials the gate timed before it timed the data's leads (no
    ``gate_channels``: 1-lead models, smaller and faster): their latency and size do not compare with new trials'."""
    channels = max((getattr(g, "channels", 1) for g in gates), default=1)
    if channels <= 1:
        return
    old = [t.number for t in study.get_trials(deepcopy=False)
           if "latency_ms" in t.user_attrs and "gate_channels" not in t.user_attrs]
    if old:
        print_fn(f"note: trials {', '.join(map(str, old[:10]))}{' ...' if len(old) > 10 else ''} of study "
                 f"{study.study_name!r} do not record the leads the gate timed: ecg-automl before 2026-12-06 timed and "
                 f"sized 1-lead models for every study, so if it made them, their latency and size are not comparable "
                 f"with new trials' ({channels}-lead models): start a new study for one front")


def latency_gates(settings: StudySettings, data: BeatDataset | None = None) -> list[Gate]:
    """The TFLite latency gate when the study has a latency budget or latency/size objectives; it times models
    of ``data``'s channel count (12 leads for PTB-XL: a 1-lead model was timed, 17.7 KB exported against the
    13.7 KB the front said)."""
    if settings.latency_budget_ms is None and settings.objectives == ["quality"]:
        return []
    from ecg_automl.tflite import LatencyGate

    channels = int(data.X.shape[2]) if data is not None else 1
    return [LatencyGate(budget_ms=settings.latency_budget_ms, mode=settings.latency_mode,
                        target=settings.latency_target, members=settings.n_final_members, channels=channels)]


def _final_model_line(study: optuna.Study, number: int, config: dict[str, Any], model: str, n_search: int,
                      n_test: int) -> str:
    """What the final model is about to be, with its epochs: a KerasTuner Hyperband trial's are those of the round
    it won in, perhaps fewer than --epochs, and nothing said so."""
    epochs = int(config.get("epochs", 0))  # a config always has them; a hand-made one may not
    hyperband = (", the epochs of the Hyperband round it won in"
                 if str(study.user_attrs.get("engine", "")).endswith(":hyperband") else "")
    said = f", {epochs} epoch{'s' if epochs != 1 else ''}{hyperband}" if epochs else ""
    return (f"training trial {number}'s final model ({model}{said}; {n_search} search beats), testing on {n_test} "
            f"held-out beats ...")


def run_final(study: optuna.Study, settings: StudySettings, data: BeatDataset, *, tracker: Tracker | None,
              out_dir: str | Path = "runs", print_fn: Callable[[str], None] = print,
              progress: bool = False) -> dict[str, Any] | None:
    """Final test of the best trial (once: a resumed study with the same best trial reuses the report);
    ``progress`` shows a bar over the final model's epochs. While the final model is made the study holds a
    :data:`~search.final_marker.FINAL_IN_PROGRESS` marker (trial, host:pid, when, process start), so that
    ``ecg-automl sync`` does not end the study run this search still logs to."""
    try:
        best = study.best_trial
    except ValueError:
        print_fn("no completed trial: nothing to test")
        return None
    cached = study.user_attrs.get("final")
    if cached and cached.get("trial") == best.number:
        problem = final_model_problem(cached)
        if problem is None:
            print_fn(format_report(cached, f"final test of trial {best.number} (already done)"))
            return cached
        print_fn(f"note: trial {best.number}'s final model, {cached.get('model_path')}, {problem}: making it again")
    marker, alive = final_in_progress(study)
    if marker and alive and marker.get("trial") == best.number:  # the same command run twice at once, say
        print_fn(f"trial {best.number}'s final model is being made by another search of this study, "
                 f"{marker.get('worker')}, since {marker_since(marker)}: this one leaves it to that one (the study gets its report; "
                 f"`ecg-automl export --study {shlex.quote(study.study_name)} --out FILE`, with the search's "
                 f"--storage, once that search has ended)")
        return None
    if marker and alive is None:  # on another host (or container): it cannot be told from here whether it runs
        print_fn(f"note: {marker.get('worker')} began trial {marker.get('trial')}'s final model at "
                 f"{marker_since(marker)}, on another host, where this search cannot tell whether it still runs: "
                 f"this one makes the final model itself (if both finish, the study keeps the later report)")
    config, threshold = best.user_attrs["config"], float(best.user_attrs.get("threshold", 0.5))
    title = f"final test on held-out patients: trial {best.number}, {data.name}"
    n_search, n_test = int((data.split == "search").sum()), int((data.split == "test").sum())
    model = describe_final_model({"final_model": settings.final_model, "members": settings.n_final_members,
                                  "fold_repeats": settings.fold_repeats})
    print_fn(_final_model_line(study, best.number, config, model, n_search, n_test))
    parent = study.user_attrs.get("mlflow_parent_run_id") if tracker is not None else None
    import os
    import time

    from ._process import pid_namespace, start_token

    out_path = Path(out_dir) / study.study_name / f"final-trial{best.number}.keras"
    if out_path.exists() and not (cached and Path(cached.get("model_path") or "") == out_path.resolve()):
        print_fn(f"note: {out_path} holds a final model this study did not save (another study named "
                 f"{study.study_name!r}, in another storage, with this --out-dir?): this search replaces it (that "
                 f"study's export then says so); another --out-dir keeps both")
    study.set_user_attr(FINAL_IN_PROGRESS, {"trial": best.number, "worker": worker_id(), "since": time.time(),
                                            "started": start_token(os.getpid()), "pidns": pid_namespace()})
    try:
        report = final_test(config, threshold, data, seed=settings.seed, members=settings.final_members,
                            final_model=settings.final_model, folds=settings.folds,
                            fold_repeats=settings.fold_repeats, out_path=out_path,
                            tracker=tracker, run_id=parent, title=title, progress=progress,
                            about={"trial": best.number, "config": config})  # in final_test.json, too
        study.set_user_attr("final", _jsonable(report))
        if study.user_attrs.get(FINAL_KILLED):  # an earlier search's final model, never made: this one replaces it
            study.set_user_attr(FINAL_KILLED, None)
    finally:  # Optuna cannot delete a user attr
        study.set_user_attr(FINAL_IN_PROGRESS, None)
    print_fn(format_report(report, title))
    return report


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    return obj


def log_study_figures(study: optuna.Study, tracker: Tracker) -> None:
    """Log the study's optimisation history and hyperparameter importances on its MLflow run (a plot that
    cannot be drawn is a warning: the trials are in the study either way)."""
    from . import plots

    parent = study.user_attrs.get("mlflow_parent_run_id")
    if not parent:
        return
    try:
        figures = plots.study_figures(study, study.user_attrs.get("settings", {}).get("metric", "f1"))
    except Exception as exc:  # e.g. an importance model that cannot be fitted on these trials
        log.warning("study plots not drawn (%s: %s)", type(exc).__name__, exc)
        return
    for name, fig in figures.items():
        tracker.log_figure(parent, fig, name)
        plots.close(fig)


def report_pareto(study: optuna.Study, tracker: Tracker | None, print_fn: Callable[[str], None] = print,
                  storage: str | None = None) -> list:
    """Print the Pareto front, with the export command of one of its trials (the study's ``storage`` and the
    mode its latency and size were measured in), and log it (table + plot) on the study's MLflow run."""
    from .pareto import format_pareto, pareto_table
    from .storage import storage_option

    rows = pareto_table(study)
    settings = study.user_attrs.get("settings", {})
    where = "measured on the bench-server" if settings.get("latency_target") else "Raspberry Pi 4 estimate"
    mode = settings.get("latency_mode", "int8")
    at = storage_option(storage)
    objectives = settings.get("objectives") or []
    parts = [f"quality: validation {settings.get('metric', 'f1')}"]
    if "latency" in objectives:
        parts.append(f"latency: ms per beat, {where}, {mode}")
    if "size" in objectives:  # the gate's file is of an untrained model: a trained one stores its zero biases apart
        parts.append(f"size: KB of the {mode} TFLite file of the untrained model, a few % under a trained export's")
    name = shlex.quote(study.study_name)
    mlflow = _tracking_options(tracker, changed_only=True)
    hint = (f". A member's own model is its last fold's: export it retrained on all search patients with "
            f"`ecg-automl export --study {name}{at}{mlflow} --trial N --retrain --mode {mode} --out trial-N.tflite`"
            ) if rows else ""  # an empty front has no member to export
    print_fn(f"Pareto front of {study.study_name} ({len(rows)} trials):\n{format_pareto(rows)}\n"
             f"({'; '.join(parts)}){hint}")
    if tracker is not None:
        tracker.log_pareto(study.user_attrs.get("mlflow_parent_run_id"), study, rows)  # what `sync` back-fills
    return rows
