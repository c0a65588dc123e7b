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


def git_source() -> dict[str, object] | None:
    """The git commit of the ecg-automl code that runs, and whether its tracked files have uncommitted changes
    (``{"commit": ..., "dirty": ...}``), when it runs from a git checkout (an editable install: what the README
    installs); None otherwise (a wheel in site-packages, or no git). A version number alone does not say which
    code of a checkout made a study's results."""
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    pyproject = root / "pyproject.toml"
    try:  # the checkout must be ecg-automl's own: a wheel in a venv inside another git repo is not that repo's code
        if 'name = "ecg-automl"' not in pyproject.read_text(encoding="utf-8", errors="replace"):
            return None
        git = ["git", "--no-optional-locks", "-C", str(root)]  # status takes no index.lock a user's git may need

        def run(*args: str) -> str:
            return subprocess.run([*git, *args], capture_output=True, text=True, timeout=10, check=True).stdout.strip()

        if Path(run("rev-parse", "--show-toplevel")).resolve() != root:
            return None
        return {"commit": run("rev-parse", "HEAD"),
                "dirty": bool(run("status", "--porcelain", "--untracked-files=no"))}
    except (OSError, subprocess.SubprocessError):
        return None
