"""Keras -> TFLite export of the residual-Conv1D + LSTM classifier (``spaces.model.build_model``).

Which path, and why (measured with tensorflow-cpu 2.21.0, keras 3.15.1, ai-edge-litert 2.3.0 on real
MIT-BIH beats; see the test module for the bounds):

* ``TFLiteConverter.from_keras_model`` on a Keras 3 ``LSTM`` fails (``'tf.TensorListReserve' op requires
  element_shape to be static``). With a fixed batch it converts to a ``WHILE`` loop: correct in fp32 but
  3x slower than the fused op for a 2-layer bidirectional LSTM, and its int8 conversion crashed the process
  (segmentation fault). ``unroll=True`` converts to plain ops, but the graph grows with the sequence
  (64 steps: ~970 ops, 217 KB fp32; 2-layer bidirectional: 491 KB, 2.6x slower than the fused op).
* Keras 3 has no TFLite fusion hook, so :func:`build_export_model` rebuilds the model with the same weights
  and replaces every ``LSTM`` (and ``Bidirectional(LSTM)``) by a layer whose recurrence is a
  ``tf.function`` carrying the ``api_implements="lstm_<uuid>"`` attribute -- the contract tf_keras uses,
  which the converter's prepare-composite-functions pass turns into ONE builtin
  ``UNIDIRECTIONAL_SEQUENCE_LSTM`` op (``go_backwards`` -> ``REVERSE_V2``). No tf_keras needed. The batch is
  fixed to 1 (the fusion needs static state shapes).
* fp32 / dynamic / fp16 use that graph directly.
* int8: TFLite's fully-integer LSTM kernel was wrong (max |dprob| 0.41, 72 % decision agreement with Keras;
  54 % for a bidirectional model) and 5x slower than the float LSTM; 16x8 is refused for this op
  ("Quantization to 16x8-bit not yet supported for op: 'UNIDIRECTIONAL_SEQUENCE_LSTM'"). So the model is
  calibrated and quantised with the LSTM (and ``REVERSE_V2``) kept in float: int8 input/output, int8
  conv/pool/dense ops, ``DEQUANTIZE``/``QUANTIZE`` around the LSTM. ``REVERSE_V2`` stays float because the
  quantiser gives its input and output different scales while the int8 kernel only copies bytes (a
  bidirectional model fell to 70 % decision agreement); :func:`convert` re-checks every data-movement op.

The fused LSTM keeps its hidden/cell state in TFLite *variable tensors*: the state of one ``invoke()``
carries into the next. Every inference must start with ``interpreter.reset_all_variables()`` (as
:class:`ecg_automl.tflite.runtime.TFLiteModel` and :func:`ecg_automl.tflite.latency.measure_latency` do),
otherwise each beat starts from the previous beat's state.

Importing this module does not import TensorFlow; :func:`convert` does.
"""

from __future__ import annotations

import contextlib
import functools
import io
import logging
import os
import uuid
import warnings
from typing import Any, Iterator, Mapping

import numpy as np

#: Export modes: float32; dynamic-range (int8 weights, float activations); float16 weights; int8
#: (int8 input/output and activations, representative data required, the LSTM kept in float).
MODES = ("fp32", "dynamic", "fp16", "int8")

#: Ops left in float inside the int8 model (see the module docstring for the measurements).
INT8_FLOAT_OPS = ("UNIDIRECTIONAL_SEQUENCE_LSTM", "REVERSE_V2")

#: Ops that only move int8 data: their input and output must share scale and zero point.
_DATA_MOVEMENT_OPS = frozenset({"REVERSE_V2", "RESHAPE", "SQUEEZE", "EXPAND_DIMS", "STRIDED_SLICE", "SLICE",
                                "TRANSPOSE", "GATHER", "PACK", "UNPACK", "SPLIT", "SPLIT_V"})

#: Representative windows used for calibration at most (more only costs conversion time).
MAX_CALIBRATION_SAMPLES = 500


class TFLiteError(Exception):
    """Export or verification of a TFLite model failed."""


class LatencyTargetError(TFLiteError):
    """The bench-server a study measures latency on is down or answers nonsense: no trial can be measured until it
    is fixed, so a search stops at the first such trial (``stops_study``) instead of failing ten in a row."""

    stops_study = True


class ExportFlagged(TFLiteError):
    """A strict export whose check flagged the file (``export_model(strict=True)``): nothing was written; ``meta`` holds
    the sidecar it would have had, its ``verification`` saying why."""

    def __init__(self, out: Any, meta: dict[str, Any]) -> None:
        v = meta["verification"]
        why = v.get("threshold_unreachable") or "; ".join(v.get("flag_reasons") or ["flagged"])
        super().__init__(f"{out} not written (strict): {why}")
        self.meta = meta


