"""MLflow tracking: one parent run per study, one nested run per Optuna trial (state included).

Uses ``MlflowClient`` with explicit run ids rather than the fluent API, so trial runs can be written
from callbacks, resumed studies continue their parent run, and a lost tracking server can be
back-filled later from the Optuna study (:meth:`Tracker.sync`).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shlex
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import yaml

from .final_marker import FINAL_KILLED, _final_running_note, clear_dead_final, final_in_progress
from .folders import why_no_folder
from .storage import _first_line, _with_database, redact_url, sqlite_file

log = logging.getLogger("search")

#: Optuna trial state -> MLflow run status (pruned trials end KILLED, failed ones FAILED).
RUN_STATUS = {"COMPLETE": "FINISHED", "PRUNED": "KILLED", "FAIL": "FAILED", "RUNNING": "RUNNING",
              "WAITING": "SCHEDULED"}
DEFAULTS = {"tracking_uri": "sqlite:///runs/mlflow.db", "artifact_location": "runs/mlartifacts",
            "experiment_name": "ecg-automl"}


#: Trial user attribute holding a trial's per-epoch training curves, ``{"fold{k}.{name}": [one value per epoch]}``
#: (Keras' logs: loss, auc, precision, recall and their ``val_`` twins; None where a value was NaN): what the
#: objective logs to MLflow live, kept in the study so that ``sync`` can log the curves a tracking outage lost.
EPOCH_CURVES = "epoch_curves"
#: Trial user attribute, True when some of the trial's per-epoch curve points did not reach MLflow (the store
#: was unreachable for a while during the trial): ``sync`` then logs the points its run lacks, gaps in the middle
#: of a curve too, which it cannot see without asking for every curve's history.
CURVES_LOST = "mlflow_curves_lost"
#: Run tag set by ``sync`` once it has completed the curves of a trial with :data:`CURVES_LOST` (not asked again).
CURVES_CHECKED = "ecg_automl.curves_checked"
#: Trial user attribute, True when some of the trial's per-fold metrics (``fold.*``, one step per fold) did not
#: reach MLflow: ``sync`` then logs the folds its run lacks (it looked only for a run with no ``fold.*`` at all, so
#: a run that held fold 0 kept only fold 0, and sync said nothing was left to do).
FOLDS_LOST = "mlflow_folds_lost"
#: Run tag set by ``sync`` once it has completed the folds of a trial with :data:`FOLDS_LOST`.
FOLDS_CHECKED = "ecg_automl.folds_checked"
#: User attribute of a KerasTuner trial: its run holds its last fold's model (``model/model.keras``), as a driver
#: trial's does; KerasTuner trials recorded before it have none (``ecg-automl export`` retrains those).
MODEL_IN_MLFLOW = "model_in_mlflow"


class TrackingError(RuntimeError):
    """The MLflow tracking store cannot be reached or used."""


#: After a call finds the tracking store unreachable, skip MLflow calls for this many seconds.
OFFLINE_RETRY_S = 30.0


#: MLflow loggers that print a traceback of their own for a store failure the :class:`Tracker` reports in one
#: line (``mlflow.store.db.utils``: 40-odd lines of SQLAlchemy error per failed call to an unwritable SQLite store).
QUIETED_LOGGERS = ("mlflow.store.db.utils",)


@contextmanager
def _quiet_store_errors():
    """Silence :data:`QUIETED_LOGGERS` while the Tracker handles MLflow's failures itself, unless the log level
    is DEBUG (``--log-level DEBUG`` shows their tracebacks)."""
    if logging.getLogger().getEffectiveLevel() <= logging.DEBUG:
        yield
        return
    loggers = [logging.getLogger(name) for name in QUIETED_LOGGERS]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _unreachable(exc: BaseException) -> bool:
    """Whether an MLflow failure means "cannot reach the store" (rather than a rejected request)."""
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return True
    text = str(exc)
    return any(s in text for s in ("Max retries exceeded", "Connection refused", "Failed to establish",
                                   "Read timed out", "Connection aborted", "RemoteDisconnected"))


@dataclass
class TrackingConfig:
    """Where MLflow runs go."""

    tracking_uri: str
    artifact_location: str | None
    experiment_name: str

    @classmethod
    def load(cls, path: str | Path | None = None, *, tracking_uri: str | None = None,
             experiment_name: str | None = None) -> "TrackingConfig":
        """Read ``mlflow.yaml`` (``path``, else ./mlflow.yaml if present, else defaults); flags and
        ``MLFLOW_TRACKING_URI`` override the file."""
        from spaces import SpaceError, load_yaml, yaml_problem

        doc: dict[str, Any] = dict(DEFAULTS)
        p = Path(path) if path else Path("mlflow.yaml")
        if path and not p.exists():
            raise TrackingError(f"{p}: MLflow config file not found")
        if p.exists():
            try:
                text = p.read_text(encoding="utf-8")
                loaded = load_yaml(text) or {}
            except yaml.YAMLError as exc:
                raise TrackingError(f"{p}: not valid YAML: {yaml_problem(exc, text)}") from None
            except SpaceError as exc:  # a key given twice: one of the two was silently ignored
                raise TrackingError(f"{p}: {exc}") from None
            except UnicodeDecodeError as exc:
                raise TrackingError(f"{p}: not a text (UTF-8) file, byte {exc.start}: an MLflow config is YAML") from None
            except OSError as exc:  # a folder, an unreadable file
                raise TrackingError(f"{p}: cannot read the MLflow config file ({exc.strerror or exc})") from None
            doc.update(_checked_config(p, loaded))
        uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or doc["tracking_uri"]
        artifacts = doc.get("artifact_location")
        if str(uri).startswith(("http://", "https://")) and artifacts and "://" not in str(artifacts):
            artifacts = None  # a tracking server stores artifacts itself (--artifacts-destination)
        return cls(_store_uri(str(uri)), artifacts, experiment_name or doc["experiment_name"])


def _health_request(uri: str) -> Any:
    """The GET of a tracking server's ``/health``, with the URI's ``user:password@`` (or MLflow's
    ``MLFLOW_TRACKING_USERNAME`` / ``_PASSWORD``) as basic auth, as MLflow's client sends them: urllib read the
    credentials as part of the host name, and a server behind basic auth was "unreachable" while it answered."""
    import base64
    import urllib.parse
    import urllib.request

    parts = urllib.parse.urlsplit(uri.rstrip("/") + "/health")
    user = urllib.parse.unquote(parts.username) if parts.username else os.environ.get("MLFLOW_TRACKING_USERNAME")
    password = (urllib.parse.unquote(parts.password) if parts.password is not None
                else os.environ.get("MLFLOW_TRACKING_PASSWORD", "") if not parts.username else "")
    host = parts.hostname or ""
    netloc = (f"[{host}]" if ":" in host else host) + (f":{parts.port}" if parts.port else "")
    request = urllib.request.Request(urllib.parse.urlunsplit(parts._replace(netloc=netloc)))
    if user:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    return request


def _checked_config(path: Path, loaded: Any) -> dict[str, Any]:
    """A parsed ``mlflow.yaml``, or TrackingError naming what is wrong: not a mapping, an unknown key, or a
    ``tracking_uri`` / ``experiment_name`` left empty (``tracking_uri:`` alone became a file store in a folder
    named ``None``). A number there is read as its text (``experiment_name: 2026``)."""
    if not isinstance(loaded, dict):
        raise TrackingError(f"{path}: must be a mapping of {', '.join(sorted(DEFAULTS))} to values, not {loaded!r}")
    unknown = set(loaded) - set(DEFAULTS)
    if unknown:
        raise TrackingError(f"{path}: unknown keys {sorted(map(str, unknown))} (allowed: {sorted(DEFAULTS)})")
    out = dict(loaded)
    for key in ("tracking_uri", "experiment_name"):
        if key not in out:
            continue
        value = out[key]
        if isinstance(value, bool) or not isinstance(value, (str, int, float)) or not str(value).strip():
            raise TrackingError(f"{path}: {key} needs a value, not {value!r} (remove the line for the default, "
                                f"{DEFAULTS[key]})")
        out[key] = str(value)
    location = out.get("artifact_location")  # `artifact_location: 5` was reported as an unreachable store
    if location is not None and (not isinstance(location, str) or not location.strip()):
        raise TrackingError(f"{path}: artifact_location must be a folder or URI, not {location!r} (remove the line "
                            f"for the default, {DEFAULTS['artifact_location']})")
    return out


def _store_uri(uri: str) -> str:
    """The tracking URI to open, made absolute (:func:`_absolute_uri`); a plain path to a SQLite file (an existing
    file, or one ending .db/.sqlite) is that file's ``sqlite:///`` URI. TrackingError, before anything is written,
    for a URI that would lose the runs (in-memory SQLite), one SQLite cannot open as meant (two slashes, ``~``),
    and a folder store, which MLflow 3 refuses unless told otherwise."""
    text = uri.strip()
    if text == "databricks":  # MLflow's one tracking URI without "://" (a Databricks workspace)
        return text
    if "://" not in text and not text.startswith("file:"):  # a plain path
        path = Path(text).expanduser()
        if path.is_file() or path.suffix.lower() in (".db", ".sqlite", ".sqlite3"):
            text = _with_database("sqlite:///", path.resolve())  # a % or ? in the name escaped, as SQLAlchemy reads it
        else:
            text = path.resolve().as_uri()
    scheme = _unknown_scheme(text)
    if scheme is not None:  # found only after minutes of data loading, as a "model registry" error
        raise TrackingError(f"tracking URI {redact_url(uri)}: MLflow has no tracking store for the scheme "
                            f"{scheme!r}; give http(s)://HOST:PORT (a tracking server), sqlite:///path.db, postgresql://..., "
                            f"mysql://... or a plain path to a .db file")
    if text.startswith("sqlite:"):
        if not text.startswith("sqlite:///"):
            raise TrackingError(f"tracking URI {uri}: a SQLite store is sqlite:///relative/path.db or "
                                f"sqlite:////absolute/path.db (three or four slashes), e.g. sqlite:///runs/mlflow.db")
        db = str(sqlite_file(text) or "")
        if not db:  # e.g. sqlite:///$DB with DB unset, or :memory:
            raise TrackingError(f"tracking URI {uri} names no database file: SQLite would keep the runs in memory, "
                                f"lost when the command ends. Give a file, e.g. sqlite:///runs/mlflow.db")
        if db.startswith("~"):
            raise TrackingError(f"tracking URI {uri}: SQLite does not expand ~ (it would make a folder named ~ "
                                f"here); write the path out, e.g. sqlite:///{Path(db).expanduser()}")
    if (db_file := sqlite_file(text)) is not None and _is_optuna_storage(db_file.expanduser()):
        raise TrackingError(f"tracking URI {uri} is an Optuna study storage (its tables are Optuna's), not an MLflow "
                            f"store; MLflow would add its own tables to it. Give the MLflow store, e.g. "
                            f"--tracking-uri sqlite:///runs/mlflow.db, and the study storage with --storage")
    if text.startswith("file:") and os.environ.get("MLFLOW_ALLOW_FILE_STORE", "").strip().lower() not in ("true", "1"):
        raise TrackingError(f"tracking URI {uri} is a folder store, which MLflow {_mlflow_version()} refuses (its "
                            f"file backend is in maintenance mode): use a SQLite store, e.g. --tracking-uri "
                            f"sqlite:///runs/mlflow.db (`mlflow migrate-filestore` moves a folder's runs into one), "
                            f"or set MLFLOW_ALLOW_FILE_STORE=true to keep the folder")
    return _absolute_uri(text)


def _unknown_scheme(uri: str) -> str | None:
    """The URI's scheme when MLflow has no tracking store for it (``htp://``, a typo), else None; schemes of
    installed MLflow plugins count as known. None too where MLflow's registry cannot be read."""
    try:
        from mlflow.tracking._tracking_service.utils import _tracking_store_registry
        from mlflow.utils.uri import get_uri_scheme

        known = set(_tracking_store_registry._registry)
        scheme = get_uri_scheme(uri)
    except Exception:  # a private API that moved: MLflow reports the scheme itself, later
        return None
    return None if scheme in known else scheme


