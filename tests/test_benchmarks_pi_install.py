"""benchmarks/pi_install.py's size table, offline: which installed distributions each of a package's own
requirements brings, and the inventory script it runs in the venv (here run in this one)."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
import pi_install as P  # noqa: E402


def _dists(**tree):
    return {name: {"version": "1", "bytes": size, "requires": reqs} for name, (size, reqs) in tree.items()}


def test_brought_by_splits_own_and_shared_requirements():
    # wfdb brings pandas and aiohttp; it and scipy require numpy, which is a root of its own; LiteRT and aiohttp
    # share attrs
    dists = _dists(wfdb=(1, ["pandas", "numpy", "scipy", "aiohttp"]), pandas=(80, ["numpy", "tzdata"]),
                   tzdata=(2, []), aiohttp=(5, ["attrs"]), attrs=(1, []), scipy=(140, ["numpy"]), numpy=(70, []),
                   litert=(60, ["numpy", "attrs"]), pyyaml=(3, ["not-installed"]))
    out = P.brought_by(["litert", "numpy", "scipy", "wfdb", "pyyaml"], dists)
    assert out["wfdb"] == {"bytes": 88, "distributions": ["pandas", "aiohttp", "tzdata", "wfdb"]}
    assert out["scipy"] == {"bytes": 140, "distributions": ["scipy"]}  # wfdb requires it too: still scipy's
    assert out["numpy"] == {"bytes": 70, "distributions": ["numpy"]}
    assert out["litert"] == {"bytes": 60, "distributions": ["litert"]}
    assert out["shared"] == {"bytes": 1, "distributions": ["attrs"]}
    assert out["pyyaml"]["distributions"] == ["pyyaml"]  # a requirement not installed (a marker's) is skipped
    assert sum(v["bytes"] for v in out.values()) == sum(d["bytes"] for d in dists.values())  # each byte once
    assert P.closure("wfdb", dists) == {"wfdb", "pandas", "numpy", "scipy", "tzdata", "aiohttp", "attrs"}
    assert [r["name"] for r in P.largest(dists, 2)] == ["scipy", "pandas"] and P.largest(dists, 1)[0]["mb"] == 0.0


def test_inventory_lists_this_venvs_distributions():
    proc = subprocess.run([sys.executable, "-c", P._INVENTORY], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    dists = json.loads(proc.stdout)
    assert dists["numpy"]["bytes"] > 10_000_000 and dists["scipy"]["bytes"] > dists["numpy"]["bytes"] / 2
    assert "numpy" in dists["scipy"]["requires"]  # markers evaluated, names normalised
    assert "numpy" in P.closure("wfdb", dists) and "pandas" in P.closure("wfdb", dists)


def test_tree_bytes_counts_apparent_and_allocated(tmp_path):
    (tmp_path / "a").write_bytes(b"x" * 5000)
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "b").write_bytes(b"y" * 100)
    apparent, allocated = P.tree_bytes(tmp_path)
    assert apparent == 5100 and allocated >= 4096