class TFLiteInputError(TFLiteError, ValueError):
    """Bad arguments to the exporter (unknown mode, missing or malformed representative data)."""


# --------------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------------
def _check_mode(mode: str) -> None:
    """TFLiteInputError unless ``mode`` is one of :data:`MODES` (checked before the data and the model, too)."""
    if mode not in MODES:
        raise TFLiteInputError(f"unknown TFLite mode {mode!r} (expected one of {', '.join(MODES)})")


def convert(model: Any, config: Mapping[str, Any], mode: str,
            representative: Mapping[str, np.ndarray] | None = None, *,
            strip_names: bool = True, max_calibration_samples: int = MAX_CALIBRATION_SAMPLES) -> bytes:
    """The ``.tflite`` flatbuffer of a trained ``build_model(config)`` model in ``mode`` (one of :data:`MODES`).

    ``representative``: the model-input dict (``"ecg"`` (n, L, 1) float32, plus ``"rr"`` (n, N_RR_FEATURES) when
    ``config["rr_features"]``) from *training* patients; required for ``int8``, ignored otherwise. At most
    ``max_calibration_samples`` windows (evenly spaced) are used. ``strip_names`` drops the names of
    internal tensors (smaller file; inputs, outputs and the signature keep theirs).
    Only TFLite builtin ops are emitted; anything else raises :class:`TFLiteError`.
    """
    _check_mode(mode)
    input_names = [str(t.name) for t in model.inputs]
    _check_config(config, input_names)
    rep = None
    if mode == "int8":
        rep = _check_representative(representative, model, input_names, max_calibration_samples)

    import tensorflow as tf

    with _quiet_tensorflow():
        twin = build_export_model(model)
    conv = tf.lite.TFLiteConverter.from_keras_model(twin)
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if mode == "dynamic":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
    elif mode == "fp16":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_types = [tf.float16]
    elif mode == "int8":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = functools.partial(_representative_samples, rep, input_names)
        conv._experimental_calibrate_only = True  # pylint: disable=protected-access
    try:
        with _quiet_tensorflow():
            out = conv.convert()
            if mode == "int8":
                out = _quantize_int8(out)
    except Exception as exc:  # ConverterError, RuntimeError from the calibrator, ...
        raise TFLiteError(f"TFLite conversion ({mode}) failed: {exc}") from exc
    out = bytes(out)

    ops = op_list(out)
    foreign = [o for o in ops if o.startswith("CUSTOM")]
    if foreign:
        raise TFLiteError(f"the {mode} model needs non-builtin ops {foreign}; only TFLite builtins run on the Pi")
    if mode == "int8":
        bad = _requantisation_mismatches(out)
        if bad:
            raise TFLiteError(f"int8 model has data-movement ops whose input/output quantisation differ: {bad}")
    if strip_names:
        out = _strip_tensor_names(out)
    return out


def build_export_model(model: Any, batch_size: int = 1) -> Any:
    """An export twin of ``model``: same layers and weights, fixed batch, each ``LSTM``/``Bidirectional(LSTM)``
    replaced by a fusable equivalent. Checked against ``model`` on a random input (raises TFLiteError)."""
    import keras

    fused_lstm_cls, fused_bidir_cls = _export_layers()

    def clone(layer):
        if isinstance(layer, keras.layers.Bidirectional):
            return fused_bidir_cls.from_layer(layer)
        if isinstance(layer, keras.layers.LSTM):
            return fused_lstm_cls.from_layer(layer)
        if isinstance(layer, keras.layers.RNN):
            raise TFLiteError(f"layer {layer.name!r} ({type(layer).__name__}) has no fused TFLite export")
        return layer.__class__.from_config(layer.get_config())

    inputs = [keras.Input(batch_shape=(batch_size, *tuple(t.shape[1:])), name=str(t.name), dtype=t.dtype)
              for t in model.inputs]
    twin = keras.models.clone_model(model, input_tensors=inputs,
                                    clone_function=clone)
    for layer in model.layers:
        if layer.weights:
            twin.get_layer(layer.name).set_weights(layer.get_weights())
    _check_twin(model, twin, batch_size)
    return twin