def _is_optuna_storage(path: Path) -> bool:
    """Whether the SQLite file ``path`` holds Optuna's tables and not MLflow's (read-only; False if it is no
    readable SQLite file or not there)."""
    import sqlite3

    if not path.is_file():
        return False
    try:
        con = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            tables = {row[0] for row in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        finally:
            con.close()
    except sqlite3.Error:
        return False
    return {"studies", "trials"} <= tables and "experiments" not in tables


def _mlflow_version() -> str:
    from importlib import metadata

    return metadata.version("mlflow")


def local_store(uri: str) -> Path | None:
    """The file (``sqlite:///``) or folder (``file:``) of a local tracking store, else None (a server): what
    opening the store would create when it is not there."""
    from urllib.parse import unquote, urlparse

    if uri.startswith("sqlite:///"):
        return sqlite_file(uri)
    if uri.startswith("file:"):
        return Path(unquote(urlparse(uri).path))
    return None


def _absolute_uri(uri: str) -> str:
    """Make ``sqlite:///relative.db`` absolute so runs land in one place (its folder is created when the
    :attr:`Tracker.client` is first used, once the command's input has been accepted)."""
    db = sqlite_file(uri)
    if db is not None and not db.is_absolute():
        return _with_database(uri, db.resolve())
    if "://" not in uri:  # a plain folder: MLflow's file store
        return Path(uri).resolve().as_uri()
    return uri


def _check_artifact_folder(location: str | None, experiment: str, existing: bool) -> None:
    """Raise :class:`TrackingError` when a local artifact location cannot be a folder this process writes to
    (a file in the way, read-only): every model, plot and report of the study would fail to log, each as a
    warning blaming an unreachable tracking server. Creates the folder; remote locations are not checked."""
    if not location:
        return
    from urllib.parse import unquote, urlparse

    scheme = urlparse(location).scheme
    if scheme == "file":
        path = Path(unquote(urlparse(location).path))
    elif len(scheme) > 1:  # mlflow-artifacts:/, s3://, http://...: the server's or a bucket's business
        return
    else:
        path = Path(location).resolve()
    try:
        path.mkdir(parents=True, exist_ok=True)
        if not os.access(path, os.W_OK | os.X_OK):
            raise PermissionError(13, "Permission denied")
    except OSError as exc:
        why = why_no_folder(path, exc)
        fix = (f"experiment {experiment!r} keeps the artifact location it was created with: use another "
               f"--experiment" if existing else "set artifact_location in mlflow.yaml to a writable folder")
        raise TrackingError(f"MLflow artifact location {path} cannot be written ({why}): {fix}") from None


def _space_name(space_yaml: Any) -> str:
    """The ``name:`` of a study's space (its settings' ``space_yaml``), "" when there is none to read."""
    try:
        doc = yaml.safe_load(space_yaml) if isinstance(space_yaml, str) else None
    except yaml.YAMLError:
        return ""
    return str(doc.get("name") or "") if isinstance(doc, dict) else ""


#: What ``objective.quality`` is for each study metric (:data:`search.metrics.METRICS`).
_QUALITY_MEANING = {
    "f1": "the abnormal class's F1 at the decision threshold chosen on the validation folds (`threshold`), "
          "the mean over the folds",
    "f1@0.5": "the abnormal class's F1 at a fixed threshold of 0.5, the mean over the validation folds",
    "auc": "the abnormal class's ROC-AUC, the mean over the validation folds",
}


def trial_run_note(metric: str | None) -> str:
    """A trial run's description in the MLflow UI: which of its figures is the value the search ranks by. Three F1s
    (``objective.quality``, ``mean.f1`` at 0.5, ``oof_tuned.f1`` pooled) sat side by side with no word of which."""
    quality = _QUALITY_MEANING.get(metric or "", "the study's quality metric, the mean over the validation folds")
    return "\n".join([
        f"One trial of an ecg-automl study (metric `{metric}`), cross-validated on patient-grouped folds: no patient "
        "has beats on both sides of a fold.",
        "",
        f"- `objective.quality`: {quality}. The value the search ranks trials by; `fold.objective` is each fold's "
        "(step = fold).",
        "- `threshold`: the decision threshold chosen on the validation folds (the median of each fold's F1-best "
        "threshold), which the trial's exported model flags beats at (a `--final-model folds` final model chooses "
        "its own).",
        "- `oof_tuned.*`: every validation fold's beats pooled, at `threshold`.",
        "- `fold.*` and `mean.*` other than `fold.objective` and `mean.objective`: each fold at a fixed 0.5 "
        "(`mean.threshold`), and their mean; `beats_per_s` and `*_seconds` time the training.",
        "- `fold{k}.*`: Keras's per-epoch curves of fold k (step = epoch).",
        "- `latency_ms` (Pi 4 estimate or a bench-server's board, ms) and `size_kb`: what a latency gate "
        "(`--latency-budget-ms`) or objective measured; `objective.latency` / `objective.size`: a multi-objective "
        "study's other objectives.",
        "- `pruned.running_mean`: where the pruner stopped the trial, the running mean of its signal (validation "
        "ROC-AUC, F1 at 0.5 for `f1@0.5`) over the folds and epochs it reached: not the objective of a finished "
        "trial.",
        "- `tflite.<mode>.*`: what `ecg-automl export` measured of this trial's `.tflite` file (of the study's final "
        "model, where this trial made it): its size, host "
        "median latency, F1 on held-out test patients' beats (not validation ones) and largest probability "
        "difference from the Keras model.",
    ])


#: A study run's description in the MLflow UI.
STUDY_RUN_NOTE = "\n".join([
    "One ecg-automl study: its settings are the `study.*` params; each trial is a nested run (expand the row).",
    "",
    "- `test.*`: the final test of the study's final model on held-out patients, whom no trial saw, at "
    "`test.threshold` (chosen on validation folds: the best trial's, or with `--final-model folds` the fold "
    "models' own); `test_at_0.5.*` the same at 0.5; "
    "`test.normal.*` / `test.abnormal.*` per class (`final_test.json` and `final_test.txt` hold all of it).",
    "- A multi-objective study (`--objective quality,latency`) has no final test: `pareto_front.json` lists its "
    "trade-offs.",
])


#: Tag of a study run: the SHA-256 (as the study's final report records it) of the final model file whose copy is
#: the run's ``model/final_model.keras``.
FINAL_MODEL_TAG = "final_model.sha256"


def _another_final(held: dict[str, Any], report: dict[str, Any]) -> bool:
    """Whether a study run's logged ``final_test.json`` (``held``) is of another final model than the study's
    ``report``: another trial, or (both recording it) another model file."""
    if held.get("trial") != report.get("trial"):
        return True
    return bool(held.get("model_sha256") and report.get("model_sha256")
                and held["model_sha256"] != report["model_sha256"])


def trial_tags(trial: Any) -> dict[str, str]:
    """MLflow tags that say where a trial ran and what it retries: ``worker`` (host:pid), ``tf_threads`` (the
    TensorFlow threads it trained with: its values depend on them), ``optuna.retry_of`` (the number of the trial
    a dead worker left, or one stopped with Ctrl-C) and, for a KerasTuner trial, ``engine`` and its trial id."""
    tags = {}
    if "keras_tuner.trial_id" in trial.user_attrs:  # as a KerasTuner trial's own run is tagged (one `sync` makes too)
        tags.update({"engine": "keras-tuner", "keras_tuner.trial_id": str(trial.user_attrs["keras_tuner.trial_id"])})
    if "worker" in trial.user_attrs:
        tags["worker"] = str(trial.user_attrs["worker"])
    if "tf_threads" in trial.user_attrs:
        tags["tf_threads"] = str(trial.user_attrs["tf_threads"])
    retry_of = trial.system_attrs.get("failed_trial", trial.user_attrs.get("retry_of"))
    if retry_of is not None:
        tags["optuna.retry_of"] = str(retry_of)
    return tags


def _claimed_by_another(run: Any, number: int, claims: dict[str, list[int]]) -> bool:
    """True when trial ``number`` records ``run`` but so does the trial the run is numbered for: a retry copied the
    id of its dead trial's run. (A run numbered otherwise that no other trial records stays the trial's own: an
    older KerasTuner study's runs are numbered one ahead of its trials.)"""
    tag = run.data.tags.get("optuna.trial_number")
    others = [n for n in claims.get(run.info.run_id, []) if n != number]
    return tag is not None and tag != str(number) and tag in {str(n) for n in others}


@contextmanager
def _folder_lock(folder: Path):
    """An exclusive lock on ``folder`` (``flock`` on its descriptor) while MLflow opens a SQLite store in it: MLflow
    creates and migrates a new store as its client opens it, and processes doing so at once (workers started
    together) failed ("Online migration expected to match one row", "table _alembic_tmp_latest_metrics already
    exists") and could leave the store half-migrated for good. Without ``fcntl`` (Windows) no lock is taken."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # cannot open the folder for reading: MLflow will say what is wrong with it
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


_STORE_RACE_ATTEMPTS = 8


def _store_race(exc: BaseException) -> bool:
    """True for the errors of processes creating one fresh MLflow store at once (workers started together on a new
    SQLite file: 5 rounds in 5 failed one of 4): a migration another process already ran ("Online migration
    expected to match one row", a table or column that "already exists"), a locked database, or the experiment
    created twice."""
    text = str(exc).lower()
    return any(s in text for s in ("online migration expected", "already exists", "duplicate column",
                                   "database is locked"))


class Tracker:
    """Writes studies and trials to MLflow. Failures after start-up do not stop the search: they are
    logged, counted in :attr:`failures`, and the trial's data stays in Optuna for :meth:`sync`."""

    def __init__(self, config: TrackingConfig) -> None:
        # MLflow's HTTP client retries 7 times with exponential back-off (minutes per call) by default;
        # a lost server should cost a trial seconds, not minutes. Users' own settings win.
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
        self.config = config
        self._client = None
        self.failures: list[str] = []
        self.skipped = 0  # calls not made while the store was unreachable
        self._offline_until: float | None = None
        self._experiment_id: str | None = None
        self._then = _GOES_ON  # what a failed call's warning tells the user to do
        self.reopened_from: dict[str, str] = {}  # study run id -> its status before this process reopened it
        self.space_name = ""  # its study space's name (study_run): a tag of its runs, `tags.space = 'mine'` finds them
        self.metric: str | None = None  # its study's quality metric (study_run): its trial runs' description names it

    @property
    def client(self) -> Any:
        """The ``MlflowClient``, made on first use: a local store (SQLite file) is created by MLflow as
        soon as a client opens it, which must not happen before the command's input is accepted."""
        if self._client is None:
            from mlflow.tracking import MlflowClient

            uri = self.config.tracking_uri
            if (db_file := sqlite_file(uri)) is not None:
                folder = db_file.parent
                folder.mkdir(parents=True, exist_ok=True)
                with _folder_lock(folder):  # the client creates and migrates the store: one process at a time
                    self._client = MlflowClient(tracking_uri=uri)
            else:
                self._client = MlflowClient(tracking_uri=uri)
        return self._client

    # -- set-up -----------------------------------------------------------------------------
    def ping(self, *, experiment: bool = True) -> None:
        """Raise :class:`TrackingError` if a tracking server (http/https URI) or a database server (PostgreSQL,
        MySQL) does not answer, or (``experiment``; a server, or a local store that exists) the experiment runs go
        to was deleted; writes nothing. MLflow itself retried an unreachable database for almost two minutes, and a
        worker or ``sync`` then said the study's run was not in the store."""
        uri = self.config.tracking_uri
        if uri.startswith(("http://", "https://")):
            import urllib.request

            try:
                urllib.request.urlopen(_health_request(uri), timeout=10).read()
            except Exception as exc:
                raise TrackingError(f"cannot reach the MLflow tracking store at {redact_url(uri)}: {exc}") from None
        elif uri.split("://")[0].split("+")[0] in ("postgresql", "postgres", "mysql", "mssql"):
            from .storage import connect_error

            problem = connect_error(uri)
            if problem:
                raise TrackingError(f"cannot reach the MLflow tracking store at {redact_url(uri)}: {problem}")
            return  # (opening a database store could create MLflow's tables: :meth:`check` looks at its experiment)
        store = local_store(uri)
        if experiment and (store is None or store.exists()):  # a tracking server, or a local store already there: nothing is created
            try:
                existing = self.client.get_experiment_by_name(self.config.experiment_name)
            except Exception:  # the store's own problems are check()'s to report, with its context
                return
            self._refuse_deleted(existing)

    def _refuse_deleted(self, existing: Any) -> None:
        """TrackingError when the experiment is in MLflow's trash: MLflow refuses runs in it (a search died with a
        traceback, and `sync` "back-filled" nothing, exit 0)."""
        if existing is not None and existing.lifecycle_stage == "deleted":
            raise TrackingError(
                f"MLflow experiment {self.config.experiment_name!r} (id {existing.experiment_id}) in "
                f"{redact_url(self.config.tracking_uri)} was deleted: restore it from MLflow's trash (`mlflow "
                f"experiments restore --experiment-id {existing.experiment_id}` with MLFLOW_TRACKING_URI set to "
                f"the store), or log a new study to another --experiment, or run with --no-mlflow")

    def check(self) -> str:
        """Reach the store and return the experiment id (created if missing); raise
        :class:`TrackingError` with the URI if the store cannot be used, or its experiment was deleted."""
        import random

        self.ping(experiment=False)  # looked up once, below
        for attempt in range(_STORE_RACE_ATTEMPTS):
            try:
                existing = self.client.get_experiment_by_name(self.config.experiment_name)
                self._refuse_deleted(existing)
                _check_artifact_folder(existing.artifact_location if existing is not None
                                       else self.config.artifact_location, self.config.experiment_name,
                                       existing is not None)
                return self.experiment_id
            except TrackingError:
                raise
            except Exception as exc:
                if _store_race(exc) and attempt + 1 < _STORE_RACE_ATTEMPTS:
                    # another process is creating the same fresh store's tables (or experiment) right now: once
                    # it is done, a new client finds them
                    self._client, self._experiment_id = None, None
                    time.sleep(0.2 + random.random() * 0.5 * (attempt + 1))
                    continue
                raise TrackingError(f"cannot reach the MLflow tracking store at "
                                    f"{redact_url(self.config.tracking_uri)}: "
                                    f"{type(exc).__name__}: {_first_line(exc)}") from None
        raise AssertionError("unreachable")

    @property
    def experiment_id(self) -> str:
        """The experiment's id, the experiment created (artifacts under its artifact location) on first use."""
        if self._experiment_id is None:
            exp = self.client.get_experiment_by_name(self.config.experiment_name)
            if exp is None:
                art = self.config.artifact_location
                if art and "://" not in art:
                    art = Path(art).resolve().as_uri()
                self._experiment_id = self.client.create_experiment(
                    self.config.experiment_name, artifact_location=art,
                    # open the UI on the model-training runs table, not the GenAI overview
                    tags={"mlflow.experimentKind": "custom_model_development",
                          "mlflow.note.content": "ecg-automl studies: one parent run per Optuna study, "
                                                 "one nested run per trial."})
            else:
                self._experiment_id = exp.experiment_id
        return self._experiment_id

    @property
    def lost(self) -> int:
        """How many MLflow calls have not reached the store so far (failed, or skipped while it was unreachable)."""
        return len(self.failures) + self.skipped

    def _safe(self, what: str, fn, *args, **kwargs):
        """Call MLflow; a failure is a warning, never an error (the trial's data stays in Optuna).

        Once the store looks unreachable (connection refused, timeouts), further calls are skipped for
        :data:`OFFLINE_RETRY_S` seconds instead of each waiting for its own retries: a lost server costs
        a trial seconds, not minutes of failing calls (per epoch, per fold, per figure)."""
        if self._offline_until is not None and time.monotonic() < self._offline_until:
            self.skipped += 1
            return None
        try:
            with _quiet_store_errors():
                result = fn(*args, **kwargs)
        except Exception as exc:  # a lost server must not lose the trial (it stays in Optuna)
            msg = f"MLflow {what} failed ({type(exc).__name__}: {_first_line(exc, 200) if str(exc).strip() else ''})"
            self.failures.append(msg)
            if _unreachable(exc):
                self._offline_until = time.monotonic() + OFFLINE_RETRY_S
                log.warning("%s; the tracking store looks unreachable: MLflow calls are skipped for %.0f s "
                            "at a time while it is; %s", msg, OFFLINE_RETRY_S, self._then)
            else:
                log.warning("%s; %s", msg, self._then)
            return None
        self._offline_until = None
        return result

    # -- study ------------------------------------------------------------------------------
    def study_run(self, study: Any, settings: dict[str, Any], *, run_name: str | None = None,
                  tags: dict[str, str] | None = None) -> str:
        """The study's parent run id: reused when the study resumes (so its trial runs stay under one parent),
        created (and remembered) otherwise, named ``run_name`` (default: the study's name). A study whose bench-server
        moved (``latency_target_moves``) says so in a tag: the run's ``study.latency_target`` param cannot change.
        Where the remembered run is not in this store (a resume logged to another store in between, which then
        remembered its own), this store's study run of the study is found by the study's own key (:data:`STUDY_KEY`,
        not its name, which another study may bear) and reused: a new one beside it split the study over two runs.
        The run is tagged with the study's engine and the versions that decide results."""
        import uuid

        self.space_name = _space_name(settings.get("space_yaml"))
        self.metric = settings.get("metric")
        run_id = study.user_attrs.get("mlflow_parent_run_id")
        moves = study.user_attrs.get("latency_target_moves")
        key = study.user_attrs.get(STUDY_KEY)
        if run_id:
            try:
                return self._reopen_study_run(run_id, moves)
            except Exception:
                found = self._find_study_run(key) if key else None
                if found is not None:
                    log.warning("the study's MLflow run %s is not in %s, where its run %s is: logging there (a run of "
                                "the study in between went to another tracking store)", run_id,
                                redact_url(self.config.tracking_uri), found)
                    study.set_user_attr("mlflow_parent_run_id", found)
                    return self._reopen_study_run(found, moves)
                log.warning("the study's MLflow run %s is not in %s (its runs were logged to another tracking store): "
                            "starting a study run here, and back-filling its trials into it", run_id,
                            redact_url(self.config.tracking_uri))
        if not key:
            key = uuid.uuid4().hex
            study.set_user_attr(STUDY_KEY, key)
        engine = str(study.user_attrs.get("engine", "optuna")).split(":")[0]  # as its trial runs say it
        run = self.client.create_run(self.experiment_id, run_name=run_name or study.study_name,
                                     tags={"optuna.study_name": study.study_name, "ecg_automl.kind": "study",
                                           "engine": engine, STUDY_KEY_TAG: key, **version_tags(),
                                           **({"space": self.space_name} if self.space_name else {}),
                                           **({"latency_target_moves": json.dumps(moves)} if moves else {}),
                                           "mlflow.note.content": STUDY_RUN_NOTE, **(tags or {})})
        run_id = run.info.run_id
        study.set_user_attr("mlflow_parent_run_id", run_id)
        self.log_params(run_id, {f"study.{k}": v for k, v in settings.items() if k != "space_yaml"})
        if "space_yaml" in settings:
            self.log_text(run_id, settings["space_yaml"], "space.yaml")
        return run_id

    def _reopen_study_run(self, run_id: str, moves: Any) -> str:
        """Mark the study's run RUNNING again (and note a moved bench-server); raises when it is not in the store."""
        with _quiet_store_errors():
            run = self.client.get_run(run_id)
            if run.info.status != "RUNNING":
                self.client.update_run(run_id, status="RUNNING")
                self.reopened_from.setdefault(run_id, run.info.status)
            if moves:
                self.client.set_tag(run_id, "latency_target_moves", json.dumps(moves))
        return run_id

    def _find_study_run(self, key: str) -> str | None:
        """The id of the first study run in this experiment tagged with the study's ``key``, or None."""
        if not re.fullmatch(r"[0-9a-f]{32}", key):  # made by study_run: nothing to quote in the filter
            return None
        try:
            with _quiet_store_errors():
                runs = self.client.search_runs([self.experiment_id], f"tags.`{STUDY_KEY_TAG}` = '{key}'",
                                               max_results=1, order_by=["attributes.start_time ASC"])
        except Exception:
            return None
        return runs[0].info.run_id if runs else None

    def require_study_run(self, study: Any, *, missing_ok: bool = False) -> None:
        """Raise :class:`TrackingError` unless the study's parent run (if it has one) is in this store and
        experiment: a worker or ``sync`` with a wrong ``--tracking-uri``/``--experiment`` made orphan runs.
        ``missing_ok``: a run not in this store at all is fine (a resumed search then starts a new study run
        and back-fills its trials there); one in another experiment of the store is still refused.
        Creates nothing: called before :meth:`check`, a refusal leaves no new store or experiment behind."""
        run_id = study.user_attrs.get("mlflow_parent_run_id")
        if not run_id:
            return
        store = local_store(self.config.tracking_uri)
        try:
            if store is not None and not store.exists():  # opening it would create it
                raise FileNotFoundError(store)
            run = self.client.get_run(run_id)
        except Exception:
            if missing_ok:
                return
            raise TrackingError(f"study {study.study_name!r} logs to MLflow run {run_id}, which is not in the "
                                f"tracking store {redact_url(self.config.tracking_uri)}: give the store the study "
                                f"was created with (--tracking-uri, mlflow.yaml or $MLFLOW_TRACKING_URI)") from None
        if run.info.lifecycle_stage == "deleted":  # a resume reported it "not in the store" and started another
            # beside it, and sync back-filled trial runs under it, which the UI shows under no study
            uri = redact_url(self.config.tracking_uri)
            hidden = " (with the password that *** stands for)" if uri != self.config.tracking_uri else ""
            raise TrackingError(
                f"study {study.study_name!r} logs to MLflow run {run_id}, which was deleted (the UI's Delete, or "
                f"`mlflow runs delete`): restore it to log there again (MLFLOW_TRACKING_URI={shlex.quote(uri)} "
                f"mlflow runs restore --run-id {run_id}{hidden})")
        name = self.client.get_experiment(run.info.experiment_id).name
        if name != self.config.experiment_name:
            raise TrackingError(f"study {study.study_name!r} logs to MLflow experiment {name!r}, not "
                                f"{self.config.experiment_name!r}: pass --experiment {name!r}")

    def end_study(self, run_id: str, status: str = "FINISHED") -> None:
        """Mark the study's run ``status`` (FINISHED, FAILED or KILLED)."""
        self._safe("end of study run", self.client.set_terminated, run_id, status)

    # -- trials -----------------------------------------------------------------------------
    def start_trial(self, parent_id: str, trial_number: int, study_name: str, params: dict[str, Any],
                    tags: dict[str, Any] | None = None, *, reopen: bool = True) -> str | None:
        """Create the trial's nested run and log its params; returns the run id (None if MLflow is down).
        ``tags`` adds run tags (e.g. ``worker``, ``optuna.retry_of``); ``reopen`` marks a closed study run
        RUNNING again (a trial starts in it; not so for a finished trial that :meth:`sync` back-fills)."""
        def _start():
            if reopen and self.client.get_run(parent_id).info.status != "RUNNING":  # closed by a stopped worker
                self.client.update_run(parent_id, status="RUNNING")
            run = self.client.create_run(
                self.experiment_id, run_name=f"trial-{trial_number}",
                tags={"mlflow.parentRunId": parent_id, "optuna.study_name": study_name,
                      "optuna.trial_number": str(trial_number), "ecg_automl.kind": "trial",
                      **({"space": self.space_name} if self.space_name else {}),
                      **({"objective.metric": self.metric} if self.metric else {}),
                      "mlflow.note.content": trial_run_note(self.metric),
                      **{k: str(v) for k, v in (tags or {}).items()}})
            self.log_params(run.info.run_id, params)
            return run.info.run_id
        return self._safe(f"start of trial {trial_number}", _start)

    def log_params(self, run_id: str | None, params: dict[str, Any]) -> None:
        """Log ``params`` on the run (lists and dicts as JSON), 100 per call; nothing for ``run_id`` None."""
        from mlflow.entities import Param

        if run_id is None:
            return
        items = [Param(k, json.dumps(v) if isinstance(v, (list, dict)) else str(v)) for k, v in params.items()]
        for i in range(0, len(items), 100):
            self._safe("log_params", self.client.log_batch, run_id, params=items[i:i + 100])

    def log_metrics(self, run_id: str | None, metrics: dict[str, float], step: int = 0) -> None:
        """Log ``metrics`` at ``step`` on the run, leaving out None and NaN; nothing for ``run_id`` None."""
        from mlflow.entities import Metric

        if run_id is None:
            return
        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, step) for k, v in metrics.items() if v is not None and v == v]
        if items:
            self._safe("log_metrics", self.client.log_batch, run_id, metrics=items)

    def set_tags(self, run_id: str | None, tags: dict[str, Any]) -> None:
        """Set ``tags`` on the run (as text, at most 5,000 characters each); nothing for ``run_id`` None."""
        from mlflow.entities import RunTag

        if run_id is not None:
            self._safe("set_tags", self.client.log_batch, run_id,
                       tags=[RunTag(k, str(v)[:5000]) for k, v in tags.items()])

    def log_text(self, run_id: str | None, text: str, name: str) -> None:
        """Store ``text`` as the run's artifact file ``name``; nothing for ``run_id`` None."""
        if run_id is not None:
            self._safe(f"log_text {name}", self.client.log_text, run_id, text, name)

    def log_json(self, run_id: str | None, obj: Any, name: str) -> None:
        """Store ``obj`` as indented JSON in the run's artifact file ``name``; nothing for ``run_id`` None."""
        self.log_text(run_id, json.dumps(obj, indent=2, default=str), name)

    def logged_json(self, run_id: str, name: str) -> Any:
        """The JSON artifact ``name`` of a run, parsed; None when it cannot be fetched or read."""
        try:
            with tempfile.TemporaryDirectory() as tmp:
                return json.loads(Path(self.client.download_artifacts(run_id, name, tmp)).read_text())
        except Exception as exc:
            log.info("could not read %s of run %s (%s)", name, run_id, exc)
            return None

    def log_figure(self, run_id: str | None, fig: Any, name: str) -> None:
        """Store a matplotlib figure as the run's image artifact ``name``; nothing for ``run_id`` None."""
        if run_id is not None:
            self._safe(f"log_figure {name}", self.client.log_figure, run_id, fig, name)

    def log_artifact(self, run_id: str | None, path: str | Path, artifact_path: str | None = None) -> None:
        """Copy the file ``path`` into the run's artifacts (under ``artifact_path``); nothing for ``run_id`` None."""
        if run_id is not None:
            self._safe(f"log_artifact {Path(path).name}", self.client.log_artifact, run_id, str(path), artifact_path)

    def log_model(self, run_id: str | None, model: Any, name: str = "model.keras") -> bool:
        """Save a Keras model (native .keras format, loadable with safe_mode) as a run artifact; True when it is
        there. A model that cannot be saved is a warning, as a failed MLflow call is: the trial keeps its result."""
        if run_id is None:
            return False
        lost = self.lost
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / name
            try:
                model.save(path)
            except Exception as exc:
                log.warning("could not save the model for MLflow (%s: %s); the trial goes on without it",
                            type(exc).__name__, _first_line(exc, 200))
                return False
            self.log_artifact(run_id, path, "model")
        return self.lost == lost

    def log_final_report(self, run_id: str | None, report: dict[str, Any], title: str, *,
                         skip: Iterable[str] = (), metrics: bool = True) -> list[str]:
        """Log a final test's report on ``run_id``: its ``test.*`` metrics (unless ``metrics`` is False),
        ``final_test.json``, ``final_test.txt`` and ``final_confusion_matrix.png`` (but those in ``skip``): all a
        report gives without the test predictions. Returns what it logged."""
        from . import plots
        from .metrics import format_report

        if run_id is None:
            return []
        logged = []
        if metrics:
            self.log_metrics(run_id, {f"test.{k}": v for k, v in report["abnormal"].items()})
            self.log_metrics(run_id, {f"test_at_0.5.{k}": v for k, v in report["at_0.5"].items()})
            for cls, m in report["per_class"].items():
                self.log_metrics(run_id, {f"test.{cls}.{k.replace('-score', '')}": v for k, v in m.items()})
            logged.append("test.* metrics")
        skip = set(skip)
        if "final_test.json" not in skip:
            self.log_json(run_id, report, "final_test.json")
            logged.append("final_test.json")
        if "final_test.txt" not in skip:
            self.log_text(run_id, format_report(report, title), "final_test.txt")
            logged.append("final_test.txt")
        if "final_confusion_matrix.png" not in skip:
            fig = plots.confusion_figure(report["confusion_matrix"], title)
            self.log_figure(run_id, fig, "final_confusion_matrix.png")
            plots.close(fig)
            logged.append("final_confusion_matrix.png")
        return logged

    def log_pareto(self, run_id: str | None, study: Any, rows: list[dict[str, Any]] | None = None, *,
                   skip: Iterable[str] = ()) -> list[str]:
        """Log a multi-objective study's Pareto front on ``run_id``: ``pareto_front.json`` (``rows``, else
        :func:`~search.pareto.pareto_table`'s) and, with a latency objective, ``pareto_front.png`` (but those in
        ``skip``). Returns what it logged."""
        from . import plots
        from .pareto import pareto_figure, pareto_table

        if run_id is None:
            return []
        logged = []
        if "pareto_front.json" not in skip:
            self.log_json(run_id, pareto_table(study) if rows is None else rows, "pareto_front.json")
            logged.append("pareto_front.json")
        fig = pareto_figure(study) if "pareto_front.png" not in skip else None
        if fig is not None:
            self.log_figure(run_id, fig, "pareto_front.png")
            plots.close(fig)
            logged.append("pareto_front.png")
        return logged

    def end_trial(self, frozen_trial: Any, run_id: str | None = None) -> None:
        """Write the trial's final state, value and attributes to its run (``run_id``, else the one the
        trial recorded when it started); called from the study callback and by :meth:`sync`. The run is ended only
        when those reached the store: one left RUNNING is what :meth:`sync` looks into again."""
        run_id = run_id or frozen_trial.user_attrs.get("mlflow_run_id")
        if run_id is None:
            return
        lost = self.lost
        state = frozen_trial.state.name
        metrics = {}
        if frozen_trial.values is not None and state == "COMPLETE":
            names = frozen_trial.user_attrs.get("objective_names") or [f"objective_{i}" for i in range(len(frozen_trial.values))]
            metrics.update({f"objective.{n}": v for n, v in zip(names, frozen_trial.values)})
        elif frozen_trial.values is not None and state == "PRUNED":
            # Optuna gives a pruned trial its last reported value: the running mean of the pruning signal (validation
            # ROC-AUC for the default metric f1), not the objective; logged as objective.quality it sorted pruned
            # trials above finished ones in the MLflow UI
            metrics["pruned.running_mean"] = frozen_trial.values[0]
        for key in ("threshold", "latency_ms", "size_kb"):
            if key in frozen_trial.user_attrs:
                metrics[key] = frozen_trial.user_attrs[key]
        self.log_metrics(run_id, metrics)
        tags = {"optuna.state": state}
        # (a retry keeps its dead trial's reasons as None: search.objective._start_fresh)
        if frozen_trial.user_attrs.get("fail_reason"):
            tags["fail_reason"] = frozen_trial.user_attrs["fail_reason"]
        elif state == "FAIL":
            tags["fail_reason"] = "the worker stopped without a result (heartbeat went stale); the trial is retried"
        if frozen_trial.user_attrs.get("prune_reason"):
            tags["prune_reason"] = frozen_trial.user_attrs["prune_reason"]
        if isinstance(frozen_trial.user_attrs.get("latency_device"), dict):  # the bench-server's board
            tags["latency_device"] = json.dumps(frozen_trial.user_attrs["latency_device"], sort_keys=True)
        self.set_tags(run_id, tags)
        if self.lost == lost:
            self._safe("end of trial run", self.client.set_terminated, run_id, RUN_STATUS.get(state, "FAILED"))

    # -- back-fill ----------------------------------------------------------------------------
    def trial_runs(self, parent_id: str) -> dict[int, Any]:
        """Existing nested runs of a study, by trial number; of several runs of one number (a KerasTuner trial
        redone after an interrupt) the latest, not the interrupted one."""
        return _by_trial_number(self._nested_runs(parent_id))

    def _nested_runs(self, parent_id: str) -> list[Any]:
        """Every nested run of a study's run, oldest first."""
        runs = self.client.search_runs([self.experiment_id], f"tags.mlflow.parentRunId = '{parent_id}'",
                                       max_results=10000)
        return sorted(runs, key=lambda r: r.info.start_time or 0)

    def sync(self, study: Any, trials: Iterable | None = None, *, study_run: bool = False) -> dict[str, Any]:
        """Create or complete the MLflow runs of finished trials that MLflow missed (server was down).

        ``study_run`` (``ecg-automl sync``) also completes the study's run: the final test the study holds, its
        plots or Pareto front, and its end (:meth:`_sync_study_run`); the result then has ``"study_run"``: what
        was done to it, ``"not_back_filled"``: what could not be, and ``"left_running"``: why the study run was
        left alone (a search is still making the final model, :func:`final_in_progress`), else None; and
        ``"trial_files_lost"``: the files the back-filled runs of complete trials lack (:meth:`_trial_files_lost`).

        A trial counts as created or updated only when every MLflow call of its back-fill succeeded; the numbers
        of those whose calls failed are ``"incomplete"`` (with ``study_run``), and a later sync tries them again."""
        then, self._then = self._then, _SYNC_GOES_ON
        try:
            return self._sync(study, trials, study_run=study_run)
        finally:
            self._then = then

    def _sync(self, study: Any, trials: Iterable | None, *, study_run: bool) -> dict[str, Any]:
        parent = study.user_attrs.get("mlflow_parent_run_id")
        created = updated = 0
        incomplete: list[int] = []
        touched: list[tuple[Any, str]] = []  # (trial, run) of the runs back-filled
        new_parent = not parent
        if new_parent:  # a study searched with --no-mlflow
            parent = self.study_run(study, study.user_attrs.get("settings", {}))
            created += 1
        nested = self._nested_runs(parent)
        existing = _by_trial_number(nested)
        by_id = {r.info.run_id: r for r in nested}
        every = study.get_trials(deepcopy=False)
        claims: dict[str, list[int]] = {}  # run id -> the trials recording it
        for t in every:
            if t.user_attrs.get("mlflow_run_id"):
                claims.setdefault(t.user_attrs["mlflow_run_id"], []).append(t.number)
        for t in trials if trials is not None else every:
            if t.state.name in ("RUNNING", "WAITING"):
                continue
            # A finished Optuna trial cannot be changed any more: the run id is passed, not stored. Its own run
            # first: a KerasTuner trial that failed before its record was kept left the study's numbers one behind
            # its runs' (a run of that number then got another trial's results)
            run = by_id.get(t.user_attrs.get("mlflow_run_id"))
            if run is not None and _claimed_by_another(run, t.number, claims):
                run = None  # a retry of a dead worker's trial that inherited the dead trial's run id
            run = run or existing.get(t.number)
            before = self.lost
            if run is None:
                run_id = self.start_trial(parent, t.number, study.study_name, _params(t), trial_tags(t),
                                          reopen=False)
                if run_id is not None:
                    self._log_folds(run_id, t)
                    self._log_curves(run_id, t)
                if run_id is not None and self._end_if_whole(t, run_id, before):
                    created += 1
                    touched.append((t, run_id))
                else:  # the run a later sync finds and completes, or none
                    incomplete.append(t.number)
                continue
            # the run may have been created just before the server went away, without its params or fold
            # metrics: log what it lacks (a logged param's value cannot change, so only the missing keys)
            missing = {k: v for k, v in _params(t).items() if k not in run.data.params}
            no_folds = bool(t.user_attrs.get("fold_metrics")) and not any(k.startswith("fold.") for k in run.data.metrics)
            no_summary = bool(t.user_attrs.get("mean_metrics")) and not any(k.startswith("mean.")
                                                                            for k in run.data.metrics)
            # a curve the run has none of (which steps a curve it has lacks, MLflow tells only with a request per
            # curve: asked only of a trial that knows some of its points were lost, CURVES_LOST)
            curves = t.user_attrs.get(EPOCH_CURVES, {})
            no_curves = [k for k, values in curves.items()
                         if k not in run.data.metrics and any(v is not None for v in values)]  # all-NaN: nothing
            # a trial that knows some of its curve points were lost: the steps each curve's history lacks (asked
            # once: the run is then tagged, as a finished trial's attribute cannot be cleared)
            # (or of a run not ended as its trial: a back-fill whose calls failed left it RUNNING, after some points)
            unended = run.info.status != RUN_STATUS.get(t.state.name)
            check = (bool(t.user_attrs.get(CURVES_LOST)) or unended) and run.data.tags.get(CURVES_CHECKED) != "true"
            lost = self.lost
            keys = [k for k in curves if k in run.data.metrics] if check else []
            logged = self._curve_steps(run.info.run_id, keys)
            gaps = [k for k, steps in logged.items()
                    if any(v is not None and i not in steps for i, v in enumerate(curves[k]))]
            # likewise the folds of a trial that knows some of its fold.* metrics were lost (FOLDS_LOST)
            folds = t.user_attrs.get("fold_metrics") or []
            check_folds = (not no_folds and (bool(t.user_attrs.get(FOLDS_LOST)) or unended)
                           and run.data.tags.get(FOLDS_CHECKED) != "true")
            fold_steps = self._curve_steps(run.info.run_id, sorted({f"fold.{k}" for f in folds for k in f})
                                           if check_folds else [])
            fold_gaps = {i: {k: f[k[5:]] for k, steps in fold_steps.items() if k[5:] in f and i not in steps}
                         for i, f in enumerate(folds)}
            fold_gaps = {i: m for i, m in fold_gaps.items() if m}
            if (missing or no_folds or no_summary or no_curves or gaps or fold_gaps
                    or run.info.status != RUN_STATUS.get(t.state.name)):
                self.log_params(run.info.run_id, missing)
                if no_folds or no_summary:
                    self._log_folds(run.info.run_id, t, folds=no_folds, summary=no_summary)
                for i, m in fold_gaps.items():
                    self.log_metrics(run.info.run_id, m, step=i)
                self._log_curves(run.info.run_id, t, only=no_curves + gaps, logged=logged)
                if self._end_if_whole(t, run.info.run_id, before):
                    updated += 1
                    touched.append((t, run.info.run_id))
                else:
                    incomplete.append(t.number)
            if check and self.lost == lost:  # every history answered, every missing point logged
                self.set_tags(run.info.run_id, {CURVES_CHECKED: "true"})
            if check_folds and self.lost == lost:
                self.set_tags(run.info.run_id, {FOLDS_CHECKED: "true"})
        if not study_run:
            return {"created": created, "updated": updated}
        marker, alive = final_in_progress(study)
        if marker and alive is not False:  # the search logs the final test, plots and end itself when it is done
            return {"created": created, "updated": updated, "incomplete": incomplete, "study_run": [],
                    "not_back_filled": [], "trial_files_lost": self._trial_files_lost(touched),
                    "left_running": _final_running_note(marker, alive)}
        clear_dead_final(study)  # a second sync does not find it again
        done, missing = self._sync_study_run(study, parent, killed_final=study.user_attrs.get(FINAL_KILLED),
                                             redraw=bool(created or updated))
        if done and not new_parent:
            updated += 1
        return {"created": created, "updated": updated, "incomplete": incomplete, "study_run": done,
                "not_back_filled": missing, "trial_files_lost": self._trial_files_lost(touched), "left_running": None}

    def _end_if_whole(self, trial: Any, run_id: str, before: int) -> bool:
        """End a back-filled trial run when no MLflow call has failed since ``before`` (:attr:`lost` then); True if
        so. A run left RUNNING is what the next sync looks into again, step by step."""
        if self.lost == before:
            self.end_trial(trial, run_id)
        return self.lost == before

    def _trial_files_lost(self, touched: list[tuple[Any, str]]) -> list[str]:
        """What the back-filled runs of complete trials lack of the files a trial's run holds, which the study
        cannot give: the plots need the trial's out-of-fold predictions, the model its weights. One line per set of
        files, naming its trials (a sync said nothing of them, and the runs looked whole but for their pictures)."""
        lacking: dict[tuple[str, ...], list[int]] = {}
        for trial, run_id in touched:
            if trial.state.name != "COMPLETE":  # a pruned or failed trial's run holds no file
                continue
            try:
                with _quiet_store_errors():
                    names = {a.path for a in self.client.list_artifacts(run_id)}
                    if "model" in names:
                        names |= {a.path for a in self.client.list_artifacts(run_id, "model")}
            except Exception:  # cannot tell: nothing said
                continue
            gone = tuple(f for f in _TRIAL_FILES if f not in names)
            if gone:
                lacking.setdefault(gone, []).append(trial.number)
        return [f"trial{'s' if len(numbers) > 1 else ''} {', '.join(map(str, numbers))}: {', '.join(files)}"
                for files, numbers in lacking.items()]

    def _sync_study_run(self, study, parent: str, killed_final: dict[str, Any] | None = None, redraw: bool = False
                        ) -> tuple[list[str], list[str]]:
        """Log on the study's run what the study holds and the run lacks: the final test (metrics,
        ``final_test.json``/``.txt``, confusion matrix, the model file if it is still on disk) and the study's
        plots, or a multi-objective study's Pareto front; then end the run if it is RUNNING and no trial is:
        FINISHED, or KILLED when a trial waits to be redone and there is no final test, or when the search was
        killed while making the final model (``killed_final``: its :data:`FINAL_KILLED` record, said while the run
        is RUNNING, not again once it is ended). Returns (what was done, what the study cannot give: the ROC curve
        needs the test predictions)."""
        from optuna.trial import TrialState

        run = self.client.get_run(parent)
        names = {a.path for a in self.client.list_artifacts(parent)}
        done: list[str] = []
        missing: list[str] = []

        def did(what: str, when_refused: str, before: int) -> None:  # said "ended FINISHED" where MLflow refused it
            if self.lost == before:
                done.append(what)
            else:
                missing.append(f"{when_refused}: MLflow refused the write (the warnings above say why)")

        report = study.user_attrs.get("final")
        if killed_final and report and report.get("trial") == killed_final.get("trial"):
            killed_final = None  # killed after the report was stored: the final test is done
        if killed_final and run.info.status == "RUNNING":  # once ended KILLED for it, a later sync is quiet
            missing.append(f"final test of trial {killed_final.get('trial', '?')} (its search, "
                           f"{killed_final.get('worker', '?')}, was stopped while making the final model: run the "
                           f"search command again to make it)")
        stale = None  # the trial of a final test the run holds that is not the study's (a resume made another)
        if report:
            before = self.lost
            if "model" in names:
                names |= {a.path for a in self.client.list_artifacts(parent, "model")}
            if "final_test.json" in names:
                held = self.logged_json(parent, "final_test.json")
                if isinstance(held, dict) and _another_final(held, report):
                    stale = held.get("trial", "?")  # replaced below: it was kept, and export fetched its model
                    names -= {"final_test.json", "final_test.txt", "final_confusion_matrix.png",
                              "model/final_model.keras"}
            dataset = study.user_attrs.get("settings", {}).get("dataset", "")
            title = f"final test on held-out patients: trial {report.get('trial', '?')}, {dataset}"
            logged = self.log_final_report(parent, report, title, skip=names,
                                           metrics=stale is not None
                                           or not any(k.startswith("test.") for k in run.data.metrics))
            model_path = Path(report.get("model_path") or "")
            if "model/final_model.keras" not in names:
                if model_path.is_file():
                    with tempfile.TemporaryDirectory() as tmp:
                        copy = Path(tmp) / "final_model.keras"
                        copy.write_bytes(model_path.read_bytes())
                        self.log_artifact(parent, copy, "model")
                    if report.get("model_sha256"):
                        self.set_tags(parent, {FINAL_MODEL_TAG: report["model_sha256"]})
                    logged.append("model/final_model.keras")
                else:
                    missing.append(f"model/final_model.keras ({model_path or 'the final model file'} is gone)")
            if logged:
                what = ("final test back-filled" if stale is None else
                        f"final test of trial {stale} replaced by the study's newer one of the same trial"
                        if stale == report.get("trial") else
                        f"final test of trial {report.get('trial', '?')} replaced that of trial {stale}, made before "
                        f"the study's best trial changed")
                did(f"{what} ({', '.join(logged)})", f"the final test ({', '.join(logged)})", before)
            if stale is not None and "final_roc.png" in names:
                missing.append(f"final_roc.png (it is still trial {stale}'s: a new one needs the final model's test "
                               f"predictions, which the study does not keep)")
            elif "final_roc.png" not in names and logged:  # said once, with the back-fill (every sync repeated it)
                missing.append("final_roc.png (it needs the final model's test predictions, which the study "
                               "does not keep)")
        if len(study.directions) == 1 and ("optimization_history.png" not in names or redraw or stale is not None):
            # redrawn when trials were back-filled: the plot of a resumed study showed its first run's trials
            from . import plots

            before = self.lost
            try:
                figures = plots.study_figures(study, study.user_attrs.get("settings", {}).get("metric", "f1"))
            except Exception as exc:  # as log_study_figures: a plot that cannot be drawn is a warning
                log.warning("study plots not drawn (%s: %s)", type(exc).__name__, exc)
                figures = {}
            for name, fig in figures.items():
                self.log_figure(parent, fig, name)
                plots.close(fig)
            if figures:
                did(f"plots back-filled ({', '.join(figures)})", f"the plots ({', '.join(figures)})", before)
        if len(study.directions) > 1:
            before = self.lost
            logged = self.log_pareto(parent, study, skip=names)
            if logged:
                did(f"Pareto front back-filled ({', '.join(logged)})", f"the Pareto front ({', '.join(logged)})",
                    before)
        if run.info.status == "RUNNING" and not study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            waiting = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
            status = "KILLED" if killed_final or (waiting and not report) else "FINISHED"
            before = self.lost
            self.end_study(parent, status)
            did(f"ended {status}", f"its end ({status})", before)
        return done, missing

    def _log_folds(self, run_id: str, trial, *, folds: bool = True, summary: bool = True) -> None:
        """A finished trial's per-fold validation metrics, one step per fold, and their summary (``mean.*``,
        ``oof_tuned.*``), as the objective logs them (back-filled runs lacked the summary: blank columns in the UI)."""
        for i, fold in enumerate(trial.user_attrs.get("fold_metrics", []) if folds else []):
            self.log_metrics(run_id, {f"fold.{k}": v for k, v in fold.items()}, step=i)
        if summary and trial.user_attrs.get("mean_metrics"):
            self.log_metrics(run_id, trial.user_attrs["mean_metrics"])

    def _curve_steps(self, run_id: str, keys: Sequence[str]) -> dict[str, set[int]]:
        """The steps each of a run's curves ``keys`` holds (one request per curve; a curve the store did not
        answer for is left out, so nothing is logged twice)."""
        steps = {}
        for key in keys:
            history = self._safe("get_metric_history", self.client.get_metric_history, run_id, key)
            if history is not None:
                steps[key] = {m.step for m in history}
        return steps

    def _log_curves(self, run_id: str, trial, only: Sequence[str] | None = None,
                    logged: dict[str, set[int]] | None = None) -> None:
        """A trial's per-epoch curves from the study (:data:`EPOCH_CURVES`), one step per epoch as the objective
        logs them live; ``only``: these curves (default all); ``logged``: steps the run already holds, by curve."""
        from mlflow.entities import Metric

        curves = trial.user_attrs.get(EPOCH_CURVES) or {}
        logged = logged or {}
        now = int(time.time() * 1000)
        items = [Metric(key, float(v), now, step) for key, values in curves.items() if only is None or key in only
                 for step, v in enumerate(values) if v is not None and step not in logged.get(key, ())]
        for i in range(0, len(items), 1000):  # MLflow takes at most 1,000 metrics per batch
            self._safe("log_metrics", self.client.log_batch, run_id, metrics=items[i:i + 1000])


