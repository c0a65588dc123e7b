"""Estimate a Raspberry Pi 4 LiteRT latency from one measured on the development host (no TensorFlow).

    pi_ms = exp(a + b * log(host_ms))            estimate_pi4_ms(host_ms, dtype="float32", pi_threads=1)

We have no Pi, so the model is calibrated on *published* Raspberry Pi 4 (Cortex-A72, 4 x 1.5 GHz) TFLite
latencies of standard architectures, paired with the latency of the same architecture rebuilt here
(``keras.applications``, random weights; float32, or full-integer int8 with a random representative set),
converted with ``tf.lite.TFLiteConverter`` and timed on this host with the LiteRT interpreter and 1 thread.
Re-measure the host side and re-fit with ``python benchmarks/calibrate_pi.py`` (see docs/PI_LATENCY.md).
The fit belongs to the host it was measured on: on another machine, ``calibrate_pi.py --json FILE`` there and
``ECG_AUTOML_PI_CALIBRATION=FILE`` make the estimates use that host's own fit (:func:`active_calibration`);
without it, a warning says when this machine's CPU is not the calibration host's.

Host: ``lscpu`` model name "Intel(R) Xeon(R) Processor" (KVM guest, 2 vCPUs, AVX-512/VNNI/AMX flags), LiteRT
2.3.0, 1 thread (:data:`HOST_CPU`). ``host_ms`` below is the 5th percentile of >= 1,000 timed invokes pooled
over 21 interleaved rounds (load average 1.5-3.8 during that run; a repeat run gave host values within 6 %
and pi1 a = 3.022, b = 1.400); ``host_med`` is the median over rounds of the per-round medians.

Calibration points (every Pi number read at the source in ``CALIBRATION[i]["pi_source"]``)::

    id                     model                                 dtype  thr   pi_ms host_ms host_med ratio src
    deb-mnv2-f32           MobileNet v2 1.0 224                  float32  1  193.00   5.214   5.563  37.0 DEB
    deb-mnv2-q             MobileNet v2 1.0 224, 8-bit quantised int8     1  128.00   3.094   3.250  41.4 DEB
    deb-mnv1-q             MobileNet v1 0.25 128, 8-bit quant.   int8     1    4.44   0.357   0.379  12.4 DEB
    x814-mnv1-f32          MobileNet v1 1.0 224                  float32  1  312.00   8.397   8.972  37.2 #814
    krai-mnv1-025-128-f32  MobileNet v1 0.25 128                 float32  4    4.71   0.312   0.325  15.1 Krai
    krai-mnv1-025-128-q    MobileNet v1 0.25 128, uint8          int8     4    2.15   0.357   0.379   6.0 Krai
    krai-mnv1-100-224-f32  MobileNet v1 1.0 224                  float32  4   68.43   8.397   8.972   8.1 Krai
    krai-mnv1-100-224-q    MobileNet v1 1.0 224, uint8           int8     4   28.52   2.540   2.696  11.2 Krai
    krai-mnv2-100-224-f32  MobileNet v2 1.0 224                  float32  4   55.57   5.214   5.563  10.7 Krai
    krai-mnv2-100-224-q    MobileNet v2 1.0 224, uint8           int8     4   24.03   3.094   3.250   7.8 Krai
    krai-mnv2-035-96-f32   MobileNet v2 0.35 96                  float32  4    5.66   0.475   0.489  11.9 Krai
    xnn-mnv1-f32           MobileNet v1 1.0 224                  float32  4   75.00   8.397   8.972   8.9 XNN
    xnn-mnv2-f32           MobileNet v2 1.0 224                  float32  4   44.00   5.214   5.563   8.4 XNN
    xnn-mnv3l-f32          MobileNet v3 Large 1.0 224            float32  4   41.00   4.960   5.255   8.3 XNN
    xnn-mnv3s-f32          MobileNet v3 Small 1.0 224            float32  4   14.00   1.558   1.658   9.0 XNN

    DEB   DeepEdgeBench raw results, https://github.com/stephanballer/deepedgebench (results/results.py);
          paper arXiv 2108.09457
    #814  https://github.com/google/XNNPACK/issues/814 (a user's end2end-bench run, 64-bit Ubuntu)
    Krai  MLPerf Inference v1.1 open, https://github.com/mlcommons/inference_results_v1.1
          (open/Krai/results/rpi4coral-fan.on-tflite-v2.5.0-ruy/*/.../mlperf_log_summary.txt), Ubuntu 20.04 aarch64
    XNN   XNNPACK README "Raspberry Pi" table, https://github.com/google/XNNPACK#raspberry-pi, Raspbian 32-bit

Fits (:data:`FIT`) and leave-one-out relative error (:data:`CALIBRATION_ERROR`)::

    pi1          Pi 1 thread, all 4 points      a = 3.0010  b = 1.3779  LOO median 38 %, max 314 % (deb-mnv1-q)
    pi4_float32  Pi 4 threads, 8 float32 points a = 2.4231  b = 0.8571  LOO median 10 %, max  22 %
    pi4          Pi 4 threads, all 11 points    a = 2.2757  b = 0.9449  LOO median 19 %, max 116 % (used for int8)

The single-thread data do support a slope: the Pi/host ratio is 37-41 for the three 3-8 ms (host) models and
12.4 for the one sub-10 ms model (4.44 ms on the Pi); the size effect shows within int8 alone (41.4 vs 12.4),
so it is not a dtype effect, and a constant ratio (29.0; LOO median 33 %, max 209 %) overestimates that small
model 2.3x. The slope is fixed by that single small point, which is why its own leave-one-out error is
314 %: without it no small model is left to learn from. In-sample the pi1 fit is +10 % on it and -26..+21 %
on the others. The project's models (0.05-2 ms on this host) sit around and below that point; below host
0.357 ms the estimate extrapolates (0.32 ms at host 0.05 ms, a Pi/host ratio of 6.5). Treat a pi1 estimate
as uncertain by a factor of about 1.5, and measure on a real Pi with ``ecg-automl bench-server`` whenever the
number matters. The Pi thread counts of the Krai and XNN points are inferred (see ``pi_setup``), the width of
deb-mnv1-q too, and the Pi runtimes (tflite_runtime 2021, TFLite 2.5 ruy, bare XNNPACK) are not the host's
LiteRT 2.3 + XNNPACK.
"""