def op_list(tflite_bytes: bytes | str | os.PathLike) -> list[str]:
    """Sorted names of the operators a model uses: builtin names (``CONV_2D``, ...); custom and Flex ops as
    ``CUSTOM:<custom_code>``. Reads the flatbuffer (no TensorFlow needed)."""
    schema = _schema()
    buf = bytearray(_read_bytes(tflite_bytes))
    model = schema.Model.GetRootAsModel(buf, 0)
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    used = set()
    for s in range(model.SubgraphsLength()):
        sg = model.Subgraphs(s)
        for i in range(sg.OperatorsLength()):
            code = model.OperatorCodes(sg.Operators(i).OpcodeIndex())
            builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
            name = names.get(builtin, f"BUILTIN_{builtin}")
            if name == "CUSTOM":
                name = "CUSTOM:" + (code.CustomCode() or b"").decode()
            used.add(name)
    return sorted(used)


# --------------------------------------------------------------------------------------------
# checks
# --------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _quiet_tensorflow():
    """Silence the expected converter chatter (retracing notices, 'Statistics for quantized inputs')."""
    logger = logging.getLogger("tensorflow")
    level = logger.level
    logger.setLevel(max(level, logging.ERROR))
    try:
        # Keras 3's export (used by from_keras_model) prints every captured variable's TensorSpec to stdout.
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.filterwarnings("ignore", message="Statistics for quantized inputs were expected")
            warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated")
            yield
    finally:
        logger.setLevel(level)


def _check_config(config: Mapping[str, Any], input_names: list[str]) -> None:
    want_rr = bool(config.get("rr_features", False))
    if "ecg" not in input_names:
        raise TFLiteInputError(f"model inputs {input_names} have no 'ecg' input (not a build_model model?)")
    if want_rr != ("rr" in input_names):
        raise TFLiteInputError(f"config rr_features={want_rr} but the model inputs are {input_names}")


def _check_representative(rep, model, input_names: list[str], limit: int) -> dict[str, np.ndarray]:
    if rep is None:
        raise TFLiteInputError("int8 export needs representative data: the model-input dict "
                               f"({', '.join(input_names)}) of training-patient windows")
    if not isinstance(rep, Mapping):
        raise TFLiteInputError(f"representative data must be a dict of arrays keyed {input_names}, "
                               f"got {type(rep).__name__}")
    missing = [k for k in input_names if k not in rep]
    if missing:
        raise TFLiteInputError(f"representative data lacks inputs {missing} (has {sorted(rep)})")
    out: dict[str, np.ndarray] = {}
    n = None
    for t in model.inputs:
        name = str(t.name)
        arr = np.asarray(rep[name], dtype=np.float32)
        want = tuple(t.shape[1:])
        if arr.ndim != len(want) + 1 or tuple(arr.shape[1:]) != want:
            raise TFLiteInputError(f"representative {name!r} has shape {arr.shape}, the model wants (n, "
                                   f"{', '.join(map(str, want))})")
        if n is not None and len(arr) != n:
            raise TFLiteInputError("representative inputs have different numbers of windows")
        if not np.all(np.isfinite(arr)):
            raise TFLiteInputError(f"representative {name!r} has NaN or inf values")
        n = len(arr)
        out[name] = arr
    if not n:
        raise TFLiteInputError("representative data is empty")
    idx = np.unique(np.linspace(0, n - 1, min(n, max(1, int(limit)))).round().astype(int))
    return {k: v[idx] for k, v in out.items()}


def _representative_samples(rep: dict[str, np.ndarray], input_names: list[str]) -> Iterator[dict]:
    for i in range(len(rep[input_names[0]])):
        yield {k: rep[k][i:i + 1] for k in input_names}


def _check_twin(model, twin, batch_size: int) -> None:
    rng = np.random.default_rng(0)
    x = {str(t.name): rng.standard_normal((batch_size, *tuple(t.shape[1:]))).astype(np.float32)
         for t in model.inputs}
    args = [x[str(t.name)] for t in model.inputs]
    a = np.asarray(model(args, training=False))
    b = np.asarray(twin(args, training=False))
    if a.shape != b.shape or not np.allclose(a, b, atol=1e-5, rtol=1e-4):
        raise TFLiteError(f"export twin disagrees with the trained model (max |d| {np.abs(a - b).max():.3g})")


