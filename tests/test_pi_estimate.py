"""The Raspberry Pi 4 latency estimate: constants match the calibration data, inputs are checked, no TF."""

import math
import subprocess
import sys

import pytest

from ecg_automl.tflite import pi_estimate as pe


def test_constants_are_the_fit_of_the_calibration_table():
    fit, err = pe.fit_calibration(pe.CALIBRATION)
    assert fit == pe.FIT
    assert err == pe.CALIBRATION_ERROR


def test_calibration_points_are_complete():
    ids = [p["id"] for p in pe.CALIBRATION]
    assert len(ids) == len(set(ids))
    for p in pe.CALIBRATION:
        assert p["pi_ms"] > 0 and p["host_ms"] > 0 and p["host_median_ms"] >= p["host_ms"] * 0.9
        assert p["dtype"] in ("float32", "int8") and p["pi_threads"] in (1, 4)
        assert p["pi_source"].startswith("https://github.com/") and p["pi_setup"] and p["pi_stat"]
    # at least one small model (under 10 ms on the Pi) in the default single-thread fit
    assert any(p["pi_threads"] == 1 and p["pi_ms"] < 10 for p in pe.CALIBRATION)


def test_estimate_follows_the_fit():
    small = next(p for p in pe.CALIBRATION if p["id"] == "deb-mnv1-q")
    est = pe.estimate_pi4_ms(small["host_ms"], "int8")
    assert est == pytest.approx(small["pi_ms"], rel=0.15)
    xs = [0.05, 0.2, 1.0, 2.0, 10.0]
    for threads in (1, 4):
        for dtype in ("float32", "int8"):
            ys = [pe.estimate_pi4_ms(x, dtype, pi_threads=threads) for x in xs]
            assert all(y > 0 for y in ys) and ys == sorted(ys)
    # aliases resolve to the same fits
    assert pe.estimate_pi4_ms(1.0, "fp32") == pe.estimate_pi4_ms(1.0, "float32")
    assert pe.estimate_pi4_ms(1.0, "int8", pi_threads=4) == pytest.approx(
        math.exp(pe.FIT["pi4"]["a"]))


@pytest.mark.parametrize("host, dtype, threads", [(0.0, "float32", 1), (-1.0, "float32", 1),
                                                   (float("nan"), "int8", 1), (1.0, "int4", 1),
                                                   (1.0, "float32", 2)])
def test_bad_arguments(host, dtype, threads):
    with pytest.raises(ValueError):
        pe.estimate_pi4_ms(host, dtype, pi_threads=threads)


def test_loo_errors_of_a_perfect_power_law_are_zero():
    xs = [0.5, 1.0, 2.0, 4.0]
    ys = [3.0 * x ** 1.2 for x in xs]
    a, b = pe.fit_loglog(xs, ys)
    assert (math.exp(a), b) == (pytest.approx(3.0), pytest.approx(1.2))
    assert max(pe.loo_errors(xs, ys)) < 1e-9


def test_module_does_not_import_tensorflow():
    code = ("import sys; import ecg_automl.tflite.pi_estimate as m; m.estimate_pi4_ms(0.5); "
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