from __future__ import annotations

import json
import logging
import math
import os
import statistics
from pathlib import Path
from typing import Any, Iterable, Sequence

log = logging.getLogger("ecg_automl")

#: A host calibration of one's own (``benchmarks/calibrate_pi.py --json FILE`` on that host) replaces the
#: shipped fit when this environment variable names the file.
CALIBRATION_ENV = "ECG_AUTOML_PI_CALIBRATION"

#: ``lscpu`` "Model name" of the machine the host side was measured on, and what else it reported.
#: Its ``model name`` alone, compared with this machine's (:func:`host_cpu_name`) to warn when they differ.
HOST_CPU_NAME = "Intel(R) Xeon(R) Processor"
HOST_CPU = ("Intel(R) Xeon(R) Processor (KVM guest, 2 vCPUs, family 6 model 167 as reported, AVX-512 incl. "
            "VNNI/BF16/FP16 and AMX flags), Linux 6.18 x86_64, LiteRT (ai-edge-litert) 2.3.0, 1 thread")

_DEB = ("https://github.com/stephanballer/deepedgebench/blob/e1056efd964d24dd658fabadbb804a2cc0f6b32a/"
        "results/results.py")
_DEB_SETUP = ("DeepEdgeBench (Baller et al., IC2E'21, arXiv 2108.09457), raw results of the authors' repository: "
              "Raspberry Pi 4, tflite_runtime Python API, interpreter built without num_threads, i.e. TFLite's "
              "default of 1 CPU thread (kDefaultNumThreadpoolThreads = 1 in cpu_backend_context.cc); "
              "mean of the 5,000 ImageNet images of the 'ts_rpi_tflite_*' run; Pi OS not stated in the files read")
