"""The scripts under docs/ that a user runs by hand."""

from __future__ import annotations

import subprocess

from conftest import ROOT


def test_check_pi_aarch64_refuses_a_host_python_without_the_project_before_downloading(tmp_path):
    """docs/PI_LATENCY.md ran it with the default PYTHON (python3), which here has neither ecg-automl's predict nor
    LiteRT: it unpacked a Debian base, qemu and the aarch64 wheels (minutes, 1.3 GB) and only then failed on the
    host's predict. It now stops first, naming PYTHON."""
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\necho \"ModuleNotFoundError: No module named 'ai_edge_litert'\" >&2\nexit 1\n")
    fake.chmod(0o755)
    work = tmp_path / "work"
    proc = subprocess.run(["bash", str(ROOT / "docs" / "check_pi_aarch64.sh"), str(tmp_path / "m.tflite"), "100"],
                          env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PYTHON": str(fake),
                               "WORK": str(work)},
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert f"error: {fake} cannot import ecg-automl's predict and LiteRT" in proc.stderr
    assert "PYTHON=.venv/bin/python" in proc.stderr
    assert not work.exists()
