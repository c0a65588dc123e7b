"""What a search-space file may say: the known hyperparameters, their value domains, and validation
that names the bad key and value."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from ecg_data.loader import FS_RANGE, WINDOW_RANGE


class SpaceError(ValueError):
    """A space file is malformed; the message names the key and what is wrong."""


@dataclass(frozen=True)
class ParamDomain:
    """The values a hyperparameter may take, whatever distribution the space draws them from."""

    kind: type  # int, float, bool or str
    check: Callable[[Any], bool] = lambda v: True
    describe: str = ""


def _choice(*allowed):
    return ParamDomain(str, lambda v: v in allowed, f"one of {', '.join(map(str, allowed))}")


_pos_int = ParamDomain(int, lambda v: v >= 1, "an integer >= 1")
#: Widths and depths are capped: a typo such as ``stem_filters: 100000000`` (3.6 GB of weights in one layer) loaded,
#: and the trial then died for memory rather than with an error; the caps are far beyond what trains here.
MAX_WIDTH, MAX_DEPTH = 4096, 16
_width = ParamDomain(int, lambda v: 1 <= v <= MAX_WIDTH, f"an integer in [1, {MAX_WIDTH}]")
_depth = ParamDomain(int, lambda v: 1 <= v <= MAX_DEPTH, f"an integer in [1, {MAX_DEPTH}]")
_depth0 = ParamDomain(int, lambda v: 0 <= v <= MAX_DEPTH, f"an integer in [0, {MAX_DEPTH}]")
_dropout = ParamDomain(float, lambda v: 0.0 <= v < 1.0, "a number in [0, 1)")

#: Every hyperparameter of the model family and its training, with its domain.
PARAMS: dict[str, ParamDomain] = {
    # input
    # at most the longest window the data layer prepares: a longer one was refused later as a "window" the user
    # never wrote, naming neither the file nor input_length
    "input_length": ParamDomain(int, lambda v: 16 <= v <= WINDOW_RANGE[1],
                                f"window length in samples, in [16, {WINDOW_RANGE[1]}]"),
    "rr_features": ParamDomain(bool, describe="true/false: feed RR-interval rhythm context to the head"),
    # residual Conv1D branch
    "stem_filters": _width,
    "res_blocks": _depth0,
    "conv_filters": _width,
    "kernel_size": ParamDomain(int, lambda v: 1 <= v <= 63, "an integer in [1, 63]"),
    "pool": _choice("max", "avg"),
    "conv_dropout": _dropout,
    # LSTM branch
    "lstm_units": _width,
    "lstm_layers": _depth,
    "lstm_bidirectional": ParamDomain(bool, describe="true/false"),
    "lstm_downsample": ParamDomain(int, lambda v: 1 <= v <= 32, "an integer in [1, 32]"),
    # dense head
    "dense_layers": _depth0,
    "dense_units": _width,
    "dense_dropout": _dropout,
    # training
    "optimizer": _choice("adam", "rmsprop", "sgd"),
    "learning_rate": ParamDomain(float, lambda v: 0 < v < 1, "a number in (0, 1)"),
    "batch_size": _pos_int,
    "epochs": _pos_int,
    "class_weight": _choice("balanced", "none"),
    # added later: optional, a space or config that leaves them out gets OPTIONAL below (the behaviour
    # before they existed), so older space files and trial configs still load and rebuild the same model
    "rr_units": _width,
    "lr_schedule": _choice("constant", "cosine"),
}

#: Hyperparameters a space may leave out, with the value it then gets.
OPTIONAL: dict[str, Any] = {"rr_units": 8, "lr_schedule": "constant"}

DISTRIBUTIONS = ("int", "float", "categorical")
TOP_KEYS = {"name", "description", "params", "data"}
DATA_KEYS = {"fs": ParamDomain(float, lambda v: FS_RANGE[0] <= v <= FS_RANGE[1],
                               f"a sampling rate in Hz in [{FS_RANGE[0]:g}, {FS_RANGE[1]:g}]"),
             # at most 20 s at 1000 Hz: `data info --window 10000000` found no beat with a full window, and 100000
             # wrote a 630 MB cache file
             "window": ParamDomain(int, lambda v: WINDOW_RANGE[0] <= v <= WINDOW_RANGE[1],
                                   f"samples per prepared window, {WINDOW_RANGE[0]}-{WINDOW_RANGE[1]}")}


def _type_ok(value: Any, kind: type) -> bool:
    if kind is bool:
        return isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, kind)


def check_value(key: str, value: Any, domain: ParamDomain) -> None:
    """Raise :class:`SpaceError` naming ``key`` if ``value`` is outside ``domain``."""
    if value is None:  # "key:" with nothing after it
        raise SpaceError(f"{key}: no value given, expected {domain.kind.__name__}"
                         + (f" ({domain.describe})" if domain.describe else ""))
    if not _type_ok(value, domain.kind):
        raise SpaceError(f"{key}: {value!r} is a {type(value).__name__}, expected {domain.kind.__name__}"
                         + (f" ({domain.describe})" if domain.describe else "") + _number_as_text_hint(value, domain))
    if not domain.check(value):
        raise SpaceError(f"{key}: {value!r} is out of range, expected {domain.describe}")


def check_config_values(config: Any) -> None:
    """Raise :class:`SpaceError` naming the first hyperparameter of ``config`` whose value is outside its domain
    (a learning rate of -1 trained to a loss of 6.6e6, ``lstm_layers: 0`` failed inside Keras). NumPy numbers pass
    as the Python numbers they are; text does not (see :func:`params_from_text`)."""
    import numbers

    import numpy as np

    for key, value in config.items():
        domain = PARAMS.get(key)
        if domain is None:
            continue
        if isinstance(value, np.generic):
            value = value.item()
        if domain.kind is int and isinstance(value, numbers.Integral) and not isinstance(value, bool):
            value = int(value)
        if domain.kind is bool and not isinstance(value, bool) and isinstance(value, numbers.Integral) \
                and value in (0, 1):  # KerasTuner trials stored before 2026-12-05 hold 1/0 (the builder's truth)
            value = bool(value)
        check_value(key, value, domain)


def params_from_text(params: Any) -> dict[str, Any]:
    """``params`` with values given as text (MLflow logs every param as text: ``"False"``, ``"0.001"``) turned into
    what their domain holds, so a trial's logged params rebuild its model: ``bool("False")`` is True, which gave a
    model with an ``rr`` input and a bidirectional LSTM its trial never had."""
    out = dict(params)
    for key, value in params.items():
        domain = PARAMS.get(key)
        if domain is None or not isinstance(value, str) or domain.kind is str:
            continue
        text = value.strip()
        try:
            if domain.kind is bool:
                if text.lower() not in ("true", "false", "1", "0"):  # 1/0: older KerasTuner trials' params
                    raise ValueError(text)
                out[key] = text.lower() in ("true", "1")
            elif domain.kind is int:
                out[key] = int(text)
            else:
                out[key] = float(text)
        except ValueError:
            raise SpaceError(f"{key}: {value!r} is not {domain.kind.__name__}"
                             + (f" ({domain.describe})" if domain.describe else "")) from None
    return out


def _number_as_text_hint(value: Any, domain: ParamDomain) -> str:
    """Why a number came out as text: YAML 1.1 (PyYAML) reads ``1e-3`` as a string, it needs ``1.0e-3``."""
    if not isinstance(value, str) or domain.kind not in (int, float):
        return ""
    try:
        number = float(value)
    except ValueError:
        return ""
    mark = value.lower().find("e")
    if mark <= 0:
        return "; write it without quotes"
    if domain.kind is int:  # 1000.0 is then refused as a float
        return f"; YAML reads {value} as text: write {int(number)}" if number.is_integer() else ""
    # PyYAML's floats need a dot and a signed exponent: 1.0e3 and 18.0e1 are text too, 1.0e+3 is a number
    mantissa, exponent = value[:mark], value[mark + 1:]
    mantissa += "" if "." in mantissa else ".0"
    exponent = exponent if exponent[:1] in ("+", "-") else f"+{exponent}"
    return f"; YAML reads {value} as text: write {number!r} or {mantissa}e{exponent}"


def _check_step_divides(where: str, low: float, high: float, step: float) -> None:
    """Optuna silently lowers ``high`` to the last step below it (with a warning) when ``step`` does not divide
    ``high - low``, so the space would not search the range its file states: refuse it instead."""
    n = (high - low) / step
    if abs(n - round(n)) > 1e-9 * max(1.0, abs(n)):
        last = low + int(n) * step
        raise SpaceError(f"{where}: step {step} does not divide the range [{low}, {high}]: the highest value "
                         f"drawn would be {last:g}, not {high}; make high - low a multiple of the step")


def _bounds(spec: Any) -> tuple[Any, Any]:
    """The smallest and largest value a (validated) fixed value or distribution can give."""
    if not isinstance(spec, dict):
        return spec, spec
    if spec["type"] == "categorical":
        return min(spec["choices"]), max(spec["choices"])
    return spec["low"], spec["high"]


def why_config_cannot_build(config: Any) -> str | None:
    """Why the model of ``config`` cannot be built (its window too short for its poolings), or None: a space may hold
    such draws beside buildable ones, and Keras' "Computed output size would be zero or negative" names neither."""
    length, blocks = int(config["input_length"]), int(config["res_blocks"])
    down = int(config.get("lstm_downsample", 1))
    if length < 2 ** blocks:
        return (f"input_length {length} is too short for res_blocks {blocks} (each block halves the window: at least "
                f"{2 ** blocks} samples needed); this draw cannot be built")
    if length < down:
        return (f"input_length {length} is too short for lstm_downsample {down} (the LSTM branch averages that many "
                f"samples into each step); this draw cannot be built")
    return None