_X814 = "https://github.com/google/XNNPACK/issues/814"
_X814_SETUP = ("XNNPACK end2end-bench (XNNPACK operators called directly, not the TFLite interpreter) on a "
               "Raspberry Pi 4 under 64-bit Ubuntu, 4 x 1500 MHz, performance governor, 2020-07-09; "
               "'FP32MobileNetV1/T:1/real_time 312008 us' in a user's report (their T:4 figure, 142 ms, is "
               "about twice the XNNPACK README's 75 ms, so this build may be slow)")
_KRAI = ("https://github.com/mlcommons/inference_results_v1.1/blob/912dcdb9163736beca40a1f86e25d1305deab549/"
         "open/Krai/results/rpi4coral-fan.on-tflite-v2.5.0-ruy/")
_KRAI_SETUP = ("MLPerf Inference v1.1 open division, Krai, system rpi4coral-fan.on-tflite-v2.5.0-ruy: Raspberry "
               "Pi 4 (Cortex-A72 @ 1500 MHz, 4 GiB), Ubuntu 20.04.2 aarch64, TFLite 2.5.0 (ruy, C++), fan on; "
               "50th-percentile SingleStream latency from mlperf_log_summary.txt; 'quantized' = the uint8 models "
               "of TF's hosted-model list. The thread count is not in the files: multi-threaded (4) is inferred "
               "from MobileNet v1 1.0 224 float taking 68 ms here against 193-312 ms single-threaded")
_XNN = ("https://github.com/google/XNNPACK/blob/c363704855e9b80f417e6c64a8b6da20d8e58345/README.md"
        "#raspberry-pi")
_XNN_SETUP = ("XNNPACK README, 'multi-threaded performance' table, RPi 4 (BCM2711) column: end2end-bench "
              "(XNNPACK operators directly), Raspbian Buster (32-bit), randomized weights, 2020-02-12; "
              "4 threads = one per core (the README's phone table uses one thread per big core)")

