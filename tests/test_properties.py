"""Property-based tests (hypothesis): random valid space files load and sample in Optuna and KerasTuner;
random corruptions of them raise SpaceError and nothing else; the preprocessing returns finite arrays of
the right shapes whatever the signal (any length, NaNs, flat lines, extreme amplitudes)."""

from __future__ import annotations

import copy
import math

import keras_tuner as kt
import numpy as np
import optuna
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ecg_data.preprocess import N_RR_FEATURES, beats_from_signal, normalise, rr_features
from spaces import PARAMS, SearchSpace, SpaceError

FAST = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# Optuna warns (and trims ``high``) when a range is not a multiple of its step; the generated spaces avoid that
# (spaces refuse it), but float rounding may leave Optuna a last-digit remainder to warn about.
pytestmark = pytest.mark.filterwarnings("ignore:The distribution is specified by:UserWarning")
optuna.logging.set_verbosity(optuna.logging.ERROR)

# --------------------------------------------------------------------------------------------
# space files
# --------------------------------------------------------------------------------------------
#: Value ranges inside each hyperparameter's documented domain (spaces/schema.py).
INT_RANGES = {"input_length": (16, 512), "stem_filters": (1, 64), "res_blocks": (0, 4), "conv_filters": (1, 64),
              "kernel_size": (1, 63), "lstm_units": (1, 64), "lstm_layers": (1, 3), "lstm_downsample": (1, 32),
              "dense_layers": (0, 3), "dense_units": (1, 64), "batch_size": (1, 512), "epochs": (1, 50),
              "rr_units": (1, 64)}
FLOAT_RANGES = {"conv_dropout": (0.0, 0.95), "dense_dropout": (0.0, 0.95), "learning_rate": (1e-6, 0.9)}
CHOICES = {"pool": ["max", "avg"], "optimizer": ["adam", "rmsprop", "sgd"], "class_weight": ["balanced", "none"],
           "rr_features": [True, False], "lstm_bidirectional": [True, False], "lr_schedule": ["constant", "cosine"]}
assert set(INT_RANGES) | set(FLOAT_RANGES) | set(CHOICES) == set(PARAMS)


@st.composite
def int_spec(draw, lo, hi):
    kind = draw(st.sampled_from(["fixed", "categorical", "range"]))
    values = st.integers(lo, hi)
    if kind == "fixed":
        return draw(values)
    if kind == "categorical":
        return {"type": "categorical", "choices": draw(st.lists(values, min_size=1, max_size=4, unique=True))}
    a, b = sorted((draw(values), draw(values)))
    spec = {"type": "int", "low": a, "high": b}
    extra = draw(st.sampled_from(["none", "step", "log"] if a > 0 else ["none", "step"]))
    if extra == "step":
        spec["step"] = step = draw(st.integers(1, max(1, b - a)))
        spec["high"] = a + (b - a) // step * step  # a step must divide the range (spaces refuse one that does not)
    elif extra == "log":
        spec["log"] = True
    return spec


@st.composite
def float_spec(draw, lo, hi):
    kind = draw(st.sampled_from(["fixed", "categorical", "range"]))
    values = st.floats(lo, hi, allow_nan=False, allow_infinity=False)
    if kind == "fixed":
        return draw(values)
    if kind == "categorical":
        return {"type": "categorical", "choices": draw(st.lists(values, min_size=1, max_size=4, unique=True))}
    a, b = sorted((draw(values), draw(values)))
    spec = {"type": "float", "low": a, "high": b}
    extra = draw(st.sampled_from(["none", "step", "log"] if a > 0 else ["none", "step"]))
    if extra == "step" and b > a:
        spec["step"] = step = draw(st.floats((b - a) / 10, b - a, allow_nan=False, allow_infinity=False,
                                             exclude_min=False).filter(lambda s: s > 0))
        spec["high"] = min(b, a + math.floor((b - a) / step + 1e-9) * step)  # a whole number of steps
    elif extra == "log":
        spec["log"] = True
    return spec


@st.composite
def choice_spec(draw, choices):
    if draw(st.booleans()):
        return draw(st.sampled_from(choices))
    return {"type": "categorical", "choices": draw(st.lists(st.sampled_from(choices), min_size=1, unique=True))}


