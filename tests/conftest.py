"""Shared fixtures: the real data root ($ECG_AUTOML_DATA; else ../shared/data, this repository's workplace copy;
else the download cache ``ecg-automl data fetch`` fills), a per-session array cache, and a small real MIT-BIH
subset that keeps tests to a few seconds each. MIT-BIH is required; tests that read PTB-XL or CinC-2021 records
skip, naming what is missing, where the root lacks them (a user's cache that holds only what they fetched)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]


def _data_root() -> Path:
    """$ECG_AUTOML_DATA, else the workplace copy beside the repository when it holds MIT-BIH, else the data root the
    toolkit itself downloads into (``ecg_data.data_root()``: ``~/.cache/ecg-automl/data``), so that a user who ran
    the README's first command without ECG_AUTOML_DATA can run the tests on what it downloaded."""
    if os.environ.get("ECG_AUTOML_DATA"):
        return Path(os.environ["ECG_AUTOML_DATA"]).expanduser().resolve()
    shared = ROOT.parent / "shared" / "data"
    if (shared / "mitdb" / "RECORDS").exists():
        return shared.resolve()
    from ecg_data import data_root

    return data_root()


DATA = _data_root()

#: A few real patients of each side: DS1 106/119/208/223/101 (V, S and F beats), DS2 100/200/213.
SMALL_RECORDS = ["101", "106", "119", "208", "223", "100", "200", "213"]


@pytest.fixture(scope="session", autouse=True)
def _env(tmp_path_factory):
    if not (DATA / "mitdb" / "RECORDS").exists():
        pytest.exit(f"real MIT-BIH data not found under {DATA}: set ECG_AUTOML_DATA to a folder that holds mitdb/, "
                    f"or download it there with `ecg-automl data fetch mitdb` (about 100 MB)", returncode=2)
    os.environ["ECG_AUTOML_DATA"] = str(DATA)
    os.environ["ECG_AUTOML_CACHE"] = str(tmp_path_factory.mktemp("arrays"))
    os.environ["MLFLOW_TRACKING_URI"] = ""
    os.environ.pop("MLFLOW_TRACKING_URI")
    yield


@pytest.fixture(scope="session")
def data_root() -> Path:
    return DATA


@pytest.fixture(scope="session")
def ptbxl_root(data_root) -> Path:
    """The data root, for a test that reads PTB-XL records from it; skipped, saying so, when it holds no PTB-XL."""
    if not (data_root / "ptbxl" / "ptbxl_database.csv").exists():
        pytest.skip(f"no PTB-XL under {data_root} (ecg-automl data fetch ptbxl)")
    return data_root


@pytest.fixture(scope="session")
def cinc_root(data_root) -> Path:
    """The data root, for a test that reads the CinC-2021 12-lead sample (``cinc2021_sample/E07500``, WFDB in .mat
    files); skipped, saying so, when it is not there."""
    if not (data_root / "cinc2021_sample" / "E07500.hea").exists():
        pytest.skip(f"no CinC-2021 sample (cinc2021_sample/E07500) under {data_root}")
    return data_root


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
