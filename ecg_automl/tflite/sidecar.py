"""The JSON sidecar written next to every exported ``.tflite``: everything ``predict`` needs to prepare a
window the way the model was trained (rate, window, detection lead and the leads of a window, filter -- null
when ecg-automl filtered none of the training windows, with ``filter_note`` saying why --, RR context), plus
what the model means, and the SHA-256 of the model it belongs to (``sha256``), so that a sidecar left beside
another model (a copy, a re-export that stopped half-way) is refused, not obeyed."""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any, Callable

FORMAT = "ecg-automl/tflite-1"
#: How every beat window is scaled (``ecg_data.preprocess.normalise``), as the sidecar says it.
NORMALISATION = "per-window z-score"
REQUIRED = ("fs", "window", "input_length", "rr_features", "threshold", "lead")
#: The keys that say how a window is prepared for the model: written twice, the second time under ``prepared_as``,
#: so that a hand edit of one (fs 180 -> 360 flagged 187 of 2,271 beats abnormal instead of 3) is said, not
#: obeyed silently. ``threshold`` is not one: choosing another is a user's call.
PREPARATION = ("fs", "window", "input_length", "rr_features", "lead", "leads", "channels", "filter", "normalisation")


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
    try:  # utf-8-sig: a sidecar an editor saved with a byte-order mark (Windows Notepad) reads as the same JSON
        meta = json.loads(path.read_text(encoding="utf-8-sig"))
    except UnicodeDecodeError as exc:  # was a traceback
        raise TFLiteError(f"{path}: not a UTF-8 text file, so not a sidecar `ecg-automl export` wrote ({exc.reason} "
                          f"at byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise TFLiteError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(meta, dict):
        raise TFLiteError(f"{path}: not a JSON object of the model's settings")
    if "format" in meta and meta["format"] != FORMAT:  # a later version's sidecar may mean its keys otherwise
        raise TFLiteError(f"{path}: format {json.dumps(meta['format'])}, but this ecg-automl reads {FORMAT}: the model "
                          f"was exported by another version; predict with that one, or export the model again")
    missing = [k for k in REQUIRED if k not in meta]
    if missing:
        raise TFLiteError(f"{path}: missing {', '.join(missing)}")
    _check_pipeline(path, meta)
    for key, (ok, expected) in _checks(meta).items():
        if key in meta and not ok(meta[key]):
            raise TFLiteError(f"{path}: {key} is {json.dumps(meta[key])}, expected {expected}")
    return meta


def _check_pipeline(path: Path, meta: dict[str, Any]) -> None:
    """Refuse a model whose beats were prepared otherwise than this version prepares them: its ``pipeline_version``
    (written since it is; an older sidecar has none and is not judged) or a normalisation other than the z-score.
    Predict would feed it windows or RR features unlike its training's, and its decisions would be wrong silently."""
    from ecg_data import PIPELINE_VERSION

    from .convert import TFLiteError

    version = meta.get("pipeline_version")
    if version is not None and version != PIPELINE_VERSION:
        raise TFLiteError(f"{path}: the model was trained on beats prepared by pipeline version {version}, but this "
                          f"ecg-automl prepares them by version {PIPELINE_VERSION} (ecg_data.PIPELINE_VERSION): predict "
                          f"with the version that exported it, or export the model again with this one")
    norm = meta.get("normalisation")
    if norm is not None and norm != NORMALISATION:
        raise TFLiteError(f"{path}: normalisation is {json.dumps(norm)}, but this ecg-automl prepares beats by "
                          f"{json.dumps(NORMALISATION)} only")


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _integer(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _checks(meta: dict[str, Any]) -> dict[str, tuple[Callable[[Any], bool], str]]:
    """What each key predict reads must hold (a hand-edited sidecar gave tracebacks), in the order checked; the
    optional ones only when present."""
    from ..argtypes import FS_HIGH, FS_LOW

    window = meta.get("window")
    return {
        "fs": (lambda v: _number(v) and FS_LOW <= v <= FS_HIGH, f"a sampling rate in Hz in [{FS_LOW}, {FS_HIGH}]"),
        "window": (lambda v: _integer(v) and v >= 16, "an integer >= 16 (samples per window)"),
        "input_length": (lambda v: _integer(v) and 1 <= v <= window, f"an integer from 1 to window ({window})"),
        "rr_features": (lambda v: isinstance(v, bool), "true or false"),
        "threshold": (lambda v: _number(v) and 0 <= v <= 1, "a probability from 0 to 1"),
        "lead": (lambda v: isinstance(v, str) and v != "", "a lead name, e.g. \"MLII\""),
        "channels": (lambda v: _integer(v) and v >= 1, "an integer >= 1"),
        "leads": (lambda v: v is None or isinstance(v, list) and all(isinstance(x, str) for x in v),
                  "a list of lead names, or null"),
        # null: the training windows were not filtered by ecg-automl (heartbeat-CSV rows); predict band-passes a
        # record 0.5-40 Hz all the same, and says so
        "filter": (lambda v: v is None or isinstance(v, dict) and all(_number(v.get(k, 1)) for k in ("low", "high"))
                   and 0 < v.get("low", 0.5) < v.get("high", 40.0),
                   "{\"low\": HZ, \"high\": HZ} with 0 < low < high, or null (no filter in training)"),
    }


def model_sha256(model_bytes: bytes) -> str:
    """The hex SHA-256 of a model's flatbuffer: what ties a sidecar to its ``.tflite``."""
    return hashlib.sha256(model_bytes).hexdigest()


def write_sidecar(model_path: str | Path, meta: dict[str, Any]) -> Path:
    """Write the sidecar of the ``.tflite`` at ``model_path`` (which must exist: its SHA-256 goes in)."""
    path = sidecar_path(model_path)
    sha = model_sha256(Path(model_path).read_bytes())
    prepared = {k: meta[k] for k in PREPARATION if k in meta}
    from ecg_data import PIPELINE_VERSION

    path.write_text(json.dumps({"format": FORMAT, "pipeline_version": PIPELINE_VERSION, **meta,
                                "prepared_as": prepared, "sha256": sha}, indent=2, default=float))
    return path


def edited_preparation(meta: dict[str, Any]) -> list[str]:
    """The preparation keys whose value differs from the one export wrote (``prepared_as``), as ``key value (export
    wrote value)``; none for a sidecar written before ``prepared_as`` existed."""
    wrote = meta.get("prepared_as")
    if not isinstance(wrote, dict):
        return []
    return [f"{k} {json.dumps(meta.get(k))} (export wrote {json.dumps(wrote.get(k))})" for k in PREPARATION
            if (k in meta or k in wrote) and meta.get(k) != wrote.get(k)]


def write_model(model_path: str | Path, model_bytes: bytes, meta: dict[str, Any]) -> bool:
    """Write a ``.tflite`` and its sidecar together, each through a temporary file renamed into place, so
    that a run stopped before this point, or a write that fails (a full disk), leaves an earlier export whole and no
    temporary file. Returns whether an earlier model was replaced."""
    out = Path(model_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    replaced = out.exists()
    tmp = out.with_name(f".{out.name}.partial")
    side_tmp = sidecar_path(tmp)  # .{name}.json beside the temporary model, same SHA-256
    try:
        tmp.write_bytes(model_bytes)
        write_sidecar(tmp, meta)
        os.replace(side_tmp, sidecar_path(out))
        os.replace(tmp, out)
    except BaseException:  # a full disk, Ctrl-C: no hidden half-written file left behind
        for left in (tmp, side_tmp):
            with contextlib.suppress(OSError):
                left.unlink(missing_ok=True)
        raise
    return replaced
