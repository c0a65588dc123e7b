"""ecg-automl: search ECG classifiers that are accurate on unseen patients and fast on a Raspberry Pi.

The packages: ``ecg_data`` (PhysioNet data, patient-grouped splits), ``spaces`` (search spaces and the
model builder), ``search`` (Optuna driver, KerasTuner engine, MLflow tracking) and
``ecg_automl.tflite`` (export, verification, latency, TensorFlow-free prediction).
"""

__version__ = "0.1.0"

from ._versions import git_source, versions  # noqa: E402  (needs nothing heavy: package metadata only)

__all__ = ["__version__", "git_source", "versions"]
