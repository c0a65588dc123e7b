"""The Optuna search driver (and KerasTuner as a second engine) with MLflow tracking."""

import os as _os

# TensorFlow's oneDNN kernels give other floats: trained as the CLI trains, a notebook repeats a CLI study's values
# (docs/REPRODUCIBILITY.md); it takes effect only if TensorFlow has not loaded yet, and a value the user set wins.
_os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

from ._folders import OutputError
from .final import FINAL_MODELS, FoldEnsemble, final_test, fit_final, fit_fold_models
from .metrics import (METRICS, best_threshold, binary_metrics, cv_objective, describe_final_model, format_report,
                      full_report)
from .objective import CVObjective
from .settings import StudySettings
from .storage import DEFAULT_STORAGE, StorageError, make_storage, redact_url
from .study import (MAX_FAILURES_IN_A_ROW, SearchResult, StudyMismatchError, TrialsKeepFailingError, make_pruner,
                    open_study, run_final, run_search, run_trials)
from .tracking import Tracker, TrackingConfig, TrackingError
from .training import FitResult, TrainingDiverged, fit, predict, set_threads, tf_threads

__all__ = [
    "CVObjective", "DEFAULT_STORAGE", "MAX_FAILURES_IN_A_ROW", "FINAL_MODELS", "FitResult", "FoldEnsemble", "METRICS", "OutputError", "SearchResult", "StorageError", "StudyMismatchError", "StudySettings",
    "Tracker", "TrackingConfig", "TrackingError", "TrainingDiverged", "TrialsKeepFailingError", "best_threshold", "binary_metrics", "cv_objective",
    "describe_final_model", "final_test", "fit", "fit_final", "fit_fold_models", "format_report", "full_report", "make_pruner", "make_storage", "open_study", "predict",
    "redact_url", "run_final", "run_search", "run_trials", "set_threads", "tf_threads",
]