# --------------------------------------------------------------------------------------------
# the fusable LSTM layers
# --------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def _export_layers():
    """Keras 3 layers whose call is a ``tf.function`` with the Keras-LSTM ``api_implements`` contract."""
    import keras
    import tensorflow as tf

    def lstm_function(go_backwards: bool):
        # The converter reads arguments 0-5 (inputs, init_h, init_c, kernel, recurrent_kernel, bias) and
        # needs 5 results of which only the first two (last output, sequence) may be consumed. It replaces
        # the body, which is here only for eager/graph execution of the twin (Keras LSTM semantics).
        def standard_lstm(inputs, init_h, init_c, kernel, recurrent_kernel, bias):
            x = tf.reverse(inputs, axis=[1]) if go_backwards else inputs

            def step(state, x_t):
                h, c = state
                z = tf.matmul(x_t, kernel) + tf.matmul(h, recurrent_kernel) + bias
                z_i, z_f, z_c, z_o = tf.split(z, 4, axis=1)
                c = tf.sigmoid(z_f) * c + tf.sigmoid(z_i) * tf.tanh(z_c)
                return tf.sigmoid(z_o) * tf.tanh(c), c

            hs, cs = tf.scan(step, tf.transpose(x, [1, 0, 2]), initializer=(init_h, init_c))
            return hs[-1], tf.transpose(hs, [1, 0, 2]), hs[-1], cs[-1], tf.constant(0.0)

        attrs = {"api_implements": f"lstm_{uuid.uuid4()}", "api_preferred_device": "CPU",
                 "time_major": False, "go_backwards": bool(go_backwards)}
        return tf.function(standard_lstm, autograph=False, experimental_attributes=attrs)

    def check_lstm(layer) -> None:
        act = keras.activations.serialize(layer.cell.activation)
        rec = keras.activations.serialize(layer.cell.recurrent_activation)
        problems = []
        if act != "tanh" or rec != "sigmoid":
            problems.append(f"activations {act}/{rec} (fused op: tanh/sigmoid)")
        if not layer.cell.use_bias:
            problems.append("use_bias=False")
        if layer.stateful or layer.return_state or getattr(layer, "time_major", False):
            problems.append("stateful/return_state/time_major")
        if problems:
            raise TFLiteError(f"LSTM {layer.name!r} cannot be fused: {', '.join(problems)}")

    class FusedLSTM(keras.layers.Layer):
        """Inference-only LSTM (weights as Keras' ``LSTM``) exporting to UNIDIRECTIONAL_SEQUENCE_LSTM."""

        def __init__(self, units, return_sequences=False, go_backwards=False, **kwargs):
            super().__init__(**kwargs)
            self.units = int(units)
            self.return_sequences = bool(return_sequences)
            self.go_backwards = bool(go_backwards)
            self._lstm = lstm_function(self.go_backwards)

        @classmethod
        def from_layer(cls, layer):
            check_lstm(layer)
            return cls(layer.units, layer.return_sequences, layer.go_backwards, name=layer.name)

        def build(self, input_shape):
            u = self.units
            self.kernel = self.add_weight(shape=(int(input_shape[-1]), 4 * u), initializer="zeros", name="kernel")
            self.recurrent_kernel = self.add_weight(shape=(u, 4 * u), initializer="zeros", name="recurrent_kernel")
            self.bias = self.add_weight(shape=(4 * u,), initializer="zeros", name="bias")

        def call(self, inputs, training=None, mask=None):
            batch = inputs.shape[0]
            if batch is None:
                raise TFLiteError("the export twin needs a fixed batch size")
            zeros = tf.zeros((batch, self.units), dtype=inputs.dtype)
            last, seq, _, _, _ = self._lstm(inputs, zeros, zeros, tf.convert_to_tensor(self.kernel),
                                            tf.convert_to_tensor(self.recurrent_kernel),
                                            tf.convert_to_tensor(self.bias))
            return seq if self.return_sequences else last

        def compute_output_shape(self, input_shape):
            if self.return_sequences:
                return (input_shape[0], input_shape[1], self.units)
            return (input_shape[0], self.units)

    class FusedBidirectional(keras.layers.Layer):
        """Inference-only ``Bidirectional(LSTM)``: forward + go_backwards fused LSTMs, merged like Keras."""

        def __init__(self, units, return_sequences=False, merge_mode="concat", fw_backwards=False,
                     bw_backwards=True, **kwargs):
            super().__init__(**kwargs)
            if merge_mode not in ("concat", "sum", "ave", "mul"):
                raise TFLiteError(f"Bidirectional merge_mode {merge_mode!r} is not supported for export")
            self.merge_mode = merge_mode
            self.return_sequences = bool(return_sequences)
            self.forward_layer = FusedLSTM(units, return_sequences, fw_backwards, name="forward")
            self.backward_layer = FusedLSTM(units, return_sequences, bw_backwards, name="backward")

        @classmethod
        def from_layer(cls, layer):
            fw, bw = layer.forward_layer, layer.backward_layer
            if not isinstance(fw, keras.layers.LSTM) or not isinstance(bw, keras.layers.LSTM):
                raise TFLiteError(f"Bidirectional {layer.name!r} does not wrap LSTMs")
            check_lstm(fw)
            check_lstm(bw)
            return cls(fw.units, layer.return_sequences, layer.merge_mode, fw.go_backwards, bw.go_backwards,
                       name=layer.name)

        def build(self, input_shape):
            self.forward_layer.build(input_shape)
            self.backward_layer.build(input_shape)

        def call(self, inputs, training=None, mask=None):
            y = self.forward_layer(inputs)
            y_rev = self.backward_layer(inputs)
            if self.return_sequences:
                y_rev = tf.reverse(y_rev, axis=[1])
            if self.merge_mode == "concat":
                return tf.concat([y, y_rev], axis=-1)
            if self.merge_mode == "sum":
                return y + y_rev
            if self.merge_mode == "ave":
                return (y + y_rev) / 2
            return y * y_rev

        def compute_output_shape(self, input_shape):
            units = self.forward_layer.units * (2 if self.merge_mode == "concat" else 1)
            if self.return_sequences:
                return (input_shape[0], input_shape[1], units)
            return (input_shape[0], units)

    return FusedLSTM, FusedBidirectional


