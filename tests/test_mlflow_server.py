"""A real MLflow tracking server on loopback: a small study's runs, params and metrics are there,
checked through the server's REST API (not through our own client code)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import optuna
import pytest
import requests
from conftest import SMALL_RECORDS, run_cli
from test_search import tiny_space_file


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def mlflow_server(tmp_path):
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
         "--artifacts-destination", (tmp_path / "server-artifacts").as_uri()],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            if requests.get(f"{url}/health", timeout=2).ok:
                break
        except requests.ConnectionError:
            time.sleep(1)
        if proc.poll() is not None:
            raise RuntimeError(f"mlflow server exited: {proc.stdout.read()[-3000:]}")
    else:
        proc.kill()
        raise RuntimeError("mlflow server did not start in 120 s")
    yield url
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


def test_study_is_browsable_on_a_tracking_server(tmp_path, cli_env, mlflow_server):
    storage = f"sqlite:///{tmp_path / 'o.db'}"
    run_cli(["search", "--dataset", "mitdb", "--space", tiny_space_file(tmp_path), "--trials", 2, "--folds", 2,
             "--max-beats", 600, "--records", ",".join(SMALL_RECORDS), "--study", "served", "--no-final",
             "--storage", storage, "--tracking-uri", mlflow_server, "--experiment", "served-exp"],
            tmp_path, cli_env)
    api = f"{mlflow_server}/api/2.0/mlflow"
    exp = requests.get(f"{api}/experiments/get-by-name", params={"experiment_name": "served-exp"}, timeout=10).json()
    exp_id = exp["experiment"]["experiment_id"]
    runs = requests.post(f"{api}/runs/search", json={"experiment_ids": [exp_id], "max_results": 100}, timeout=10).json()["runs"]
    tags = lambda r: {t["key"]: t["value"] for t in r["data"].get("tags", [])}  # noqa: E731
    parents = [r for r in runs if tags(r).get("ecg_automl.kind") == "study"]
    trials = [r for r in runs if tags(r).get("ecg_automl.kind") == "trial"]
    assert len(parents) == 1 and len(trials) == 2
    study = optuna.load_study(study_name="served", storage=storage)
    by_number = {int(tags(r)["optuna.trial_number"]): r for r in trials}
    assert sorted(by_number) == [t.number for t in study.trials]
    for t in study.trials:
        run = by_number[t.number]
        assert tags(run)["mlflow.parentRunId"] == parents[0]["info"]["run_id"]
        params = {p["key"]: p["value"] for p in run["data"]["params"]}
        metrics = {m["key"]: m["value"] for m in run["data"]["metrics"]}
        assert int(params["input_length"]) == t.params["input_length"]
        assert metrics["objective.quality"] == pytest.approx(t.value)
        assert run["info"]["status"] == "FINISHED"
    arts = requests.get(f"{api}/artifacts/list", params={"run_id": trials[0]["info"]["run_id"]}, timeout=10).json()
    assert {"confusion_matrix.png", "roc.png", "model"} <= {f["path"] for f in arts["files"]}


def test_unreachable_tracking_server_fails_before_training(tmp_path, cli_env):
    port = _free_port()  # nothing listens there
    proc = run_cli(["search", "--dataset", "mitdb", "--space", tiny_space_file(tmp_path), "--trials", 1,
                    "--folds", 2, "--records", ",".join(SMALL_RECORDS), "--study", "nope",
                    "--storage", f"sqlite:///{tmp_path / 'o.db'}", "--tracking-uri", f"http://127.0.0.1:{port}"],
                   tmp_path, cli_env, check=False, timeout=300)
    assert proc.returncode == 2
    assert f"cannot reach the MLflow tracking store at http://127.0.0.1:{port}" in proc.stderr
    assert not (tmp_path / "o.db").exists()  # nothing started: no study was created
