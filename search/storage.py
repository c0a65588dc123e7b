"""Optuna storages: a local SQLite file by default, any RDB URL (PostgreSQL for many workers)."""

from __future__ import annotations

import os
import random
import time
import warnings
from pathlib import Path

import optuna

from ecg_automl.defaults import DEFAULT_STORAGE  # noqa: F401  (re-exported)

from .folders import why_no_folder


class StorageError(RuntimeError):
    """The study storage URL is wrong or the database cannot be reached."""


def make_storage(url: str | None = None, *, heartbeat: float | None = 30,
                 create: bool = True) -> optuna.storages.BaseStorage:
    """An ``RDBStorage`` for ``url`` with Optuna's heartbeat on, so trials of a killed worker are failed
    and retried (``RetryHeartbeatStaleTrialCallback``) instead of staying RUNNING forever. ``heartbeat`` is
    the interval in seconds (a trial is stale after 4 missed beats); None turns it off.

    ``create=False`` (a worker, ``sync``: the study must exist) refuses a SQLite file that is not there
    instead of creating an empty database at a mistyped path."""
    url = _url_text(url)
    db = sqlite_file(url)
    if db is not None:
        _refuse_tilde(url, str(db))
        relative = not db.is_absolute()
        path = db.resolve()
        if not create and not path.exists():
            raise StorageError(f"cannot open study storage {url}: {path} does not exist (create the study "
                               f"first with `ecg-automl search ... --storage {url}`)")
        if relative:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:  # a file in the way, a read-only folder
                raise StorageError(f"cannot open study storage {url}: cannot create the folder {path.parent} "
                                   f"({why_no_folder(path.parent, exc)})") from None
            url = _with_database(url, path)
    if "://" not in url:
        raise StorageError(f"{url!r} is not a storage URL (examples: sqlite:///runs/optuna.db, "
                           f"postgresql://user:pass@host/db)")
    kwargs = {}
    if heartbeat:
        interval = max(1, int(heartbeat))  # Optuna takes whole seconds
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            kwargs = dict(heartbeat_interval=interval, grace_period=grace_period(interval),
                          heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=2))
    engine_kwargs = {"pool_pre_ping": True}
    if url.startswith("sqlite"):
        engine_kwargs["connect_args"] = {"timeout": 60}
    _refuse_foreign_database(url, engine_kwargs)
    for attempt in range(_SCHEMA_RACE_ATTEMPTS):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, **kwargs)
        except Exception as exc:
            if _schema_race(exc) and attempt + 1 < _SCHEMA_RACE_ATTEMPTS:
                # another worker is creating the same fresh database's tables right now: once it is done
                # the schema is there and opening it succeeds
                time.sleep(0.2 + random.random() * 0.5 * (attempt + 1))
                continue
            raise StorageError(f"cannot open study storage {redact_url(url)}: {_first_line(exc)}") from None
    raise AssertionError("unreachable")


#: The heartbeat interval (s) of the worker running a trial, kept on the trial (user attribute): another worker
#: judges the trial by it (:func:`fail_stale_trials`), not by its own ``--heartbeat``.
HEARTBEAT_ATTR = "heartbeat_interval_s"


def grace_period(interval: float) -> int:
    """Seconds without a heartbeat after which a trial of a worker beating every ``interval`` s is stale: 4 beats
    (``--heartbeat 0.5`` beats every 1 s, so 4 s, not 2)."""
    return 4 * max(1, int(interval))


def fail_stale_trials(study: optuna.Study) -> list[int]:
    """Fail the running trials of dead workers, as Optuna's ``fail_stale_trials`` does (the storage's callback
    queues their retries), each judged by the heartbeat interval of the worker running it (:data:`HEARTBEAT_ATTR`;
    this worker's for a trial that does not say): a worker started with ``--heartbeat 1`` failed the live trials
    of workers on the default 30 after 4 s, and each of those workers then crashed reporting its result. The
    storage keeps the longest grace period of the running trials for Optuna's own check before each trial it
    starts, which cannot tell them apart. Returns the numbers of the trials failed."""
    import copy

    storage = study._storage
    rdb = getattr(storage, "_backend", storage)  # under Optuna's cache
    if not optuna.storages._heartbeat.is_heartbeat_enabled(storage):
        return []
    own = getattr(rdb, "_ecg_own_grace_period", None)
    if own is None:
        own = rdb._ecg_own_grace_period = rdb.grace_period or 2 * rdb.heartbeat_interval
    running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    grace_of = {t._trial_id: grace_period(t.user_attrs[HEARTBEAT_ATTR])
                if isinstance(t.user_attrs.get(HEARTBEAT_ATTR), (int, float)) else own for t in running}
    stale: list[int] = []
    try:
        for grace in sorted(set(grace_of.values())):
            rdb.grace_period = grace
            stale += [i for i in rdb._get_stale_trial_ids(study._study_id) if grace_of.get(i) == grace]
    finally:
        rdb.grace_period = max([own, *grace_of.values()])
    failed = []
    for trial_id in stale:
        try:
            if storage.set_trial_state_values(trial_id, state=optuna.trial.TrialState.FAIL):
                failed.append(trial_id)
        except optuna.exceptions.UpdateFinishedTrialError:
            pass  # another worker failed it first
    callback = storage.get_heartbeat_stale_trial_callback()
    frozen = [copy.deepcopy(storage.get_trial(i)) for i in failed]
    if callback is not None:
        for trial in frozen:
            callback(study, trial)
    return sorted(t.number for t in frozen)


