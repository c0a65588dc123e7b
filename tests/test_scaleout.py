"""Scale-out with real parts on loopback: several ``ecg-automl worker`` processes share one study on a
real PostgreSQL server (and on the default SQLite storage), one worker is killed with SIGKILL in the
middle of a trial, and the study still ends with exactly the requested trials, the dead trial failed
by Optuna's heartbeat and retried, and MLflow runs 1:1 with Optuna trials.

The commands are the ones docs/SCALE_OUT.md gives. Needs Debian's ``postgresql`` package (initdb and
pg_ctl in /usr/lib/postgresql/<version>/bin); the PostgreSQL test is skipped, saying so, without it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from conftest import SMALL_RECORDS, run_cli
from optuna.trial import TrialState
from servers import start_mlflow_server, start_postgres, trial_runs_by_number
from test_search import tiny_space_file

HEARTBEAT = 2  # seconds; a trial is stale after 4 missed beats (8 s)


@pytest.fixture(scope="module")
def postgres():
    try:
        pg = start_postgres()
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    yield pg
    pg.stop()


def _create_study(tmp_path, env, study, storage_args, tracking_args):
    """``ecg-automl search --trials 0``: creates the study (dataset, space, settings, pruner) and its
    MLflow parent run, and runs nothing; the workers do the trials."""
    run_cli(["search", "--dataset", "mitdb", "--space", tiny_space_file(tmp_path), "--trials", 0, "--folds", 2,
             "--max-beats", 600, "--records", ",".join(SMALL_RECORDS), "--study", study, "--no-final",
             "--pruner", "none", "--seed", 3, "--quiet", *storage_args, *tracking_args], tmp_path, env)


def _start_worker(tmp_path, env, i, study, storage, n_trials, tracking_args):
    log = open(tmp_path / f"worker{i}.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "ecg_automl", "worker", "--study", study, "--storage", storage,
         "--trials", str(n_trials), "--heartbeat", str(HEARTBEAT), "--quiet", *tracking_args],
        cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    return proc


def _kill_one_mid_trial(study: optuna.Study, procs: list[subprocess.Popen], timeout: float = 300):
    """Wait until a worker is training a trial (its MLflow run exists, it has been running 2 s), then
    SIGKILL that worker. Returns (killed process, killed trial number)."""
    host = socket.gethostname()
    by_pid = {p.pid: p for p in procs}
    deadline = time.time() + timeout
    seen: dict[int, float] = {}
    while time.time() < deadline:
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            worker = t.user_attrs.get("worker", "")
            if "mlflow_run_id" not in t.user_attrs or not worker.startswith(f"{host}:"):
                continue
            pid = int(worker.rsplit(":", 1)[1])
            if pid not in by_pid:
                continue
            first = seen.setdefault(t.number, time.time())
            if time.time() - first >= 2 and study._storage.get_trial(t._trial_id).state == TrialState.RUNNING:
                os.kill(pid, signal.SIGKILL)
                by_pid[pid].wait(timeout=30)
                return by_pid[pid], t.number
        dead = [p for p in procs if p.poll() is not None]
        assert not dead, f"a worker exited before the kill: {[p.returncode for p in dead]}"
        time.sleep(0.5)
    raise AssertionError("no worker was seen training a trial")


def _wait_all(procs, tmp_path, timeout: float = 420) -> None:
    deadline = time.time() + timeout
    for i, p in enumerate(procs):
        try:
            p.wait(timeout=max(1, deadline - time.time()))
        except subprocess.TimeoutExpired:
            for q in procs:
                if q.poll() is None:
                    q.kill()
                    q.wait()
            logs = "\n".join(f.read_text()[-2000:] for f in sorted(tmp_path.glob("worker*.log")))
            raise AssertionError(f"workers did not finish in {timeout:.0f} s\n{logs}")


def _check_study_and_runs(study: optuna.Study, n_trials: int, killed_trial: int, killed_pid: int,
                          live_pids: set[int], tracking_uri: str, experiment: str) -> dict:
    """The assertions both storages share; returns the measured figures."""
    trials = study.get_trials(deepcopy=False)
    by_state = {s: [t for t in trials if t.state == s] for s in TrialState}
    complete, failed = by_state[TrialState.COMPLETE], by_state[TrialState.FAIL]
    # exactly the requested trials, nothing left running or queued, nothing pruned (pruner none)
    assert len(complete) == n_trials, [(t.number, t.state.name) for t in trials]
    assert not by_state[TrialState.RUNNING] and not by_state[TrialState.WAITING] and not by_state[TrialState.PRUNED]
    # the one failed trial is the killed worker's, failed by the heartbeat (no fail_reason of its own)
    assert [t.number for t in failed] == [killed_trial]
    dead = failed[0]
    assert dead.user_attrs["worker"].endswith(f":{killed_pid}") and "fail_reason" not in dead.user_attrs
    # ... and retried once, with the same params, by a live worker
    retries = [t for t in trials if t.system_attrs.get("failed_trial") == killed_trial]
    assert len(retries) == 1 and retries[0].state == TrialState.COMPLETE
    assert retries[0].params == dead.params
    assert int(retries[0].user_attrs["worker"].rsplit(":", 1)[1]) in live_pids
    # no duplicate: every completed trial has its own param set
    assert len({tuple(sorted(t.params.items())) for t in complete}) == n_trials
    assert {int(t.user_attrs["worker"].rsplit(":", 1)[1]) for t in complete} <= live_pids

    # MLflow: one study run; exactly one nested run per Optuna trial, with the trial's state
    studies, runs = trial_runs_by_number(tracking_uri, experiment)
    assert len(studies) == 1
    assert sorted(runs) == sorted(t.number for t in trials)
    assert all(len(r) == 1 for r in runs.values()), {n: len(r) for n, r in runs.items()}
    parent_id = studies[0].info.run_id
    for t in trials:
        run = runs[t.number][0]
        assert run.data.tags["mlflow.parentRunId"] == parent_id
        assert run.data.tags["optuna.state"] == t.state.name
        assert run.data.tags["worker"] == t.user_attrs["worker"]
        if t.state == TrialState.COMPLETE:
            assert run.info.status == "FINISHED"
            assert run.data.metrics["objective.quality"] == pytest.approx(t.value)
        else:
            assert run.info.status == "FAILED"
            assert "heartbeat" in run.data.tags["fail_reason"] and "retried" in run.data.tags["fail_reason"]
    assert runs[retries[0].number][0].data.tags["optuna.retry_of"] == str(killed_trial)
    return {"requested": n_trials, "trials": len(trials), "complete": len(complete), "failed": len(failed),
            "retried": len(retries), "lost": n_trials - len(complete), "mlflow_trial_runs": len(runs),
            "killed_trial": killed_trial, "retry": retries[0].number}


def _scale_out(tmp_path, env, *, n_workers, n_trials, storage, storage_args, tracking_uri, experiment, tracking_args):
    study_name = "scale"
    t0 = time.time()
    _create_study(tmp_path, env, study_name, storage_args, tracking_args)
    procs = [_start_worker(tmp_path, env, i, study_name, storage, n_trials, tracking_args) for i in range(n_workers)]
    try:
        study = optuna.load_study(study_name=study_name, storage=_abs_storage(storage, tmp_path))
        killed, killed_trial = _kill_one_mid_trial(study, procs)
        t_kill = time.time() - t0
        live = [p for p in procs if p is not killed]
        _wait_all(live, tmp_path)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    logs = {p.pid: (tmp_path / f"worker{procs.index(p)}.log").read_text() for p in procs}
    assert killed.returncode == -signal.SIGKILL
    for p in live:
        assert p.returncode == 0, logs[p.pid][-3000:]
        assert "Traceback" not in logs[p.pid], logs[p.pid][-3000:]
    study = optuna.load_study(study_name=study_name, storage=_abs_storage(storage, tmp_path))
    figures = _check_study_and_runs(study, n_trials, killed_trial, killed.pid, {p.pid for p in live},
                                    tracking_uri, experiment)
    figures.update(workers=n_workers, killed=1, seconds=round(time.time() - t0), kill_at_s=round(t_kill))
    print(f"\nscale-out figures: {figures}")
    return figures


def _abs_storage(storage: str, cwd: Path) -> str:
    """The workers' relative ``sqlite:///runs/optuna.db`` seen from the test's own directory."""
    if storage.startswith("sqlite:///") and not storage.startswith("sqlite:////"):
        return f"sqlite:///{cwd / storage[len('sqlite:///'):]}"
    return storage


def test_three_workers_on_postgresql_survive_a_killed_worker(tmp_path, cli_env, postgres):
    """3 workers, PostgreSQL study storage, MLflow server on PostgreSQL too; one worker SIGKILLed."""
    server = start_mlflow_server(postgres.url("mlflow"), tmp_path / "mlartifacts", tmp_path / "mlflow.log")
    try:
        storage = postgres.url("optuna")
        tracking = ["--tracking-uri", server.url, "--experiment", "scale-pg"]
        _scale_out(tmp_path, cli_env, n_workers=3, n_trials=4, storage=storage, storage_args=["--storage", storage],
                   tracking_uri=server.url, experiment="scale-pg", tracking_args=tracking)
    finally:
        server.stop()


def test_two_local_workers_on_the_default_sqlite_storage(tmp_path, cli_env):
    """2 workers on one machine with the defaults: sqlite:///runs/optuna.db and the local MLflow store
    (sqlite:///runs/mlflow.db); one worker SIGKILLed mid-trial. With 2 trials requested, the survivor
    typically finds the target covered by its own trial plus the dead one and waits for the heartbeat to
    fail it (the waiting path), then runs the retry."""
    _scale_out(tmp_path, cli_env, n_workers=2, n_trials=2, storage="sqlite:///runs/optuna.db", storage_args=[],
               tracking_uri=f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}", experiment="ecg-automl",
               tracking_args=[])


def test_a_worker_uses_the_pruner_the_study_was_created_with(tmp_path):
    """The pruner is stored with the study, so workers started without --pruner prune alike."""
    from search import open_study
    from test_search import tiny_settings

    storage = f"sqlite:///{tmp_path / 'o.db'}"
    study, _ = open_study("p", storage, tiny_settings(tmp_path), pruner="none")
    assert isinstance(study.pruner, optuna.pruners.NopPruner)
    worker, _ = open_study("p", storage, None)  # a worker: no settings, no --pruner
    assert isinstance(worker.pruner, optuna.pruners.NopPruner)
    explicit, _ = open_study("p", storage, None, pruner="median")
    assert isinstance(explicit.pruner, optuna.pruners.MedianPruner)
    default, _ = open_study("q", storage, tiny_settings(tmp_path))
    assert isinstance(default.pruner, optuna.pruners.MedianPruner) and default.user_attrs["pruner"] == "median"


def test_wrong_postgresql_password_is_one_line_without_the_password(tmp_path, cli_env, postgres):
    wrong = postgres.url("optuna").replace(f":{postgres.password}@", ":not-the-password@")
    proc = run_cli(["search", "--study", "x", "--storage", wrong, "--no-mlflow"], tmp_path, cli_env, check=False)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert f"cannot open study storage postgresql://ecg:***@127.0.0.1:{postgres.port}/optuna" in proc.stderr
    assert "password authentication failed" in proc.stderr
    assert "not-the-password" not in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "runs").exists()


def test_worker_needs_an_existing_study(tmp_path, cli_env, postgres):
    """A worker joins, it does not create: an unknown study name is an error, not a new study."""
    proc = run_cli(["worker", "--study", "nosuch", "--storage", postgres.url("optuna"), "--trials", 1, "--no-mlflow"],
                   tmp_path, cli_env, check=False, timeout=300)
    assert proc.returncode == 2 and "no study named 'nosuch'" in proc.stderr, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr


@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used with Study.optimize")
def test_workers_started_together_draw_different_configs(tmp_path):
    """Workers that join a study at the same moment see the same (empty) history; each gets its own
    sampler seed, so their first "random" start-up configs differ (no duplicate work)."""
    from search import open_study
    from spaces import SearchSpace
    from test_search import tiny_settings

    storage = f"sqlite:///{tmp_path / 'o.db'}"
    settings = tiny_settings(tmp_path)
    open_study("w", storage, settings, pruner="none")
    space = SearchSpace.from_yaml(settings.space_yaml)
    configs = []
    for _ in range(3):
        worker, _ = open_study("w", storage, None)
        configs.append(space.suggest(worker.ask()))
    assert len({c["learning_rate"] for c in configs}) == 3


def test_a_worker_stopped_while_waiting_says_it_ran_no_trial(tmp_path, cli_env):
    """SIGTERM to a worker that waits for another worker's trial said 'the running trial is marked failed
    and will be redone': it had no trial, and the other worker's trial was untouched."""
    storage = f"sqlite:///{tmp_path / 'o.db'}"
    _create_study(tmp_path, cli_env, "wait", ["--storage", storage], ["--no-mlflow"])
    elsewhere = optuna.load_study(study_name="wait", storage=storage).ask()  # RUNNING, as if in another worker
    log = tmp_path / "worker.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "ecg_automl", "worker", "--study", "wait", "--storage", storage,
                                 "--trials", "1", "--quiet", "--no-mlflow"], cwd=tmp_path, env=cli_env, stdout=out,
                                stderr=subprocess.STDOUT)
    deadline = time.time() + 120
    while "waiting for trial(s) 0" not in log.read_text() and time.time() < deadline:
        assert proc.poll() is None, log.read_text()
        time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 143
    text = log.read_text()
    assert "interrupted while no trial of this process was running" in text and "marked failed" not in text
    assert optuna.load_study(study_name="wait", storage=storage).trials[elsewhere.number].state == TrialState.RUNNING
