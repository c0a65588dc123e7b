"""The versions that decide results: Python and the libraries a study, an export or a prediction depends on.

``ecg-automl --version`` prints them and every benchmark result file records them. They are read from the installed
packages' metadata, so nothing is imported (TensorFlow alone takes seconds).
"""

from __future__ import annotations

import platform

#: Each library's name in the record, and the distributions that provide it (the first one installed counts):
#: the search extra installs TensorFlow as tensorflow-cpu on x86_64 and as tensorflow elsewhere.
_LIBRARIES = {"tensorflow": ("tensorflow-cpu", "tensorflow"), "keras": ("keras",), "ai-edge-litert": ("ai-edge-litert",),
              "optuna": ("optuna",), "mlflow": ("mlflow",), "keras-tuner": ("keras-tuner",),
              "scikit-learn": ("scikit-learn",), "wfdb": ("wfdb",), "scipy": ("scipy",), "numpy": ("numpy",)}


def _installed(*distributions: str) -> str | None:
    from importlib import metadata  # here, not at the top: `import ecg_automl` starts every command (20 ms)

    for name in distributions:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def versions() -> dict[str, str | None]:
    """Python's version and each library's installed version (None where it is not installed, as TensorFlow on the
    base install)."""
    return {"python": platform.python_version(),
            **{label: _installed(*names) for label, names in _LIBRARIES.items()}}
