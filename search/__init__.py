"""The Optuna search driver (and KerasTuner as a second engine) with MLflow tracking."""

import os as _os

# TensorFlow's oneDNN kernels give other floats: trained as the CLI trains, a notebook repeats a CLI study's values
# (docs/REPRODUCIBILITY.md); it takes effect only if TensorFlow has not loaded yet, and a value the user set wins.
_os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

from .delete import StudyDeletion, delete_study, plan_deletion, study_to_delete
from .final import FINAL_MODELS, FoldEnsemble, final_model_problem, final_test, fit_final, fit_fold_models
from .folders import OutputError, why_no_folder, why_not_writable
from .keras_tuner_engine import run_keras_tuner
from .listing import format_summaries, study_summaries
from .metrics import (METRICS, best_threshold, binary_metrics, cv_objective, describe_final_model, format_report,
                      full_report)
from .objective import CVObjective
from .pareto import pareto_table
from .pruners import make_pruner
from .samplers import make_sampler
from .settings import StudySettings
from .storage import DEFAULT_STORAGE, StorageError, fail_stale_trials, make_storage, redact_url, storage_option
from .study import (MAX_FAILURES_IN_A_ROW, SearchResult, StudyMismatchError, TrialsKeepFailingError, latency_gates,
                    load_study_data, open_study, run_final, run_search, run_trials)
from .tracking import Tracker, TrackingConfig, TrackingError
from .training import FitResult, TrainingDiverged, fit, predict, set_threads, tf_threads

__all__ = [
    "best_threshold", "binary_metrics", "cv_objective", "CVObjective", "DEFAULT_STORAGE", "delete_study",
    "describe_final_model", "fail_stale_trials", "final_model_problem", "FINAL_MODELS", "final_test", "fit",
    "fit_final", "fit_fold_models", "FitResult", "FoldEnsemble", "format_report", "format_summaries", "full_report",
    "latency_gates", "load_study_data", "make_pruner", "make_sampler", "make_storage", "MAX_FAILURES_IN_A_ROW",
    "METRICS", "open_study", "OutputError", "pareto_table", "plan_deletion", "predict", "redact_url", "run_final",
    "run_keras_tuner", "run_search", "run_trials", "SearchResult", "set_threads", "storage_option", "StorageError",
    "study_summaries", "study_to_delete", "StudyDeletion", "StudyMismatchError", "StudySettings", "tf_threads",
    "Tracker", "TrackingConfig", "TrackingError", "TrainingDiverged", "TrialsKeepFailingError", "why_no_folder",
    "why_not_writable",
]