#: Tables of Optuna's RDB schema; a database holding tables but none of these is another program's.
_OPTUNA_TABLES = {"studies", "study_directions", "trials", "version_info"}


def _refuse_foreign_database(url: str, engine_kwargs: dict) -> None:
    """Raise :class:`StorageError` if ``url`` is a database of another program (an MLflow store, say):
    Optuna would add its tables to it and then fail with a misleading schema-version message."""
    import sqlalchemy

    if sqlite_file_missing(url):
        return  # a new file (or :memory:): Optuna creates the schema
    try:
        engine = sqlalchemy.create_engine(url, **engine_kwargs)
        try:
            tables = set(sqlalchemy.inspect(engine).get_table_names())
        finally:
            engine.dispose()
    except Exception:
        return  # unreachable or not a database: RDBStorage says why
    if tables and not tables & _OPTUNA_TABLES:
        what = "an MLflow tracking store" if {"experiments", "runs"} <= tables else "another program's database"
        raise StorageError(f"{redact_url(url)} is not an Optuna study storage: it holds {len(tables)} other tables "
                           f"({', '.join(sorted(tables)[:4])}, ...), as {what} does. Give the study's storage "
                           f"(the default is {DEFAULT_STORAGE}); nothing was written")


#: Tries to open a storage whose schema another process is creating at the same moment.
_SCHEMA_RACE_ATTEMPTS = 8


def _schema_race(exc: BaseException) -> bool:
    """True for the errors of two processes creating one fresh database's schema at once (several
    workers started together on a new storage): a table that "already exists", or the schema version row
    inserted twice (a UNIQUE/duplicate-key violation on ``alembic_version``)."""
    import sqlalchemy.exc

    text = str(exc).lower()
    if isinstance(exc, sqlalchemy.exc.IntegrityError):
        return "alembic_version" in text or "version_info" in text
    return isinstance(exc, sqlalchemy.exc.DBAPIError) and ("already exists" in text or "database is locked" in text)


def in_memory(url: str | None) -> bool:
    """True for a SQLite URL SQLAlchemy opens as an in-memory database (``sqlite://``, ``sqlite:///``,
    ``sqlite:///:memory:``): a study there is gone when the process ends."""
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url or DEFAULT_STORAGE)
        return parsed.get_backend_name() == "sqlite" and (parsed.database or "") in ("", ":memory:")
    except Exception:
        return False  # not a URL: check_storage says so


def sqlite_file(url: str) -> Path | None:
    """The database file of a ``sqlite:///`` URL as SQLAlchemy reads it: without a query string (``?timeout=30``)
    and with %-escapes decoded. None for another database, an in-memory one or a URL that does not parse."""
    if not url.startswith("sqlite:///"):
        return None
    from sqlalchemy.engine import make_url

    try:
        db = make_url(url).database
    except Exception:  # malformed: check_storage and make_storage say why
        return None
    return Path(db) if db and db != ":memory:" else None


def sqlite_file_missing(url: str) -> bool:
    """Whether ``url`` is a SQLite URL whose database file is not there (an in-memory one has none): opening it to
    read a study would create an empty file at a mistyped path."""
    if not url.startswith("sqlite:"):
        return False
    path = sqlite_file(url)
    return path is None or not path.is_file()


def _with_database(url: str, path: Path) -> str:
    """``url`` naming the database ``path`` instead, its query string kept."""
    from sqlalchemy.engine import make_url

    return make_url(url).set(database=str(path)).render_as_string(hide_password=False)


