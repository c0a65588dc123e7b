"""Shared fixtures: the real data root (../shared/data unless $ECG_AUTOML_DATA says otherwise), a
per-session array cache, and a small real MIT-BIH subset that keeps tests to a few seconds each."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("ECG_AUTOML_DATA") or ROOT.parent / "shared" / "data").resolve()

#: A few real patients of each side: DS1 106/119/208/223/101 (V, S and F beats), DS2 100/200/213.
SMALL_RECORDS = ["101", "106", "119", "208", "223", "100", "200", "213"]


@pytest.fixture(scope="session", autouse=True)
def _env(tmp_path_factory):
    if not (DATA / "mitdb" / "RECORDS").exists():
        pytest.exit(f"real MIT-BIH data not found under {DATA}; set ECG_AUTOML_DATA", returncode=2)
    os.environ["ECG_AUTOML_DATA"] = str(DATA)
    os.environ["ECG_AUTOML_CACHE"] = str(tmp_path_factory.mktemp("arrays"))
    os.environ["MLFLOW_TRACKING_URI"] = ""
    os.environ.pop("MLFLOW_TRACKING_URI")
    yield


@pytest.fixture(scope="session")
def data_root() -> Path:
    return DATA


@pytest.fixture(scope="session")
def small_mitdb():
    """Real MIT-BIH beats of a few patients per side (cached for the session)."""
    from ecg_data import load_dataset

    return load_dataset("mitdb", records=SMALL_RECORDS, window=256)


@pytest.fixture
def cli_env(tmp_path):
    """Environment for running the CLI in a subprocess inside ``tmp_path``."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


def run_cli(args, cwd, env, timeout=600, check=True):
    """Run ``python -m ecg_automl ARGS`` and return the CompletedProcess."""
    import subprocess

    proc = subprocess.run([sys.executable, "-m", "ecg_automl", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\nstdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-5000:]}")
    return proc