#: Every calibration point. ``pi_ms`` is a published Raspberry Pi 4 latency (``pi_source``, read there, with
#: its setup in ``pi_setup``); ``host_ms`` is the same architecture rebuilt with ``keras.applications``
#: (random weights), converted here and timed on :data:`HOST_CPU` with 1 thread: the 5th percentile of all
#: timed invokes (the contention-free latency of this shared 2-vCPU machine; the fitted value) and
#: ``host_median_ms`` the median over rounds of the per-round medians (inflated by the machine's load for the
#: larger models). Re-measure with ``benchmarks/calibrate_pi.py``.
CALIBRATION: list[dict] = [
    # ---- single-threaded Pi: the fit used by default -------------------------------------------------------
    dict(id="deb-mnv2-f32", model="MobileNet v2 1.0 224", arch="mobilenet_v2", alpha=1.0, res=224,
         dtype="float32", pi_threads=1, pi_ms=193.0, host_ms=5.214, host_median_ms=5.563,
         pi_stat="mean, 'ts_rpi_tflite_mn2' inf_durations_avg = 0.19301 s", pi_setup=_DEB_SETUP, pi_source=_DEB),
    dict(id="deb-mnv2-q", model="MobileNet v2 1.0 224, 8-bit quantised", arch="mobilenet_v2", alpha=1.0,
         res=224, dtype="int8", pi_threads=1, pi_ms=128.0, host_ms=3.094, host_median_ms=3.25,
         pi_stat="mean, 'ts_rpi_tflite_mn2q' inf_durations_avg = 0.12801 s", pi_setup=_DEB_SETUP, pi_source=_DEB),
    dict(id="deb-mnv1-q", model="MobileNet v1 0.25 128, 8-bit quantised", arch="mobilenet_v1", alpha=0.25,
         res=128, dtype="int8", pi_threads=1, pi_ms=4.44, host_ms=0.357, host_median_ms=0.379,
         pi_stat="mean, 'ts_rpi_tflite_mn1q' inf_durations_avg = 0.0044407 s; the width 0.25 is inferred: the "
                 "same benchmark's Arduino port of this model is a ~0.5 MB TOCO uint8 flatbuffer with a "
                 "128x128x3 input, and its top-1 on the 5,000 images is 0.361",
         pi_setup=_DEB_SETUP, pi_source=_DEB),
    dict(id="x814-mnv1-f32", model="MobileNet v1 1.0 224", arch="mobilenet_v1", alpha=1.0, res=224,
         dtype="float32", pi_threads=1, pi_ms=312.0, host_ms=8.397, host_median_ms=8.972,
         pi_stat="google-benchmark real_time, --benchmark_min_time=5", pi_setup=_X814_SETUP, pi_source=_X814),
    # ---- 4-threaded Pi (host still 1 thread): secondary fit, pi_threads=4 --------------------------------
    dict(id="krai-mnv1-025-128-f32", model="MobileNet v1 0.25 128", arch="mobilenet_v1", alpha=0.25, res=128,
         dtype="float32", pi_threads=4, pi_ms=4.710, host_ms=0.312, host_median_ms=0.325,
         pi_stat="p50 4710108 ns", pi_setup=_KRAI_SETUP, pi_source=_KRAI + "mobilenet-v1-0.25-128-non-quantized/"
         "singlestream/performance/run_1/mlperf_log_summary.txt"),
    dict(id="krai-mnv1-025-128-q", model="MobileNet v1 0.25 128, uint8", arch="mobilenet_v1", alpha=0.25,
         res=128, dtype="int8", pi_threads=4, pi_ms=2.153, host_ms=0.357, host_median_ms=0.379,
         pi_stat="p50 2152567 ns", pi_setup=_KRAI_SETUP, pi_source=_KRAI + "mobilenet-v1-0.25-128-quantized/"
         "offline/performance/run_1/mlperf_log_summary.txt"),
    dict(id="krai-mnv1-100-224-f32", model="MobileNet v1 1.0 224", arch="mobilenet_v1", alpha=1.0, res=224,
         dtype="float32", pi_threads=4, pi_ms=68.427, host_ms=8.397, host_median_ms=8.972,
         pi_stat="p50 68427325 ns", pi_setup=_KRAI_SETUP, pi_source=_KRAI + "mobilenet-v1-1.0-224-non-quantized/"
         "offline/performance/run_1/mlperf_log_summary.txt"),
    dict(id="krai-mnv1-100-224-q", model="MobileNet v1 1.0 224, uint8", arch="mobilenet_v1", alpha=1.0, res=224,
         dtype="int8", pi_threads=4, pi_ms=28.523, host_ms=2.54, host_median_ms=2.696,
         pi_stat="p50 28523266 ns", pi_setup=_KRAI_SETUP, pi_source=_KRAI + "mobilenet-v1-1.0-224-quantized/"
         "singlestream/performance/run_1/mlperf_log_summary.txt"),
    dict(id="krai-mnv2-100-224-f32", model="MobileNet v2 1.0 224", arch="mobilenet_v2", alpha=1.0, res=224,
         dtype="float32", pi_threads=4, pi_ms=55.573, host_ms=5.214, host_median_ms=5.563,
         pi_stat="p50 55572980 ns", pi_setup=_KRAI_SETUP, pi_source=_KRAI + "mobilenet-v2-1.0-224-non-quantized/"
         "offline/performance/run_1/mlperf_log_summary.txt"),
    dict(id="krai-mnv2-100-224-q", model="MobileNet v2 1.0 224, uint8", arch="mobilenet_v2", alpha=1.0, res=224,
         dtype="int8", pi_threads=4, pi_ms=24.031, host_ms=3.094, host_median_ms=3.25,
         pi_stat="p50 24031350 ns", pi_setup=_KRAI_SETUP, pi_source=_KRAI + "mobilenet-v2-1.0-224-quantized/"
         "singlestream/performance/run_1/mlperf_log_summary.txt"),
    dict(id="krai-mnv2-035-96-f32", model="MobileNet v2 0.35 96", arch="mobilenet_v2", alpha=0.35, res=96,
         dtype="float32", pi_threads=4, pi_ms=5.655, host_ms=0.475, host_median_ms=0.489,
         pi_stat="p50 5654583 ns", pi_setup=_KRAI_SETUP, pi_source=_KRAI + "mobilenet-v2-0.35-96-non-quantized/"
         "offline/performance/run_1/mlperf_log_summary.txt"),
    dict(id="xnn-mnv1-f32", model="MobileNet v1 1.0 224", arch="mobilenet_v1", alpha=1.0, res=224,
         dtype="float32", pi_threads=4, pi_ms=75.0, host_ms=8.397, host_median_ms=8.972,
         pi_stat="end2end-bench, --benchmark_min_time=5", pi_setup=_XNN_SETUP, pi_source=_XNN),
    dict(id="xnn-mnv2-f32", model="MobileNet v2 1.0 224", arch="mobilenet_v2", alpha=1.0, res=224,
         dtype="float32", pi_threads=4, pi_ms=44.0, host_ms=5.214, host_median_ms=5.563,
         pi_stat="end2end-bench, --benchmark_min_time=5", pi_setup=_XNN_SETUP, pi_source=_XNN),
    dict(id="xnn-mnv3l-f32", model="MobileNet v3 Large 1.0 224", arch="mobilenet_v3_large", alpha=1.0, res=224,
         dtype="float32", pi_threads=4, pi_ms=41.0, host_ms=4.96, host_median_ms=5.255,
         pi_stat="end2end-bench, --benchmark_min_time=5", pi_setup=_XNN_SETUP, pi_source=_XNN),
    dict(id="xnn-mnv3s-f32", model="MobileNet v3 Small 1.0 224", arch="mobilenet_v3_small", alpha=1.0, res=224,
         dtype="float32", pi_threads=4, pi_ms=14.0, host_ms=1.558, host_median_ms=1.658,
         pi_stat="end2end-bench, --benchmark_min_time=5", pi_setup=_XNN_SETUP, pi_source=_XNN),
]