def _url_text(url: object) -> str:
    """``url`` (None: :data:`DEFAULT_STORAGE`) as the string it must be; a path is a :class:`StorageError` giving
    the SQLite URL to pass instead (it was an AttributeError: 'PosixPath' object has no attribute 'startswith')."""
    if url is None or url == "":
        return DEFAULT_STORAGE
    if isinstance(url, os.PathLike):
        raise StorageError(f"storage must be a URL string, not the path {os.fspath(url)!r}: for a SQLite file "
                           f"pass storage='{_with_database('sqlite:///', Path(os.fspath(url)))}'")
    if not isinstance(url, str):
        raise StorageError(f"storage must be a URL string such as 'sqlite:///runs/optuna.db', not {url!r}")
    return url


def _refuse_tilde(url: str, db: str) -> None:
    """StorageError for a SQLite path starting with ~: SQLite does not expand it, and made a folder named ~ in the
    current one."""
    if db.startswith("~"):
        raise StorageError(f"cannot open study storage {url}: SQLite does not expand ~; write the path out, "
                           f"e.g. sqlite:///{Path(db).expanduser()}")


def check_storage(url: str | None = None) -> None:
    """Reject a bad storage URL early, before the (slow) data loading, and without writing anything:
    the URL must parse and name a known database driver; a server database (PostgreSQL, MySQL) must
    accept a connection; a SQLite file's folder must exist (a relative one is created later)."""
    from sqlalchemy.engine import make_url

    url = _url_text(url)
    if "://" not in url:
        raise StorageError(f"{url!r} is not a storage URL (examples: sqlite:///runs/optuna.db, "
                           f"postgresql://user:pass@host/db)")
    try:
        parsed = make_url(url)
        parsed.get_dialect()
        if parsed.get_backend_name() == "sqlite":
            db = parsed.database or ""
            _refuse_tilde(url, db)
            if db and db != ":memory:" and url.startswith("sqlite:////") and not Path(db).parent.is_dir():
                raise StorageError(f"cannot open study storage {url}: folder {Path(db).parent} does not exist")
            return
    except StorageError:
        raise
    except Exception as exc:
        raise StorageError(f"cannot open study storage {redact_url(url)}: {_first_line(exc)}") from None
    problem = connect_error(url)
    if problem:
        raise StorageError(f"cannot open study storage {redact_url(url)}: {problem}")


def connect_error(url: str) -> str | None:
    """Why a database server at ``url`` (PostgreSQL, MySQL) refuses a connection, in one line, or None when it
    accepts one; writes nothing."""
    import sqlalchemy

    try:
        engine = sqlalchemy.create_engine(url, pool_pre_ping=True)
        try:
            with engine.connect():
                pass
        finally:
            engine.dispose()
    except Exception as exc:
        return _first_line(exc)
    return None


def _first_line(exc: BaseException, limit: int = 300) -> str:
    """The line of an error's text that says what went wrong, for a one-line message: SQLAlchemy puts "(raised as a
    result of Query-invoked autoflush; ...)" first, and the cause ("unable to open database file") on the next."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    said = [line for line in lines if not line.startswith("(raised as a result of")] or lines
    return said[0][:limit] if said else type(exc).__name__


def storage_write_problem(exc: BaseException) -> str | None:
    """What the database said, when ``exc`` is (or was caused by) the study storage failing a read or write in
    use (a full disk, a deleted or read-only file, a corrupt page, a lost server); None for other errors. Optuna
    wraps such a failure, and its trial run then ends in "AssertionError: Should not reach", so the chain is walked."""
    import sqlalchemy.exc

    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, (sqlalchemy.exc.OperationalError, sqlalchemy.exc.DatabaseError)):
            orig = getattr(exc, "orig", None)
            return _first_line(orig if orig is not None else exc, 200)
        if isinstance(exc, optuna.exceptions.StorageInternalError) and exc.__cause__ is None \
                and exc.__context__ is None:
            return _first_line(exc, 200)
        exc = exc.__cause__ or exc.__context__
    return None


def storage_option(url: str | None, *, always: bool = False) -> str:
    """`` --storage URL`` for a command printed for the user to run next (the password hidden), or "" for the
    default storage, which needs no option (``always``: for ``worker``, whose --storage has no default)."""
    if not always and (not url or url == DEFAULT_STORAGE):
        return ""
    import shlex  # a URL with ?a=b&c=d pasted unquoted became a background job and a second command

    return f" --storage {shlex.quote(redact_url(url or DEFAULT_STORAGE))}"


def redact_url(url: str) -> str:
    """The URL (a study storage's or a tracking store's) with any password replaced by ***, for messages and for
    the commands printed for the user to run next, which land in terminals and logs."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url