@st.composite
def space_docs(draw):
    params = {"input_length": draw(int_spec(*INT_RANGES["input_length"]))}
    for key in PARAMS:
        if key == "lstm_downsample":  # some config must build (spaces refuse one none of whose configs does)
            low, high = INT_RANGES[key]
            params[key] = draw(int_spec(low, min(high, _max_input_length(params["input_length"]))))
        elif key in params:
            continue
        elif key in INT_RANGES:
            params[key] = draw(int_spec(*INT_RANGES[key]))
        elif key in FLOAT_RANGES:
            params[key] = draw(float_spec(*FLOAT_RANGES[key]))
        else:
            params[key] = draw(choice_spec(CHOICES[key]))
    doc = {"name": draw(st.text("abcdefgh-_", min_size=1, max_size=8)), "params": params}
    if draw(st.booleans()):
        doc["description"] = draw(st.text(max_size=30))
    data = {}
    if draw(st.booleans()):
        data["fs"] = draw(st.sampled_from([90, 128.0, 180, 250, 360.0, 500]))
    if draw(st.booleans()):  # a window at least as long as the longest input_length the space can ask for
        data["window"] = draw(st.integers(_max_input_length(params["input_length"]), 1024))
    if data:
        doc["data"] = data
    return doc


def _max_input_length(spec) -> int:
    if not isinstance(spec, dict):
        return spec
    return max(spec["choices"]) if spec["type"] == "categorical" else spec["high"]


def _in_spec(value, spec) -> bool:
    if not isinstance(spec, dict):
        return value == spec
    if spec["type"] == "categorical":
        return value in spec["choices"]
    return spec["low"] - 1e-9 <= value <= spec["high"] + 1e-9


@FAST
@given(doc=space_docs(), seed=st.integers(0, 2**16))
def test_random_valid_spaces_load_and_sample_in_both_engines(doc, seed):
    space = SearchSpace.from_dict(copy.deepcopy(doc), "random.yaml")
    again = SearchSpace.from_yaml(space.to_yaml(), "round-trip")  # what a study stores and a worker reads
    assert again.params == space.params and again.window == space.window
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed)).ask()
    a = space.suggest(trial)
    b = space.keras_tuner_config(kt.HyperParameters())
    for config in (a, b):
        assert set(config) == set(PARAMS)
        for key, spec in doc["params"].items():
            assert _in_spec(config[key], spec), (key, config[key], spec)
        assert config["input_length"] <= space.window  # every sampled config fits the prepared windows
    assert space.config_from_params(trial.params) == a


#: Values that are wrong for some key or other: wrong types, out of range, non-finite, nested junk.
JUNK = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.integers(10**12, 10**20),
                 st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=6),
                 st.lists(st.integers(-3, 3), max_size=3), st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
                 st.sampled_from(["int", "float", "categorical", "log", "max", True, 0, -1, 0.0, 1.0, [], {}]))


def _paths(node, prefix=()):
    """Every (path, value) in a nested doc."""
    yield prefix, node
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, prefix + (i,))


@st.composite
def corrupted_docs(draw):
    doc = draw(space_docs())
    if draw(st.integers(0, 4)) == 0:  # a valid-looking window shorter than the input lengths asked for
        doc.setdefault("data", {})["window"] = draw(st.integers(16, 64))
        doc["params"]["input_length"] = draw(st.sampled_from([65, 128, {"type": "int", "low": 16, "high": 200},
                                                              {"type": "categorical", "choices": [32, 256]}]))
        return doc
    for _ in range(draw(st.integers(1, 3))):
        paths = [p for p, _ in _paths(doc)]
        path = draw(st.sampled_from(paths))
        action = draw(st.sampled_from(["replace", "delete", "add-key"] if path else ["replace"]))
        if not path:
            return draw(JUNK)  # the whole document is something else
        parent = doc
        for k in path[:-1]:
            parent = parent[k]
        if action == "replace":
            parent[path[-1]] = draw(JUNK)
        elif action == "delete":
            del parent[path[-1]]
        elif isinstance(parent, dict):
            parent[draw(st.sampled_from(["colour", "lstm_unitz", "type", "step", "log", "low", "weights", 3]))] = draw(JUNK)
    return doc


@FAST
@given(doc=corrupted_docs())
def test_corrupted_spaces_raise_space_error_and_nothing_else(doc):
    try:
        space = SearchSpace.from_dict(doc, "bad.yaml")
    except SpaceError as exc:
        assert str(exc).startswith("bad.yaml: ")
        return
    # the corruption happened to leave a valid space: then it must work in both engines
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(0)).ask()
    assert space.suggest(trial)["input_length"] <= space.window
    space.keras_tuner_config(kt.HyperParameters())


@FAST
@given(doc=space_docs(), cut=st.integers(0, 10_000), junk=st.text(max_size=8))
def test_corrupted_yaml_text_raises_space_error_and_nothing_else(doc, cut, junk):
    text = yaml.safe_dump(doc, sort_keys=False)
    cut %= len(text) + 1
    broken = text[:cut] + junk + text[cut + len(junk):]
    try:
        SearchSpace.from_yaml(broken, "bad.yaml")
    except SpaceError:
        pass


