"""TFLite export of the Conv1D + LSTM beat classifier, TensorFlow-free prediction and latency.

``convert`` (needs TensorFlow, imported on call) builds an export twin with fused LSTMs and returns the
flatbuffer for one of ``MODES``; ``TFLiteModel`` and ``measure_latency`` only need ``ai-edge-litert``.
"""

from .convert import (INT8_FLOAT_OPS, MODES, TFLiteError, TFLiteInputError, build_export_model, convert,
                      op_list)
from .latency import measure_latency, time_invocations
from .runtime import TFLiteModel

__all__ = ["INT8_FLOAT_OPS", "MODES", "TFLiteError", "TFLiteInputError", "TFLiteModel", "build_export_model",
           "convert", "measure_latency", "op_list", "time_invocations"]
