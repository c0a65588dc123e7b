"""TFLite export of the Conv1D + LSTM beat classifier, TensorFlow-free prediction and latency.

``convert`` (needs TensorFlow, imported on call) builds an export twin with fused LSTMs and returns the
flatbuffer for one of ``MODES``; ``export_trial`` exports a study's trial, and ``export_model`` any trained model,
with the ``.json`` sidecar that ``predict_record`` and ``predict_csv`` read; ``TFLiteModel``, ``measure_latency``
and the predict functions only need ``ai-edge-litert`` (with numpy, scipy and wfdb).
"""

from typing import Any

from .convert import (INT8_FLOAT_OPS, MODES, ExportFlagged, LatencyTargetError, TFLiteError, TFLiteInputError,
                      build_export_model, convert, op_list)
from .latency import measure_latency, time_invocations
from .runtime import TFLiteModel

#: Re-exported names imported on first use: the predict module reads records with wfdb and scipy (about 1.7 s to
#: import here), which ``bench-server``, ``convert`` and ``TFLiteModel`` alone do not need.
_LAZY = {"Prediction": ".predict", "format_prediction": ".predict", "predict_csv": ".predict",
         "predict_record": ".predict", "export_model": ".export", "export_trial": ".export",
         "LatencyGate": ".gate", "check_target": ".bench_server", "CalibrationError": ".pi_estimate",
         "estimate_pi4_ms": ".pi_estimate", "read_sidecar": ".sidecar"}

__all__ = [
    "build_export_model", "CalibrationError", "check_target", "convert", "estimate_pi4_ms", "export_model",
    "export_trial", "ExportFlagged", "format_prediction", "INT8_FLOAT_OPS", "LatencyGate", "LatencyTargetError", "measure_latency",
    "MODES", "op_list", "predict_csv", "predict_record", "Prediction", "read_sidecar", "TFLiteError",
    "TFLiteInputError", "TFLiteModel", "time_invocations",
]


def __getattr__(name: str) -> Any:
    """The lazily imported names of :data:`_LAZY` (PEP 562)."""
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    """The module's names, the lazy ones included (for tab completion in a notebook)."""
    return sorted({*globals(), *_LAZY})