#: The study's attribute holding a key of its own, also tagged on its MLflow study run: a resume finds that run by
#: it where the study's remembered run is not in the store (the study's name may be another study's too).
STUDY_KEY = "mlflow_study_key"
STUDY_KEY_TAG = "ecg_automl.study_key"


def version_tags() -> dict[str, str]:
    """A study run's tags for the versions that decide results (ecg-automl's, Python's and the libraries'), and
    the git commit of the code run from a checkout (``mlflow.source.git.commit``, which the UI shows; with
    ``ecg_automl.git_dirty`` "true" where its tracked files had uncommitted changes)."""
    from ecg_automl import __version__, git_source, versions

    tags = {"ecg_automl.version": __version__, "ecg_automl.versions": json.dumps(versions())}
    source = git_source()
    if source is not None:
        tags.update({"mlflow.source.git.commit": str(source["commit"]),
                     "ecg_automl.git_dirty": "true" if source["dirty"] else "false"})
    return tags


#: The files a complete trial's run holds (:func:`search._trial_results.log_trial_results`).
_TRIAL_FILES = ("confusion_matrix.png", "roc.png", "model/model.keras")
_GOES_ON = "the study goes on, run `ecg-automl sync` later to back-fill"
_SYNC_GOES_ON = "the back-fill goes on with the next run; run `ecg-automl sync` again once the store takes writes"


def _by_trial_number(runs: list[Any]) -> dict[int, Any]:
    """Trial runs by their ``optuna.trial_number`` tag; of several of one number, the last in ``runs``."""
    return {int(r.data.tags["optuna.trial_number"]): r for r in runs if "optuna.trial_number" in r.data.tags}


def _params(trial) -> dict[str, Any]:
    """The params a trial's run carries: its full model config, else Optuna's sampled params."""
    return trial.user_attrs.get("config", trial.params)