#: Fitted constants: ``log(pi_ms) = a + b * log(host_ms)``. "pi1": single-threaded Pi (used by default);
#: "pi4_float32" / "pi4": 4-threaded Pi, float32 points only / all points (used for int8).
FIT: dict[str, dict] = {
    "pi1": {"a": 3.001, "b": 1.3779, "n": 4, "host_range_ms": [0.357, 8.397]},
    "pi4_float32": {"a": 2.4231, "b": 0.8571, "n": 8, "host_range_ms": [0.312, 8.397]},
    "pi4": {"a": 2.2757, "b": 0.9449, "n": 11, "host_range_ms": [0.312, 8.397]},
}

#: Leave-one-out relative error of each fit: every point predicted by the fit to the other points of its
#: group, ``|predicted - published| / published``.
CALIBRATION_ERROR: dict[str, dict] = {
    "pi1": {"n": 4, "loo_median": 0.384, "loo_max": 3.139, "loo_worst": "deb-mnv1-q",
            "loo_per_point": {"deb-mnv2-f32": 0.021, "deb-mnv2-q": 0.327, "deb-mnv1-q": 3.139,
                              "x814-mnv1-f32": 0.441}},
    "pi4_float32": {"n": 8, "loo_median": 0.096, "loo_max": 0.225, "loo_worst": "krai-mnv1-025-128-f32",
                    "loo_per_point": {"krai-mnv1-025-128-f32": 0.225, "krai-mnv1-100-224-f32": 0.028,
                                      "krai-mnv2-100-224-f32": 0.193, "krai-mnv2-035-96-f32": 0.087,
                                      "xnn-mnv1-f32": 0.089, "xnn-mnv2-f32": 0.067, "xnn-mnv3l-f32": 0.103,
                                      "xnn-mnv3s-f32": 0.212}},
    "pi4": {"n": 11, "loo_median": 0.19, "loo_max": 1.163, "loo_worst": "krai-mnv1-025-128-q",
            "loo_per_point": {"krai-mnv1-025-128-f32": 0.432, "krai-mnv1-025-128-q": 1.163,
                              "krai-mnv1-100-224-f32": 0.079, "krai-mnv1-100-224-q": 0.193,
                              "krai-mnv2-100-224-f32": 0.19, "krai-mnv2-100-224-q": 0.199,
                              "krai-mnv2-035-96-f32": 0.191, "xnn-mnv1-f32": 0.039, "xnn-mnv2-f32": 0.062,
                              "xnn-mnv3l-f32": 0.091, "xnn-mnv3s-f32": 0.064}},
}


