"""What the benchmark smoke tests share: running a script in --quick mode and checking its result file's
common parts (the tests are split over three files so that the two CI workers share them)."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys

from conftest import ROOT
RATES = ("accuracy", "sensitivity", "specificity", "ppv", "f1", "roc_auc")
VERSIONS = ("python", "tensorflow", "keras", "ai-edge-litert", "optuna", "numpy", "keras-tuner", "mlflow", "scikit-learn",
            "wfdb", "scipy")  # every library a figure depends on (KerasTuner is the search-efficiency baseline)


def run_quick(script: str, out_dir, env, *extra: str) -> dict:
    """Run ``benchmarks/<script> --quick`` into ``out_dir`` and check what every result file holds; its JSON."""
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), "--quick", "--out-dir", str(out_dir), *extra],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)  # a hang guard, generous for busy CI hosts
    assert proc.returncode == 0, f"{script} exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    stem = script.removesuffix(".py")
    js, png = out_dir / f"{stem}_quick.json", out_dir / f"{stem}_quick.png"
    assert png.exists() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert not (out_dir / f"{stem}_quick.partial.json").exists()  # the per-seed progress file goes with success
    result = json.loads(js.read_text())
    assert result["mode"] == "quick" and script in result["command"] and "--quick" in result["command"]
    m = result["machine"]
    assert m["logical_cpus"] >= 1 and m["lscpu_model_name"]
    assert len(m["loadavg_start"]) == 3 and len(m["loadavg_end"]) == 3
    cal = result["pi4_calibration"]  # which host->Pi fit the run's Pi estimates used, measured on which CPU
    assert cal["source"] == "shipped" and cal["host_cpu"] and cal["matches_this_host"] == (cal["host_cpu"] == m["lscpu_model_name"])
    assert all(result["versions"][k] for k in VERSIONS)
    from ecg_data.cache import PIPELINE_VERSION

    assert result["source"]["pipeline_version"] == PIPELINE_VERSION
    if (ROOT / ".git").exists():  # the commit that wrote the numbers
        assert re.fullmatch(r"[0-9a-f]{40}", result["source"]["git_commit"]) and isinstance(result["source"]["git_dirty"], bool)
    return result


def is_rate(x) -> bool:
    """A finite number from 0 to 1."""
    return isinstance(x, (int, float)) and math.isfinite(x) and 0.0 <= x <= 1.0

