"""The JSON sidecar written next to every exported ``.tflite``: everything ``predict`` needs to prepare a
window the way the model was trained (rate, window, detection lead and the leads of a window, filter, RR
context), plus what the model means."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

FORMAT = "ecg-automl/tflite-1"
REQUIRED = ("fs", "window", "input_length", "rr_features", "threshold", "lead")


def sidecar_path(model_path: str | Path) -> Path:
    """``model.tflite`` -> ``model.json``."""
    return Path(model_path).with_suffix(".json")


def read_sidecar(model_path: str | Path) -> dict[str, Any]:
    """Read and check the sidecar of ``model_path``; a missing or incomplete one is a clear error."""
    from .convert import TFLiteError

    if not Path(model_path).exists():
        raise TFLiteError(f"{model_path}: no such model file")
    path = sidecar_path(model_path)
    if not path.exists():
        raise TFLiteError(f"{path}: sidecar not found; it is written by `ecg-automl export` next to the .tflite")
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise TFLiteError(f"{path}: not valid JSON ({exc})") from None
    missing = [k for k in REQUIRED if k not in meta]
    if missing:
        raise TFLiteError(f"{path}: missing {', '.join(missing)}")
    return meta


def write_sidecar(model_path: str | Path, meta: dict[str, Any]) -> Path:
    path = sidecar_path(model_path)
    path.write_text(json.dumps({"format": FORMAT, **meta}, indent=2, default=float))
    return path