# --------------------------------------------------------------------------------------------------------------
# estimate
# --------------------------------------------------------------------------------------------------------------
_DTYPES = {"float32": "float32", "fp32": "float32", "float": "float32", "fp16": "float32", "float16": "float32",
           "dynamic": "float32", "int8": "int8", "uint8": "int8"}


def _fit_name(dtype: str, pi_threads: int) -> str:
    try:
        kind = _DTYPES[str(dtype).lower()]
    except KeyError:
        raise ValueError(f"unknown dtype {dtype!r} (expected one of {', '.join(sorted(_DTYPES))})") from None
    if pi_threads == 1:
        return "pi1"
    if pi_threads == 4:
        return "pi4_float32" if kind == "float32" else "pi4"
    raise ValueError(f"pi_threads must be 1 or 4 (the calibrated thread counts), not {pi_threads!r}")


def estimate_pi4_ms(host_ms: float, dtype: str = "float32", *, pi_threads: int = 1) -> float:
    """Estimated Raspberry Pi 4 latency (ms) of a model whose LiteRT latency on the calibration host
    (:data:`HOST_CPU`, 1 thread) is ``host_ms``.

    ``host_ms`` should be a contention-free host latency: on a quiet host the ``median_ms`` of
    :func:`ecg_automl.tflite.measure_latency`; on a loaded one a low percentile (see ``docs/PI_LATENCY.md``).
    ``dtype``: ``"float32"`` (also ``fp32``/``fp16``/``dynamic``, not calibrated separately) or ``"int8"``;
    the single-thread fit is shared by both (the data do not separate them). ``pi_threads``: 1 (default) or 4
    (the Pi running the interpreter with 4 threads; the host side is still 1 thread).
    Typical error: :data:`CALIBRATION_ERROR`; a real measurement with ``ecg-automl bench-server`` on a Pi
    beats this estimate.
    """
    host_ms = float(host_ms)
    if not math.isfinite(host_ms) or host_ms <= 0:
        raise ValueError(f"host_ms must be a positive number of milliseconds, not {host_ms!r}")
    fit = active_calibration()["fit"][_fit_name(dtype, pi_threads)]
    return math.exp(fit["a"] + fit["b"] * math.log(host_ms))


def extrapolation_note(host_ms: float, dtype: str = "float32", *, pi_threads: int = 1) -> str | None:
    """What to say of :func:`estimate_pi4_ms`'s figure for ``host_ms`` when it lies outside the host latencies the
    fit was measured over (None inside): most of this project's models time under its smallest point, so their
    Pi estimates extrapolate, by a slope that one point sets (docs/PI_LATENCY.md)."""
    low, high = active_calibration()["fit"][_fit_name(dtype, pi_threads)].get("host_range_ms") or (None, None)
    if low is None or low <= float(host_ms) <= high:
        return None
    return (f"extrapolated: {float(host_ms):.3g} ms here is outside the {low:g}-{high:g} ms of host time the "
            f"host->Pi fit was measured over (docs/PI_LATENCY.md)")


