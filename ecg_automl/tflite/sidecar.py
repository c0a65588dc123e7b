"""The JSON sidecar written next to every exported ``.tflite``: everything ``predict`` needs to prepare a
window the way the model was trained (rate, window, detection lead and the leads of a window, filter, RR
context), plus what the model means, and the SHA-256 of the model it belongs to (``sha256``), so that a
sidecar left beside another model (a copy, a re-export that stopped half-way) is refused, not obeyed."""

from __future__ import annotations

import hashlib
import json
import os
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


def model_sha256(model_bytes: bytes) -> str:
    """The hex SHA-256 of a model's flatbuffer: what ties a sidecar to its ``.tflite``."""
    return hashlib.sha256(model_bytes).hexdigest()


def write_sidecar(model_path: str | Path, meta: dict[str, Any]) -> Path:
    """Write the sidecar of the ``.tflite`` at ``model_path`` (which must exist: its SHA-256 goes in)."""
    path = sidecar_path(model_path)
    sha = model_sha256(Path(model_path).read_bytes())
    path.write_text(json.dumps({"format": FORMAT, **meta, "sha256": sha}, indent=2, default=float))
    return path


def write_model(model_path: str | Path, model_bytes: bytes, meta: dict[str, Any]) -> bool:
    """Write a ``.tflite`` and its sidecar together, each through a temporary file renamed into place, so
    that a run stopped before this point leaves an earlier export whole. Returns whether an earlier model
    was replaced."""
    out = Path(model_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    replaced = out.exists()
    tmp = out.with_name(f".{out.name}.partial")
    tmp.write_bytes(model_bytes)
    side_tmp = write_sidecar(tmp, meta)  # .{name}.json beside the temporary model, same SHA-256
    os.replace(side_tmp, sidecar_path(out))
    os.replace(tmp, out)
    return replaced
