"""The Python API as a notebook uses it: what each package re-exports, and one-line errors for arguments of the
wrong type (they were deep tracebacks, or silently read otherwise)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest


def test_fit_result_the_type_fit_returns_is_re_exported():
    """``search.fit`` returns a FitResult (so do ``fit_final`` and ``FoldEnsemble.fits``): a user annotating
    their own code had to import it from the private-looking ``search.training``."""
    import search
    from search.training import FitResult

    assert "FitResult" in search.__all__ and search.FitResult is FitResult


def test_predict_and_export_functions_are_re_exported_without_slowing_the_package_import(cli_env):
    """``predict_record``, ``predict_csv`` (with their ``Prediction``) and ``export_trial`` are the Python side of
    ``ecg-automl predict`` and ``export``: importable from ``ecg_automl.tflite``, but only loaded (wfdb, scipy) when
    first used, so ``TFLiteModel`` and the bench-server start as fast as before."""
    import ecg_automl.tflite as tfl
    from ecg_automl.tflite.export import export_trial
    from ecg_automl.tflite.predict import Prediction, format_prediction, predict_csv, predict_record

    for name, obj in {"predict_record": predict_record, "predict_csv": predict_csv, "Prediction": Prediction,
                      "format_prediction": format_prediction, "export_trial": export_trial}.items():
        assert name in tfl.__all__ and getattr(tfl, name) is obj and name in dir(tfl)
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        tfl.nope  # noqa: B018
    code = ("import sys; import ecg_automl.tflite; "
            "print(sorted(m for m in ('wfdb', 'scipy', 'ecg_data', 'tensorflow') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], env=cli_env, capture_output=True, text=True, timeout=120)
    assert proc.stdout.strip() == "[]", proc.stderr[-2000:]
