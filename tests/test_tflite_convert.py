"""TFLite export of the Conv1D + LSTM classifier in all four modes, checked against Keras on real MIT-BIH beats.

Two small models are trained for one epoch on beats of DS1 patients (the ``small_mitdb`` fixture): a
one-layer LSTM, and a two-layer bidirectional LSTM with RR features. Each is exported as fp32, dynamic,
fp16 and int8 and compared with Keras on held-out DS2 patients. The bounds have headroom over what was
measured (fp32 max |dprob| <= 5e-7; fp16 <= 4e-4; dynamic <= 1.2e-2 with >= 99.3 % decision agreement;
int8 <= 5.3e-2 with >= 98.2 % agreement, on 900-3000 held-out beats of 2-epoch models).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]

BASE = {"input_length": 256, "rr_features": False, "stem_filters": 16, "kernel_size": 7, "res_blocks": 2,
        "conv_filters": 32, "pool": "max", "conv_dropout": 0.1, "lstm_units": 32, "lstm_layers": 1,
        "lstm_bidirectional": False, "lstm_downsample": 4, "dense_layers": 1, "dense_units": 32,
        "dense_dropout": 0.2, "optimizer": "adam", "learning_rate": 0.001, "batch_size": 128, "epochs": 1,
        "class_weight": "balanced"}
CONFIGS = {
    "lstm": BASE,
    "bilstm2_rr": {**BASE, "lstm_units": 16, "lstm_layers": 2, "lstm_bidirectional": True, "rr_features": True},
}
#: mode -> (max |prob_tflite - prob_keras|, minimum agreement of the 0.5 decision)
TOLERANCE = {"fp32": (1e-4, 1.0), "fp16": (5e-3, 0.99), "dynamic": (0.05, 0.97), "int8": (0.2, 0.95)}

N_TRAIN, N_TEST, N_REP = 2000, 1000, 300


@pytest.fixture(scope="module")
def beats(small_mitdb):
    rng = np.random.default_rng(0)
    search = np.flatnonzero(small_mitdb.split == "search")
    test = np.flatnonzero(small_mitdb.split == "test")
    return {"train": np.sort(rng.choice(search, N_TRAIN, replace=False)),
            "test": np.sort(rng.choice(test, N_TEST, replace=False)), "data": small_mitdb}


def _inputs(data, idx, config):
    from spaces.model import model_inputs

    return model_inputs(config, data.X[idx], data.rr[idx])


@pytest.fixture(scope="module")
def trained(beats):
    """name -> (config, keras model, held-out inputs, keras probabilities, representative inputs)."""
    import keras

    from spaces.model import build_model

    data = beats["data"]
    out = {}
    for name, config in CONFIGS.items():
        keras.utils.set_random_seed(0)
        model = build_model(config)
        x_train = _inputs(data, beats["train"], config)
        y_train = data.y[beats["train"]].astype("float32")
        pos = float(y_train.mean())
        model.fit(x_train, y_train, batch_size=config["batch_size"], epochs=config["epochs"], verbose=0,
                  class_weight={0: 0.5 / (1 - pos), 1: 0.5 / pos})
        x_test = _inputs(data, beats["test"], config)
        ref = model.predict(x_test, batch_size=256, verbose=0).ravel()
        rep = {k: v[:N_REP] for k, v in x_train.items()}
        out[name] = (config, model, x_test, ref, rep)
    return out


_CACHE: dict = {}


def _converted(trained, name, mode) -> bytes:
    if (name, mode) not in _CACHE:
        from ecg_automl.tflite import convert

        config, model, _, _, rep = trained[name]
        _CACHE[name, mode] = convert(model, config, mode, representative=rep if mode == "int8" else None)
    return _CACHE[name, mode]


def test_modes_and_argument_errors(trained):
    from ecg_automl.tflite import MODES, convert

    assert MODES == ("fp32", "dynamic", "fp16", "int8")
    config, model, _, _, rep = trained["lstm"]
    with pytest.raises(ValueError, match="unknown TFLite mode"):
        convert(model, config, "int4")
    with pytest.raises(ValueError, match="representative"):
        convert(model, config, "int8")
    with pytest.raises(ValueError, match="lacks inputs"):
        convert(model, config, "int8", representative={"rr": np.zeros((4, 4), np.float32)})
    with pytest.raises(ValueError, match="shape"):
        convert(model, config, "int8", representative={"ecg": rep["ecg"][:, :100]})


@pytest.mark.parametrize("mode", ["fp32", "dynamic", "fp16", "int8"])
@pytest.mark.parametrize("name", list(CONFIGS))
def test_convert_matches_keras(trained, name, mode):
    from ecg_automl.tflite import TFLiteModel, op_list

    config, _, x_test, ref, _ = trained[name]
    flat = _converted(trained, name, mode)
    ops = op_list(flat)
    assert not [o for o in ops if o.startswith("CUSTOM") or "Flex" in o], ops
    assert "UNIDIRECTIONAL_SEQUENCE_LSTM" in ops and "WHILE" not in ops, ops
    assert ("REVERSE_V2" in ops) == bool(config["lstm_bidirectional"]), ops

    tfl = TFLiteModel(flat)
    assert sorted(tfl.input_names) == sorted(x_test)
    if mode == "int8":
        assert set(tfl.input_dtypes.values()) == {np.dtype(np.int8)}
        assert np.dtype(tfl._out["dtype"]) == np.int8
        assert "QUANTIZE" in ops
    prob = tfl.predict(x_test)
    assert prob.shape == ref.shape and np.all(np.isfinite(prob))
    max_diff = float(np.abs(prob - ref).max())
    agree = float(((prob > 0.5) == (ref > 0.5)).mean())
    print(f"{name} {mode}: {len(flat) / 1024:.1f} KB, max|dprob| {max_diff:.2e}, agreement {agree:.4f}, "
          f"ops {ops}")
    bound, min_agree = TOLERANCE[mode]
    assert max_diff < bound
    assert agree >= min_agree


def test_lstm_state_does_not_leak_between_windows(trained):
    """The fused LSTM keeps its state in variable tensors: a window's result must not depend on the one before."""
    from ecg_automl.tflite import TFLiteModel

    _, _, x_test, _, _ = trained["bilstm2_rr"]
    tfl = TFLiteModel(_converted(trained, "bilstm2_rr", "fp32"))
    assert tfl.stateful
    pick = {k: v[[3, 7, 3]] for k, v in x_test.items()}
    p = tfl.predict(pick)
    assert p[0] == p[2]
    alone = tfl.predict({k: v[[7]] for k, v in x_test.items()})
    assert alone[0] == p[1]