class CalibrationError(ValueError):
    """The host calibration file named by ``$ECG_AUTOML_PI_CALIBRATION`` cannot be used."""


_ACTIVE: dict[str, dict[str, Any]] = {}


def active_calibration() -> dict[str, Any]:
    """The fit :func:`estimate_pi4_ms` uses and where it comes from: the shipped one (measured on
    :data:`HOST_CPU_NAME`), or this host's own from the file ``$ECG_AUTOML_PI_CALIBRATION`` names.

    The fit maps one host's timings: another CPU runs each model at its own speed ratio (an AMD EPYC guest
    ran the calibration MobileNets at 0.64-1.6x the Xeon's speed and this project's int8 members 1.4x
    faster). One member's Pi estimate: 0.90 ms from the Xeon's timing and fit, 0.54 ms from the EPYC's timing
    with the Xeon's fit, 1.43 ms with the EPYC's own fit (docs/PI_LATENCY.md, "Another host"). So when this
    machine's CPU is not the calibration host's, a warning says so once."""
    path = os.environ.get(CALIBRATION_ENV, "").strip()
    if path not in _ACTIVE:
        if path:
            host_cpu, fit = _load_host_calibration(Path(path))
            source = path
        else:
            host_cpu, fit, source = HOST_CPU_NAME, FIT, "shipped"
        here = host_cpu_name()
        cal = {"source": source, "host_cpu": host_cpu, "this_host_cpu": here, "matches_this_host": host_cpu == here,
               "fit": fit}
        if not cal["matches_this_host"]:
            log.warning("Raspberry Pi 4 latency estimates: the host->Pi fit was measured on %r (%s), this machine "
                        "is %r. Hosts differ in speed model by model, so the estimates (and a latency gate built on "
                        "them) may be off, by 1.6x or more for sub-0.1 ms models (docs/PI_LATENCY.md). Run "
                        "`python benchmarks/calibrate_pi.py --json FILE` here and set %s=FILE, or measure on a Pi "
                        "with `ecg-automl bench-server`.",
                        host_cpu, "shipped fit" if source == "shipped" else source, here, CALIBRATION_ENV)
        _ACTIVE[path] = cal
    return _ACTIVE[path]


def calibration_record() -> dict[str, Any]:
    """:func:`active_calibration` without the fit: which fit the estimates use, measured on which CPU (for
    export sidecars and result files)."""
    return {k: v for k, v in active_calibration().items() if k != "fit"}


