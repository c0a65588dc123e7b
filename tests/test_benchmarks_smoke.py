"""Smoke test of the benchmark scripts: both run in --quick mode on real MIT-BIH beats and write a complete
JSON result and a PNG plot (about 2-3 minutes on 2 busy cores)."""

from __future__ import annotations

import json
import math
import subprocess
import sys

from conftest import ROOT

RATES = ("accuracy", "sensitivity", "specificity", "ppv", "f1", "roc_auc")
VERSIONS = ("python", "tensorflow", "keras", "ai-edge-litert", "optuna", "numpy")


def _run(script: str, out_dir, env) -> dict:
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), "--quick", "--out-dir", str(out_dir)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=420)
    assert proc.returncode == 0, f"{script} exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    stem = script.removesuffix(".py")
    js, png = out_dir / f"{stem}_quick.json", out_dir / f"{stem}_quick.png"
    assert png.exists() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    result = json.loads(js.read_text())
    assert result["mode"] == "quick" and script in result["command"] and "--quick" in result["command"]
    m = result["machine"]
    assert m["logical_cpus"] >= 1 and m["lscpu_model_name"]
    assert len(m["loadavg_start"]) == 3 and len(m["loadavg_end"]) == 3
    assert all(result["versions"][k] for k in VERSIONS)
    return result


def _rate(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x) and 0.0 <= x <= 1.0


def test_quality_and_pipeline_cost_quick(tmp_path, cli_env):
    q = _run("quality.py", tmp_path, cli_env)
    assert q["settings"]["seeds"] == [0] and q["settings"]["epochs"] == 1
    res = q["results"]
    for arm in ("inter_patient_keras", "inter_patient_int8", "beat_level_split"):
        med = res[arm]["median"]
        for k in RATES:
            assert _rate(med[k]), (arm, k, med[k])
        assert _rate(med["threshold"])
        assert {"flagged_N", "flagged_S", "flagged_V"} <= set(med) and all(_rate(med[f"flagged_{c}"]) for c in "NSV")
        seed0 = res[arm]["per_seed"][0]
        cm = seed0["confusion_matrix"]
        assert cm["tn"] + cm["fp"] + cm["fn"] + cm["tp"] == seed0["test_beats"] == seed0["n"]
    ip = res["inter_patient_keras"]
    assert ip["train_beats"] <= 4100 and ip["test_beats"] > 40_000  # ~4,000 DS1 beats; every DS2 beat
    assert ip["per_seed"][0]["oof"]["folds"] == 3
    assert _rate(res["int8_vs_keras"]["decision_agreement"])
    leak = res["beat_level_split"]["leak"]
    assert leak["patients_on_both_sides"] > 0 and leak["check_no_leak_failed"] is True
    assert "context_published_not_measured" in q and "de Chazal" in q["context_published_not_measured"]["inter_patient_de_chazal_style"]

    p = _run("pipeline_cost.py", tmp_path, cli_env)
    s = p["summary"]
    assert 0 < s["data_prep_warm_seconds"] < s["data_prep_cold_seconds"]
    assert p["data_prep"][0]["cold_cache_hit"] is False and p["data_prep"][0]["warm_cache_hit"] is True
    assert s["steady_beats_per_s"] > 0 and s["first_epoch_beats_per_s"] > 0
    assert s["gate_seconds"] > 0 and s["gate_pi4_estimate_ms"] > 0
    for k in ("trial_training_share", "trial_other_share", "pooled_other_share", "gate_share_if_enabled"):
        assert _rate(s[k]), (k, s[k])
    trials = p["study"][0]["trials"]
    assert len(trials) == 2 and all(t["state"] == "COMPLETE" and t["folds"] == 2 for t in trials)
    for t in trials:
        assert 0 < t["training_seconds"] < t["total_seconds"]
        assert math.isclose(t["training_seconds"] + t["other_seconds"], t["total_seconds"])
