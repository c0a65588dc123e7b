"""TensorFlow-free prediction with a ``.tflite`` model (LiteRT interpreter), as run on the Raspberry Pi.

Models exported by :func:`ecg_automl.tflite.convert.convert` have a fixed batch of 1 and may keep LSTM state
in variable tensors, so windows are run one at a time and the variables are reset before every window.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import threading
from typing import Any, Iterator, Mapping

import numpy as np

#: Builtin operators that keep state in variable tensors between invocations.
STATEFUL_OPS = frozenset({"UNIDIRECTIONAL_SEQUENCE_LSTM", "BIDIRECTIONAL_SEQUENCE_LSTM", "LSTM",
                          "UNIDIRECTIONAL_SEQUENCE_RNN", "BIDIRECTIONAL_SEQUENCE_RNN", "RNN", "SVDF",
                          "ASSIGN_VARIABLE", "VAR_HANDLE", "READ_VARIABLE"})


def load_model_bytes(model: bytes | bytearray | memoryview | str | os.PathLike) -> bytes:
    """``model`` as flatbuffer bytes (bytes-like or a path)."""
    if isinstance(model, (bytes, bytearray, memoryview)):
        return bytes(model)
    with open(os.fspath(model), "rb") as fh:
        return fh.read()


def require_litert() -> str:
    """LiteRT's version; a TFLiteError that says what to install when the runtime is missing (a Pi set up
    without ``ecg-automl[pi]``), instead of a ModuleNotFoundError traceback or, in bench-server, a failed
    benchmark blamed on the model."""
    from .convert import TFLiteError

    try:
        import ai_edge_litert
        from ai_edge_litert import interpreter  # noqa: F401  (the part predict and the timing use)
    except ImportError as exc:
        from ..install import install_hint

        raise TFLiteError(f"the TFLite runtime LiteRT cannot be imported ({exc}): install it with "
                          f"{install_hint('pi', 'ai-edge-litert')}") from None
    return str(getattr(ai_edge_litert, "__version__", "?"))


#: Lines the native TFLite code prints on every interpreter or int8 conversion, at no level an environment
#: variable can silence (TF_CPP_MIN_LOG_LEVEL does not reach TFLite's own logger): information, not news.
NATIVE_CHATTER = ("INFO: Created TensorFlow Lite XNNPACK delegate for CPU.",
                  "fully_quantize: ")
_stderr_lock = threading.Lock()


@contextlib.contextmanager
def native_chatter_dropped() -> Iterator[None]:
    """Run native TFLite code with its stderr (file descriptor 2) held back, then write back every line of it
    but :data:`NATIVE_CHATTER`: a warning or an error from the runtime still reaches the user, after the call."""
    fd = 2  # where native code writes, whatever Python's sys.stderr is
    try:
        os.fstat(fd)
    except OSError:  # no stderr at all (closed by the caller): nothing to tidy
        yield
        return
    with _stderr_lock, tempfile.TemporaryFile() as held:
        sys.stderr.flush()
        saved = os.dup(fd)
        os.dup2(held.fileno(), fd)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, fd)
            os.close(saved)
            held.seek(0)
            lines = held.read().splitlines(keepends=True)
            kept = b"".join(line for line in lines if not line.decode(errors="replace").startswith(NATIVE_CHATTER))
            if kept:
                os.write(fd, kept)


def make_interpreter(model_bytes: bytes, threads: int = 1) -> Any:
    """A LiteRT interpreter with tensors allocated."""
    require_litert()
    from ai_edge_litert.interpreter import Interpreter

    with native_chatter_dropped():
        interp = Interpreter(model_content=model_bytes, num_threads=int(threads))
        interp.allocate_tensors()
    return interp


def is_stateful(model_bytes: bytes) -> bool:
    """Whether the model has variable tensors or stateful ops (state must be reset per window)."""
    require_litert()
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAsModel(bytearray(model_bytes), 0)
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    for i in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(i)
        if names.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode())) in STATEFUL_OPS:
            return True
    for s in range(model.SubgraphsLength()):
        sg = model.Subgraphs(s)
        for t in range(sg.TensorsLength()):
            if sg.Tensors(t).IsVariable():
                return True
    return False


def input_map(interp: Any, names: tuple[str, ...] = ("ecg", "rr")) -> dict[str, dict]:
    """Input tensor details keyed by model input name (``ecg``/``rr``): from the signature when the model
    has one, else by matching the tensor names (``serving_default_ecg:0`` -> ``ecg``)."""
    details = interp.get_input_details()
    by_index = {d["index"]: d for d in details}
    out: dict[str, dict] = {}
    try:
        sigs = interp.get_signature_list()
    except Exception:  # pragma: no cover - very old runtimes
        sigs = {}
    if len(sigs) == 1:
        key = next(iter(sigs))
        try:
            runner = interp.get_signature_runner(key)
            for name, d in runner.get_input_details().items():
                if d["index"] in by_index:
                    out[name] = by_index[d["index"]]
        except Exception:  # pragma: no cover
            out = {}
    if len(out) == len(details):
        return out
    out = {}
    for d in details:
        tname = str(d["name"])
        base = tname.split(":")[0]
        for prefix in ("serving_default_",):
            if base.startswith(prefix):
                base = base[len(prefix):]
        match = [n for n in names if base == n] or [n for n in names if n in base]
        if len(match) != 1 or match[0] in out:
            if len(details) == 1:
                match = [names[0]]
            else:
                raise ValueError(f"cannot tell which model input tensor {tname!r} is (expected names {names})")
        out[match[0]] = d
    return out


def quantize_input(x: np.ndarray, detail: dict) -> np.ndarray:
    """``x`` in the dtype the input tensor wants (int8/uint8 inputs quantised with its scale/zero point)."""
    dtype = np.dtype(detail["dtype"])
    if dtype.kind in "iu":
        scale, zero = detail["quantization"]
        if not scale:
            raise ValueError(f"integer input {detail['name']!r} has no quantisation parameters")
        info = np.iinfo(dtype)
        return np.clip(np.round(x / scale + zero), info.min, info.max).astype(dtype)
    return x.astype(dtype, copy=False)


def dequantize_output(y: np.ndarray, detail: dict) -> np.ndarray:
    """Float values of an output tensor (int8/uint8 outputs dequantised)."""
    if np.dtype(detail["dtype"]).kind in "iu":
        scale, zero = detail["quantization"]
        return (y.astype(np.float32) - zero) * np.float32(scale)
    return y.astype(np.float32, copy=False)


def output_max(detail: dict) -> float:
    """Largest value an output tensor can take (``inf`` unless it is integer-quantised)."""
    dtype = np.dtype(detail["dtype"])
    if dtype.kind not in "iu":
        return float("inf")
    scale, zero = detail["quantization"]
    return float((np.iinfo(dtype).max - zero) * np.float32(scale)) if scale else float(np.iinfo(dtype).max)


def unreachable_threshold_message(threshold: float, ceiling: float) -> str | None:
    """The warning for a decision threshold an integer output cannot reach (None when it can)."""
    if threshold <= ceiling:
        return None
    return (f"the decision threshold {threshold:.4f} is above the largest probability this int8 model can output "
            f"({ceiling:.4f}: its sigmoid output has 256 levels), so it flags no beat at all; use a float16 or "
            f"dynamic-range export, or a threshold of at most {ceiling:.4f}")


class TFLiteModel:
    """A ``.tflite`` beat classifier: ``predict(inputs) -> (n,)`` probabilities of *abnormal*.

    ``inputs`` is the model-input dict (``"ecg"`` (n, L, 1) float32, ``"rr"`` (n, N_RR_FEATURES) when the model has it);
    extra keys are ignored. Windows run one at a time (the exported batch size is 1); integer inputs and
    outputs are (de)quantised from the tensor details; LSTM state is reset before every window.
    """

    def __init__(self, model: bytes | str | os.PathLike, threads: int = 1) -> None:
        from .convert import TFLiteError

        self.model_bytes = load_model_bytes(model)
        where = "the given bytes" if isinstance(model, (bytes, bytearray, memoryview)) else str(model)
        if len(self.model_bytes) < 8 or self.model_bytes[4:8] != b"TFL3":
            raise TFLiteError(f"{where}: not a TFLite model (no TFL3 flatbuffer identifier)")
        self.threads = int(threads)
        try:
            self._interp = make_interpreter(self.model_bytes, self.threads)
        except ValueError as exc:  # e.g. a truncated or damaged file that still starts like a model
            raise TFLiteError(f"{where}: not a valid TFLite model ({exc})") from None
        try:
            self.inputs = input_map(self._interp)
        except ValueError as exc:  # a model of another kind: said as the model's fault, not as a traceback
            raise TFLiteError(f"{where}: not an ecg-automl beat classifier ({exc})") from None
        outs = self._interp.get_output_details()
        if len(outs) != 1:
            raise TFLiteError(f"{where}: not an ecg-automl beat classifier (it has {len(outs)} output tensors; one "
                              f"gives the probability of an abnormal beat)")
        self._out = outs[0]
        self.stateful = is_stateful(self.model_bytes)
        if any(len(d["shape"]) and int(d["shape"][0]) != 1 for d in self.inputs.values()):
            # Another fixed batch: run one window at a time all the same.
            for d in self.inputs.values():
                self._interp.resize_tensor_input(d["index"], [1, *d["shape"][1:]])
            self._interp.allocate_tensors()
            self.inputs = input_map(self._interp)
            self._out = self._interp.get_output_details()[0]

    @property
    def input_names(self) -> list[str]:
        """The model's inputs, ``["ecg"]`` or ``["ecg", "rr"]``: the keys :meth:`predict` reads."""
        return list(self.inputs)

    @property
    def output_max(self) -> float:
        """The largest probability the model can output: ``inf`` for a float output; for an int8/uint8
        one the top quantisation level (about 0.996 for a sigmoid: 256 levels of 1/256). A decision
        threshold above it can never be reached."""
        return output_max(self._out)

    def io_details(self) -> dict[str, dict]:
        """What a caller outside ecg-automl (C++ on the device, say) must feed and read: each input's and the
        output's tensor name, shape and dtype, and for an integer tensor its quantisation
        (``real = scale * (q - zero_point)``) and the range of real values it can hold (beyond it, inputs clip)."""
        def one(d: dict) -> dict:
            dtype = np.dtype(d["dtype"])
            info = {"tensor": str(d["name"]), "shape": [int(x) for x in d["shape"]], "dtype": dtype.name}
            scale, zero = d["quantization"]
            if dtype.kind in "iu" and scale:
                lo, hi = np.iinfo(dtype).min, np.iinfo(dtype).max
                info.update(scale=float(scale), zero_point=int(zero),
                            range=[float((lo - zero) * np.float32(scale)), float((hi - zero) * np.float32(scale))])
            return info

        return {"inputs": {k: one(d) for k, d in self.inputs.items()}, "output": one(self._out)}

    def clipped_rows(self, inputs: Mapping[str, np.ndarray]) -> dict[str, int]:
        """Per integer-quantised input, how many rows (windows) hold a value its int8 range cannot represent,
        which quantisation clips to the range's end (long pauses in the RR features, say); empty for float inputs."""
        out: dict[str, int] = {}
        for name, d in self.io_details()["inputs"].items():
            if "range" in d and name in inputs:
                x = np.asarray(inputs[name], dtype=np.float32)
                half = d["scale"] / 2  # a value within half a step of the end rounds onto it
                beyond = (x < d["range"][0] - half) | (x > d["range"][1] + half)
                out[name] = int(beyond.reshape(len(x), -1).any(axis=1).sum())
        return out

    @property
    def input_dtypes(self) -> dict[str, np.dtype]:
        """Each input's tensor dtype (int8 for an int8 export, which :meth:`predict` quantises to)."""
        return {k: np.dtype(d["dtype"]) for k, d in self.inputs.items()}

    def predict(self, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        """Probability of *abnormal* for each window of ``inputs`` (the dict ``spaces.model_inputs`` makes, windows
        cropped to the model's input length), one window at a time from a reset LSTM state."""
        missing = [k for k in self.inputs if k not in inputs]
        if missing:
            raise ValueError(f"inputs lack {missing} (the model takes {self.input_names})")
        arrays = {k: np.asarray(inputs[k], dtype=np.float32) for k in self.inputs}
        n = {len(a) for a in arrays.values()}
        if len(n) != 1:
            raise ValueError(f"inputs have different numbers of windows: { {k: len(a) for k, a in arrays.items()} }")
        n_rows = n.pop()
        for k, a in arrays.items():
            want = tuple(int(s) for s in self.inputs[k]["shape"][1:])
            if tuple(a.shape[1:]) != want:
                raise ValueError(f"input {k!r} has windows of shape {a.shape[1:]}, the model wants {want}")
        interp, out = self._interp, self._out
        probs = np.empty(n_rows, dtype=np.float32)
        for i in range(n_rows):
            for k, d in self.inputs.items():
                interp.set_tensor(d["index"], quantize_input(arrays[k][i:i + 1], d))
            if self.stateful:
                interp.reset_all_variables()
            interp.invoke()
            probs[i] = dequantize_output(interp.get_tensor(out["index"]), out).reshape(-1)[0]
        return probs

    __call__ = predict