def _load_host_calibration(path: Path) -> tuple[str, dict]:
    """``(host CPU, FIT)`` of a ``calibrate_pi.py --json`` file: its host values re-fitted against the
    published Pi latencies of :data:`CALIBRATION` (matched by id)."""
    where = f"{CALIBRATION_ENV}={path}"
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise CalibrationError(f"{where}: no such file (write one with benchmarks/calibrate_pi.py --json)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CalibrationError(f"{where}: not a calibrate_pi.py --json file ({exc})") from None
    measured = doc.get("points") if isinstance(doc, dict) else None
    if not isinstance(measured, list):
        raise CalibrationError(f"{where}: not a calibrate_pi.py --json file (no 'points' list)")
    if doc.get("mode") == "quick":
        raise CalibrationError(f"{where}: a calibrate_pi.py --quick file (a smoke run that times 3 of the models "
                               "and fits nothing); run benchmarks/calibrate_pi.py --json without --quick")
    host = {p.get("id"): p.get("host_ms") for p in measured if isinstance(p, dict)}
    points = []
    for p in CALIBRATION:
        value = host.get(p["id"])
        if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise CalibrationError(f"{where}: calibration point {p['id']!r} has no positive host_ms "
                                   f"(got {value!r}); re-run benchmarks/calibrate_pi.py --json")
        points.append({**p, "host_ms": float(value)})
    fit, _ = fit_calibration(points)
    return str(doc.get("host_cpu") or "unknown"), fit


# --------------------------------------------------------------------------------------------------------------
# fitting (used by benchmarks/calibrate_pi.py and the tests; pure Python, no TensorFlow)
# --------------------------------------------------------------------------------------------------------------
def fit_loglog(host_ms: Sequence[float], pi_ms: Sequence[float]) -> tuple[float, float]:
    """Least squares ``log(pi) = a + b log(host)``; returns ``(a, b)``."""
    x = [math.log(v) for v in host_ms]
    y = [math.log(v) for v in pi_ms]
    if len(x) < 2:
        raise ValueError("a log-log fit needs at least two points")
    mx, my = statistics.fmean(x), statistics.fmean(y)
    sxx = sum((xi - mx) ** 2 for xi in x)
    if sxx == 0:
        raise ValueError("a log-log fit needs at least two different host latencies")
    b = sum((xi - mx) * (yi - my) for xi, yi in zip(x, y)) / sxx
    return my - b * mx, b


def fit_ratio(host_ms: Sequence[float], pi_ms: Sequence[float]) -> float:
    """Least squares ``log(pi) = a + log(host)`` (a constant ratio ``exp(a)``); returns ``a``."""
    return statistics.fmean(math.log(p) - math.log(h) for h, p in zip(host_ms, pi_ms))


def loo_errors(host_ms: Sequence[float], pi_ms: Sequence[float], slope: bool = True) -> list[float]:
    """Leave-one-out relative errors ``|pred - pi| / pi`` of the log-log (``slope``) or constant-ratio fit."""
    errs = []
    for i in range(len(host_ms)):
        hx = [v for j, v in enumerate(host_ms) if j != i]
        py = [v for j, v in enumerate(pi_ms) if j != i]
        a, b = fit_loglog(hx, py) if slope else (fit_ratio(hx, py), 1.0)
        pred = math.exp(a + b * math.log(host_ms[i]))
        errs.append(abs(pred - pi_ms[i]) / pi_ms[i])
    return errs


#: Which calibration points each shipped fit uses.
GROUPS = {"pi1": lambda p: p["pi_threads"] == 1,
          "pi4_float32": lambda p: p["pi_threads"] == 4 and p["dtype"] == "float32",
          "pi4": lambda p: p["pi_threads"] == 4}


def fit_calibration(points: Iterable[dict], digits: int = 4) -> tuple[dict, dict]:
    """``(FIT, CALIBRATION_ERROR)`` of ``points`` (dicts with ``pi_threads``, ``dtype``, ``pi_ms``, ``host_ms``)."""
    points = list(points)
    fit, err = {}, {}
    for name, member in GROUPS.items():
        g = [p for p in points if member(p)]
        x, y = [p["host_ms"] for p in g], [p["pi_ms"] for p in g]
        a, b = fit_loglog(x, y)
        loo = loo_errors(x, y, slope=True)
        worst = max(range(len(g)), key=loo.__getitem__)
        fit[name] = {"a": round(a, digits), "b": round(b, digits), "n": len(g),
                     "host_range_ms": [min(x), max(x)]}
        err[name] = {"n": len(g), "loo_median": round(statistics.median(loo), 3), "loo_max": round(max(loo), 3),
                     "loo_worst": g[worst]["id"],
                     "loo_per_point": {p["id"]: round(e, 3) for p, e in zip(g, loo)}}
    return fit, err


def host_cpu_name() -> str:
    """``model name`` of this machine's first CPU (``/proc/cpuinfo``), else ``platform.processor()``."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()