def test_latency(trained, tmp_path):
    from ecg_automl.tflite import measure_latency

    for mode in ("fp32", "int8"):
        flat = _converted(trained, "lstm", mode)
        path = tmp_path / f"lstm_{mode}.tflite"
        path.write_bytes(flat)
        for source in (flat, path):
            lat = measure_latency(source, n_runs=30, warmup=5, threads=1)
            assert set(lat) == {"median_ms", "p90_ms", "mean_ms", "n_runs", "threads"}
            assert lat["n_runs"] == 30 and lat["threads"] == 1
            assert 0 < lat["median_ms"] <= lat["p90_ms"] < 100, lat
            assert lat["mean_ms"] > 0
    with pytest.raises(ValueError):
        measure_latency(flat, n_runs=0)


def test_runtime_needs_no_tensorflow(trained, tmp_path):
    """Prediction and latency import LiteRT and numpy only (the Pi has no TensorFlow)."""
    _, _, x_test, ref, _ = trained["bilstm2_rr"]
    model_path = tmp_path / "m.tflite"
    model_path.write_bytes(_converted(trained, "bilstm2_rr", "int8"))
    np.savez(tmp_path / "x.npz", **{k: v[:20] for k, v in x_test.items()})
    code = (
        "import sys, numpy as np\n"
        "from ecg_automl.tflite.runtime import TFLiteModel\n"
        "from ecg_automl.tflite.latency import measure_latency\n"
        "from ecg_automl.tflite import op_list\n"
        f"x = dict(np.load({str(tmp_path / 'x.npz')!r}))\n"
        f"p = TFLiteModel({str(model_path)!r}).predict(x)\n"
        f"measure_latency({str(model_path)!r}, n_runs=5, warmup=1)\n"
        f"assert 'UNIDIRECTIONAL_SEQUENCE_LSTM' in op_list({str(model_path)!r})\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'tf_keras')]\n"
        "assert not bad, bad\n"
        "print(' '.join(f'{v:.6f}' for v in p))\n"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    prob = np.array(proc.stdout.split(), dtype=float)
    assert prob.shape == (20,)
    assert np.abs(prob - ref[:20]).max() < TOLERANCE["int8"][0]


def test_an_ensemble_is_one_model_and_exports_to_one_file(trained):
    """build_ensemble copies its members into one flat graph: its output is their mean, and it converts
    (fused LSTMs, int8) like a single model, to one file about as large as the members together."""
    import keras

    from ecg_automl.tflite import TFLiteModel, convert, op_list
    from spaces import build_ensemble, build_model

    config, model, x_test, ref, rep = trained["bilstm2_rr"]
    keras.utils.set_random_seed(1)
    other = build_model(config)  # untrained: a second member that differs from the first
    ens = build_ensemble(config, [model, other])
    p_other = other.predict(x_test, batch_size=256, verbose=0).ravel()
    p_ens = ens.predict(x_test, batch_size=256, verbose=0).ravel()
    assert np.allclose(p_ens, (ref + p_other) / 2, atol=1e-6)
    flat = convert(ens, config, "int8", representative=rep)
    assert op_list(flat).count("UNIDIRECTIONAL_SEQUENCE_LSTM") == 1 and "WHILE" not in op_list(flat)
    prob = TFLiteModel(flat).predict(x_test)
    bound, min_agree = TOLERANCE["int8"]
    assert np.abs(prob - p_ens).max() < bound and ((prob > 0.5) == (p_ens > 0.5)).mean() >= min_agree
    assert 1.5 < len(flat) / len(_converted(trained, "bilstm2_rr", "int8")) < 2.5


def test_native_tflite_chatter_is_held_back_and_everything_else_written(trained, capfd):
    """Every export printed "fully_quantize: 1, inference_type: 6, ..." and every interpreter "INFO: Created
    TensorFlow Lite XNNPACK delegate for CPU." from native code (no environment variable silences them); they
    are dropped, and any other line written to file descriptor 2 meanwhile still reaches it, in order."""
    from ecg_automl.tflite import TFLiteModel, convert
    from ecg_automl.tflite.runtime import native_chatter_dropped

    config, model, x_test, _, rep = trained["lstm"]
    capfd.readouterr()
    flat = convert(model, config, "int8", representative=rep)
    TFLiteModel(flat).predict({k: v[:2] for k, v in x_test.items()})
    err = capfd.readouterr().err
    assert "fully_quantize" not in err and "XNNPACK delegate" not in err, err
    with native_chatter_dropped():
        os.write(2, b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\nERROR: a real problem\n")
        os.write(2, b"fully_quantize: 1, inference_type: 6\nWARNING: another\nlast line without newline")
    assert capfd.readouterr().err == "ERROR: a real problem\nWARNING: another\nlast line without newline"