def _check_some_model_builds(params: dict[str, Any]) -> None:
    """SpaceError when no config of the space builds a model: each fails at its first layer, so the search
    failed 10 trials in a row and then blamed the setup, and its advice (fix it and run the same command)
    met a study that refuses the corrected space."""
    longest = _bounds(params["input_length"])[1]
    fewest_pools = _bounds(params["res_blocks"])[0]
    smallest_down = _bounds(params["lstm_downsample"])[0]
    if longest < smallest_down:
        raise SpaceError(f"params: no model of this space can be built: input_length is at most {longest} samples "
                         f"but lstm_downsample at least {smallest_down} (the LSTM branch averages that many samples "
                         f"into each step)")
    if longest < 2 ** fewest_pools:
        raise SpaceError(f"params: no model of this space can be built: input_length is at most {longest} samples "
                         f"but res_blocks at least {fewest_pools} (each block halves the window: at least "
                         f"{2 ** fewest_pools} samples needed)")


def validate(doc: Any) -> None:
    """Validate a parsed space file; raise :class:`SpaceError` naming the first bad key."""
    if doc is None:
        raise SpaceError("the file is empty (or only comments): a space file maps params (and optionally name, "
                         "description, data) to their values; copy spaces/default.yaml to start from")
    if not isinstance(doc, dict):
        raise SpaceError(f"a space file must be a mapping at the top level, not {type(doc).__name__}")
    for key in doc:
        if key not in TOP_KEYS:
            raise SpaceError(f"unknown top-level key {key!r} (allowed: {', '.join(sorted(TOP_KEYS))})")
    for key in ("name", "description"):  # `name: [a, b]` named the space "['a', 'b']"
        value = doc.get(key)
        if value is not None and (isinstance(value, (dict, list, bool)) or not isinstance(value, (str, int, float))):
            raise SpaceError(f"{key}: must be text, not a {type(value).__name__} ({value!r})")
    data = {} if doc.get("data") is None else doc["data"]  # `data: []` or `data: 0` was taken for no data section
    if not isinstance(data, dict):
        raise SpaceError(f"data: must be a mapping (fs, window), not {type(data).__name__} ({data!r})")
    for key, value in data.items():
        if key not in DATA_KEYS:
            raise SpaceError(f"data.{key}: unknown key (allowed: {', '.join(DATA_KEYS)})")
        check_value(f"data.{key}", value, DATA_KEYS[key])
    params = doc.get("params")
    if not isinstance(params, dict) or not params:
        raise SpaceError("params: missing or empty; it maps hyperparameter names to values or distributions")
    for key in params:  # before "missing": a misspelt name is both, and the misspelling is what to fix
        if key not in PARAMS:
            import difflib

            close = difflib.get_close_matches(str(key), list(PARAMS), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise SpaceError(f"params.{key}: unknown hyperparameter{hint} (known: {', '.join(PARAMS)})")
    missing = [k for k in PARAMS if k not in params and k not in OPTIONAL]
    if missing:
        raise SpaceError(f"params: missing {', '.join(missing)} (every hyperparameter needs a value or a range)")
    for key, spec in params.items():
        where = f"params.{key}"
        domain = PARAMS[key]
        if not isinstance(spec, dict):
            check_value(where, spec, domain)
            continue
        kind = spec.get("type")
        if "type" not in spec:
            raise SpaceError(f"{where}.type: missing; a distribution needs a type ({', '.join(DISTRIBUTIONS)})")
        if kind not in DISTRIBUTIONS:
            raise SpaceError(f"{where}.type: {kind!r} is not one of {', '.join(DISTRIBUTIONS)}")
        allowed = {"type", "choices"} if kind == "categorical" else {"type", "low", "high", "step", "log"}
        for k in spec:
            if k not in allowed:
                raise SpaceError(f"{where}.{k}: unknown key for a {kind} distribution "
                                 f"(allowed: {', '.join(sorted(allowed))})")
        if kind == "categorical":
            choices = spec.get("choices")
            if not isinstance(choices, list) or not choices:
                raise SpaceError(f"{where}.choices: must be a non-empty list")
            for i, c in enumerate(choices):
                check_value(f"{where}.choices[{i}]", c, domain)
            if len({float(c) if domain.kind is float else repr(c) for c in choices}) != len(choices):
                raise SpaceError(f"{where}.choices: duplicates in {choices!r}")  # 0 and 0.0 too
            continue
        if kind == "int" and domain.kind is not int or kind == "float" and domain.kind is not float:
            raise SpaceError(f"{where}.type: {key} is a {domain.kind.__name__} hyperparameter; "
                             f"use type {'categorical' if domain.kind in (bool, str) else domain.kind.__name__}")
        for bound in ("low", "high"):
            if bound not in spec:
                raise SpaceError(f"{where}.{bound}: missing")
            check_value(f"{where}.{bound}", spec[bound], domain)
        if spec["low"] > spec["high"]:
            raise SpaceError(f"{where}: low ({spec['low']}) is greater than high ({spec['high']})")
        log = spec.get("log", False)
        if not isinstance(log, bool):
            raise SpaceError(f"{where}.log: must be true or false, not {log!r}")
        if log and spec["low"] <= 0:
            raise SpaceError(f"{where}.log: a log scale needs low > 0 (low is {spec['low']})")
        if "step" in spec:
            step = spec["step"]
            if not _type_ok(step, domain.kind) or step <= 0:
                raise SpaceError(f"{where}.step: must be a positive {domain.kind.__name__}, not {step!r}")
            if log:
                raise SpaceError(f"{where}: step and log cannot be combined")
            _check_step_divides(where, spec["low"], spec["high"], step)
    _check_some_model_builds(params)
    if "window" in data:  # every input_length the space can draw is cropped from the prepared window
        spec = params["input_length"]
        longest = spec if not isinstance(spec, dict) else (
            max(spec["choices"]) if spec["type"] == "categorical" else spec["high"])
        if longest > data["window"]:
            raise SpaceError(f"data.window: {data['window']} samples is shorter than the longest "
                             f"params.input_length ({longest}); make the window at least that long")