# --------------------------------------------------------------------------------------------
# preprocessing
# --------------------------------------------------------------------------------------------
@st.composite
def signals(draw):
    """(samples, channels) signals: any length (even empty), flat, noisy, extreme or tiny amplitude,
    with NaN/inf runs."""
    n = draw(st.integers(0, 3000))
    channels = draw(st.integers(1, 2))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    kind = draw(st.sampled_from(["ecg-like", "flat", "noise", "steps"]))
    t = np.arange(n)[:, None] * np.ones((1, channels))
    if kind == "ecg-like":
        x = np.sin(t / 20.0) + 3 * (t % 150 < 4)
    elif kind == "flat":
        x = np.full((n, channels), draw(st.floats(-1e6, 1e6)))
    elif kind == "noise":
        x = rng.standard_normal((n, channels))
    else:
        x = np.repeat(rng.standard_normal((max(1, n // 100 + 1), channels)), 100, axis=0)[:n]
    x = x * draw(st.sampled_from([1e-9, 1e-3, 1.0, 1e3, 1e9])) + draw(st.sampled_from([0.0, -5.0, 1e6]))
    if n and draw(st.booleans()):  # a run of missing samples (NaN or inf), possibly the whole signal
        a = draw(st.integers(0, n - 1))
        b = draw(st.integers(a + 1, n))
        x[a:b, draw(st.integers(0, channels - 1))] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    return x


@FAST
@given(x=signals(), data=st.data())
def test_beats_from_signal_returns_finite_windows_of_the_right_shape(x, data):
    n = x.shape[0]
    fs_in = data.draw(st.sampled_from([128.0, 250.0, 360.0, 500.0, 1000.0]), "fs_in")
    fs = data.draw(st.sampled_from([90.0, 128.0, 180.0, 360.0]), "fs")
    length = data.draw(st.integers(16, 300), "length")
    peaks = np.sort(np.asarray(data.draw(st.lists(st.integers(0, max(n - 1, 0)), max_size=40 if n else 0)),
                               dtype=np.int64))
    windows, rr, keep = beats_from_signal(x, fs_in, peaks, fs=fs, length=length)
    k = int(keep.sum())
    assert keep.shape == (len(peaks),) and keep.dtype == bool
    assert windows.shape == (k, length, x.shape[1]) and windows.dtype == np.float32
    assert rr.shape == (k, N_RR_FEATURES) and rr.dtype == np.float32
    assert np.isfinite(windows).all() and np.isfinite(rr).all()
    assert np.abs(windows).max(initial=0) <= 20


@FAST
@given(shape=st.tuples(st.integers(0, 8), st.integers(1, 64), st.integers(1, 3)),
       scale=st.sampled_from([0.0, 1e-12, 1.0, 1e6, 1e12]), seed=st.integers(0, 2**32 - 1),
       holes=st.sampled_from([None, np.nan, np.inf, -np.inf]), fraction=st.floats(0, 1))
def test_normalise_is_finite_and_zero_mean(shape, scale, seed, holes, fraction):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal(shape) * scale + rng.standard_normal() * scale
    if holes is not None:
        w[rng.random(shape) < fraction] = holes
    out = normalise(w)
    assert out.shape == shape and out.dtype == np.float32
    assert np.isfinite(out).all() and np.abs(out).max(initial=0) <= 20
    for raw, win in zip(w, out):  # z-scored (or all zero when flat / missing), unless clipping bit
        if np.abs(win).max() < 20:
            assert abs(float(win.mean())) < 1e-3
            finite = np.isfinite(raw)
            if finite.any() and raw[finite].std() > 1e-7:  # not flat: unit spread over its finite samples
                assert np.sqrt(np.mean(win[finite].astype(np.float64) ** 2)) == pytest.approx(1, abs=1e-3)


@FAST
@given(peaks=st.lists(st.integers(-10, 10**7), max_size=200), fs=st.floats(1.0, 10_000.0),
       sort=st.booleans(), local=st.integers(1, 16))
def test_rr_features_are_finite_bounded_and_one_row_per_beat(peaks, fs, sort, local):
    p = np.asarray(sorted(peaks) if sort else peaks, dtype=np.int64)
    rr = rr_features(p, fs, local=local)
    assert rr.shape == (len(p), N_RR_FEATURES) and rr.dtype == np.float32
    assert np.isfinite(rr).all() and (rr >= 0).all() and (rr <= 10).all()


@FAST
@given(n=st.integers(2, 100), rr_samples=st.integers(50, 2000), fs=st.sampled_from([128.0, 360.0, 500.0]))
def test_a_steady_rhythm_has_rr_ratios_of_one(n, rr_samples, fs):
    """The ratio features are relative to the recent rhythm: a steady rhythm gives 1 whatever the rate."""
    rr = rr_features(np.arange(n) * rr_samples, fs)
    assert np.allclose(rr[:, 2:11], 1.0) and np.allclose(rr[:, :2], min(rr_samples / fs, 10.0))
    assert np.allclose(rr[:, 11:], 0.0)  # and no irregularity


def test_a_premature_beat_is_short_against_the_record_rhythm():
    """Columns 4-5 divide pre/post RR by the record's median RR: a premature beat (0.6 RR) and its
    compensatory pause (1.4 RR) read as such whatever the heart rate."""
    fs, rr = 360.0, 360
    steady = list(np.arange(60) * rr)
    t, bigeminy = steady[-1], []
    for _ in range(10):  # premature beat at 0.6 RR, compensatory pause 1.4 RR
        bigeminy += [t + int(0.6 * rr), t + 2 * rr]
        t += 2 * rr
    feats = rr_features(np.array(steady + bigeminy), fs)
    premature = np.arange(60, 80, 2)
    assert np.allclose(feats[premature, 4], 0.6, atol=0.01) and np.allclose(feats[premature, 5], 1.4, atol=0.01)
    assert np.allclose(feats[:, 4:6], feats[:, :2] / (rr / fs))  # the record's median RR is the steady RR
    after = premature + 1  # the beat after a premature beat: its neighbours' intervals show the pattern
    assert np.allclose(feats[after[:-1], 6], 0.6, atol=0.01) and np.allclose(feats[after[:-1], 7], 1.4, atol=0.01)
    assert np.allclose(feats[premature, 8], 0.6 / 1.4, atol=0.01)


def test_rr_columns_0_to_10_by_hand():
    """Each ratio column against values worked out by hand, on a record whose mean RR (0.943 s) is not its median
    (1 s) and where pre- and post-RR, the local and the wide trailing means differ: a swapped pair of columns or a
    wrong reference (mean for median, the local mean for the wide one) changes some entry here."""
    # RR 1, 1, 1, 0.6, 1, 1, 1 s: beat 4 is premature; local=2 and wide=3 intervals
    feats = rr_features(np.array([0, 10, 20, 30, 36, 46, 56, 66]), 10.0, local=2, wide=3)
    w = 1 / ((1 + 1 + 0.6) / 3)  # beat 5: pre-RR 1 s over the wide mean of 1, 1, 0.6
    expected = {  # pre, post, pre/loc, post/loc, pre/rec, post/rec, prev_pre/rec, next_post/rec, pre/post, pre/wide, post/wide
        2: [1, 1, 1, 1, 1, 1, 1, 0.6, 1, 1, 1],
        3: [1, 0.6, 1, 0.6, 1, 0.6, 1, 1, 1 / 0.6, 1, 0.6],
        4: [0.6, 1, 0.6, 1, 0.6, 1, 1, 1, 0.6, 0.6, 1],
        5: [1, 1, 1.25, 1.25, 1, 1, 0.6, 1, 1, w, w],
    }
    for beat, row in expected.items():
        np.testing.assert_allclose(feats[beat, :11], row, rtol=1e-5, err_msg=f"beat {beat}")


def test_irregularity_tells_atrial_fibrillation_from_an_isolated_premature_beat():
    """Columns 11-12 measure the spread of successive RR differences around a beat: zero in a steady
    rhythm, small around one premature beat, large in an irregular (AF-like) stretch; column 13 is one
    value for the whole record."""
    fs, rr = 360.0, 360
    rng = np.random.default_rng(0)
    steady = np.arange(80) * rr
    premature = steady.copy()
    premature[40] -= int(0.4 * rr)  # one beat 0.6 RR early, the next one on time
    af = np.concatenate([steady, steady[-1] + np.cumsum(rng.uniform(0.5, 1.5, 80) * rr).astype(int)])
    f_steady, f_pvc, f_af = rr_features(steady, fs), rr_features(premature, fs), rr_features(af, fs)
    assert np.allclose(f_steady[:, 11:], 0.0)
    assert 0 < f_pvc[40, 11] < f_af[120, 11] and f_af[120, 11] > 0.2
    assert np.allclose(f_af[:70, 11], 0.0)  # more than `local` beats before the irregular stretch
    assert np.allclose(f_af[:, 13], f_af[0, 13]) and f_af[0, 13] > f_pvc[0, 13]