# --------------------------------------------------------------------------------------------
# flatbuffer helpers
# --------------------------------------------------------------------------------------------
def _quantize_int8(calibrated: bytes) -> bytes:
    """Quantise a calibrated model: int8 everywhere except :data:`INT8_FLOAT_OPS`, int8 input/output."""
    import tensorflow as tf
    from tensorflow.lite.python.convert import mlir_quantize

    from .runtime import native_chatter_dropped

    with native_chatter_dropped():  # its "fully_quantize: 1, inference_type: 6, ..." line on every export
        return mlir_quantize(calibrated, fully_quantize=True, input_data_type=tf.int8,
                             output_data_type=tf.int8, denylisted_ops=list(INT8_FLOAT_OPS))


def _schema():
    try:
        from ai_edge_litert import schema_py_generated as schema
    except ImportError:  # pragma: no cover - TensorFlow's copy of the same generated module
        from tensorflow.lite.python import schema_py_generated as schema
    return schema


def _flatbuffer_utils():
    try:
        from ai_edge_litert.tools import flatbuffer_utils
    except ImportError:  # pragma: no cover
        from tensorflow.lite.tools import flatbuffer_utils
    return flatbuffer_utils


def _read_bytes(model) -> bytes:
    if isinstance(model, (bytes, bytearray, memoryview)):
        return bytes(model)
    with open(model, "rb") as fh:
        return fh.read()


def _strip_tensor_names(tflite_bytes: bytes) -> bytes:
    """Drop the names of internal tensors and the model description (inputs/outputs/signatures stay)."""
    fu = _flatbuffer_utils()
    model = fu.read_model_from_bytearray(bytearray(tflite_bytes))
    model.description = None
    for sg in model.subgraphs:
        keep = set(sg.inputs) | set(sg.outputs)
        for i, tensor in enumerate(sg.tensors):
            if i not in keep:
                tensor.name = None
    return bytes(fu.convert_object_to_bytearray(model))


def _requantisation_mismatches(tflite_bytes: bytes) -> list[str]:
    """Int8 data-movement ops whose input and output quantisation parameters differ (kernels copy bytes)."""
    fu = _flatbuffer_utils()
    model = fu.read_model_from_bytearray(bytearray(tflite_bytes))
    bad = []
    for sg in model.subgraphs:
        def qparams(i):
            q = sg.tensors[i].quantization
            if q is None or q.scale is None or len(q.scale) == 0:
                return None
            return (sg.tensors[i].type, tuple(np.round(np.asarray(q.scale, np.float64), 10)),
                    tuple(np.asarray(q.zeroPoint).tolist()))
        for op in sg.operators:
            name = fu.opcode_to_name(model, op.opcodeIndex)
            if name not in _DATA_MOVEMENT_OPS or len(op.inputs) == 0 or op.inputs[0] < 0:
                continue
            q_in = qparams(op.inputs[0])
            for o in op.outputs:
                q_out = qparams(o)
                if q_in is not None and q_out is not None and q_in != q_out:
                    bad.append(f"{name}: {q_in[1:]} -> {q_out[1:]}")
    return bad
