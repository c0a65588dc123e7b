#!/usr/bin/env python
"""What the Raspberry Pi install costs: ``pip install "ecg-automl[pi]"`` into a fresh venv, timed and weighed.

Each repeat, in a temporary folder: a copy of this checkout's tracked files (what a user copies to the Pi), a
fresh venv made with ``--python`` (default: the Python running this script; 3.11 or later), and, timed,
``pip install --no-cache-dir "COPY[pi]"`` (cold: nothing from pip's cache; ``--quick`` lets pip use its cache).
Then the venv's size on disk (apparent bytes of its files, and blocks allocated), the size of each installed
distribution (its files as ``importlib.metadata`` lists them, read in the venv), what each of ecg-automl's own
requirements brings with it, and, in the venv, that the Pi commands work without TensorFlow:

* ``python -c "import ecg_automl.tflite"`` works, ``import tensorflow`` fails (not installed);
* ``ecg-automl predict --help`` and ``ecg-automl bench-server --help`` exit 0;
* ``search``, ``worker``, ``sync``, ``ui`` and ``export`` stop with exit 2 and one line naming the ``search`` extra.

The venv is deleted after each repeat; medians, minima and maxima over ``--repeats`` are reported. It NEEDS THE
PACKAGE INDEX (network; pip's own configuration, e.g. ``PIP_INDEX_URL``, is used): it checks that pip reaches it
first and stops with one line if not. Writes ``pi_install_<mode>.json`` and ``pi_install_<mode>.png`` (install
times, and the largest distributions' MB).

    python benchmarks/pi_install.py --quick          # 1 repeat, pip's cache allowed (~1-2 min)
    python benchmarks/pi_install.py                  # 3 cold repeats (102 s here, results/pi_install_full.json)
    python benchmarks/pi_install.py --python python3.12 --repeats 1
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402
from ecg_automl.install import install_hint  # noqa: E402

log = logging.getLogger("benchmarks.pi_install")

QUICK = {"repeats": 1}
FULL = {"repeats": 3}
MB = 1e6
#: The commands of the ``search`` extra, with arguments that reach their first import of it.
SEARCH_COMMANDS = [["search", "--study", "x"], ["worker", "--study", "x", "--storage", "sqlite:///o.db", "--trials", "1"],
                   ["sync", "--study", "x"], ["ui"], ["export", "--study", "x", "--out", "m.tflite"]]
#: What their one stderr line must hold: the product's hint for the extra (ecg-automl is not on PyPI, so it names the
#: install from a checkout or wheel).
EXTRA_LINE = install_hint("search")
#: Run by the venv's Python: every installed distribution's size and requirements (markers evaluated, no extras).
_INVENTORY = r"""
import json, importlib.metadata as md, os
try:
    from packaging.requirements import Requirement
except ImportError:
    from pip._vendor.packaging.requirements import Requirement
def norm(n): return n.lower().replace('_', '-').replace('.', '-')
out = {}
for d in md.distributions():
    size = 0
    for f in d.files or ():
        p = d.locate_file(f)
        try:
            size += os.path.getsize(p) if os.path.isfile(p) else 0
        except OSError:
            pass
    reqs = []
    for r in d.requires or ():
        req = Requirement(r)
        if req.marker is None or req.marker.evaluate({'extra': ''}):
            reqs.append(norm(req.name))
    out[norm(d.metadata['Name'])] = {'version': d.version, 'bytes': size, 'requires': sorted(set(reqs))}
print(json.dumps(out))
"""


# ---------------------------------------------------------------------------------------------------------
# pure logic: the size table
# ---------------------------------------------------------------------------------------------------------
def closure(name: str, dists: dict[str, dict[str, Any]]) -> set[str]:
    """``name`` and every installed distribution it requires, directly or through others."""
    seen, todo = set(), [name]
    while todo:
        n = todo.pop()
        if n in seen or n not in dists:
            continue
        seen.add(n)
        todo.extend(dists[n]["requires"])
    return seen


def brought_by(roots: list[str], dists: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """For each of ``roots`` (a package's own requirements): itself and the distributions only it brings (no other
    root requires them, directly or not), with their bytes, largest first; ``shared`` holds the rest of what the
    roots bring (required through two or more of them)."""
    reach = {r: closure(r, dists) for r in roots}
    out: dict[str, dict[str, Any]] = {}
    for r in roots:
        others = set().union(*(reach[o] for o in roots if o != r))
        own = sorted((reach[r] & {r}) | (reach[r] - others - set(roots)), key=lambda n: (-dists[n]["bytes"], n))
        out[r] = {"bytes": sum(dists[n]["bytes"] for n in own), "distributions": own}
    owned = set().union(*(set(v["distributions"]) for v in out.values()))
    shared = sorted(set().union(*reach.values()) - owned, key=lambda n: (-dists[n]["bytes"], n))
    out["shared"] = {"bytes": sum(dists[n]["bytes"] for n in shared), "distributions": shared}
    return out


def largest(dists: dict[str, dict[str, Any]], n: int = 15) -> list[dict[str, Any]]:
    """The ``n`` largest distributions: name, version, MB (10^6 bytes)."""
    rows = sorted(dists.items(), key=lambda kv: -kv[1]["bytes"])[:n]
    return [{"name": k, "version": v["version"], "mb": round(v["bytes"] / MB, 1)} for k, v in rows]


def tree_bytes(folder: Path) -> tuple[int, int]:
    """Apparent bytes of the files under ``folder`` and bytes of disk blocks they hold (``du -sb``, ``du -s``)."""
    apparent = allocated = 0
    for dirpath, _, files in os.walk(folder):
        for f in files:
            st = os.lstat(os.path.join(dirpath, f))
            apparent += st.st_size
            allocated += st.st_blocks * 512
    return apparent, allocated


# ---------------------------------------------------------------------------------------------------------
# measurement
# ---------------------------------------------------------------------------------------------------------
def _env() -> dict[str, str]:
    """The environment of the venv's commands: no PYTHONPATH (it would import this checkout), no active venv."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def python_version(python: str) -> tuple[int, ...]:
    """An argparse check of ``--python``: the version of that interpreter (ValueError: why it cannot be used)."""
    try:
        out = subprocess.run([python, "-c", "import sys; print(*sys.version_info[:3])"], capture_output=True,
                             text=True, timeout=60, env=_env())
    except (OSError, subprocess.SubprocessError) as exc:
        raise ValueError(f"cannot run {python}: {getattr(exc, 'strerror', None) or exc}") from None
    if out.returncode != 0:
        why = (out.stderr.strip().splitlines() or [""])[-1]
        raise ValueError(f"{python} exited {out.returncode} on `-c 'import sys'`" + (f": {why}" if why else ""))
    version = tuple(int(x) for x in out.stdout.split())
    if version < (3, 11):
        raise ValueError(f"{python} is Python {'.'.join(map(str, version))}; ecg-automl needs 3.11 or later")
    return version


def check_index(python: str) -> str:
    """Stop with one line unless pip reaches the package index; what it said about numpy's versions."""
    proc = subprocess.run([python, "-m", "pip", "index", "versions", "numpy", "--timeout", "20", "--retries", "1"],
                          capture_output=True, text=True, timeout=300, env=_env())
    if proc.returncode != 0:
        why = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise SystemExit(f"pi_install.py: error: pip cannot reach the package index ({why}); this benchmark "
                         f"installs ecg-automl[pi] from it")
    return proc.stdout.strip().splitlines()[0]


def copy_checkout(dest: Path) -> Path:
    """This checkout's git-tracked files (every file but .git, venvs and build output when it is no git checkout)."""
    try:
        names = subprocess.run(["git", "ls-files", "-z"], cwd=C.ROOT, capture_output=True, check=True,
                               timeout=60).stdout.decode().split("\0")
    except (OSError, subprocess.SubprocessError):
        shutil.copytree(C.ROOT, dest, ignore=shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info",
                                                                    "__pycache__", "runs", "mlruns"))
        return dest
    for name in filter(None, names):
        src = C.ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    return dest


def _run(cmd: list[str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=timeout)


def checks(venv: Path, cwd: Path) -> dict[str, Any]:
    """In the venv: the Pi modules import, TensorFlow does not; the Pi commands answer --help; the search
    commands stop with one line naming the extra."""
    py, cli = venv / "bin" / "python", venv / "bin" / "ecg-automl"
    out: dict[str, Any] = {}
    out["import_ecg_automl_tflite"] = _run([str(py), "-c", "import ecg_automl.tflite"], cwd).returncode == 0
    tf = _run([str(py), "-c", "import tensorflow"], cwd)
    out["tensorflow_importable"] = tf.returncode == 0
    pi_modules = "ecg_automl.tflite.predict, ecg_automl.tflite.bench_server, ecg_automl.tflite.cli"
    out["pi_modules_import_tensorflow"] = _run([str(py), "-c", f"import sys, {pi_modules}; "
                                                "sys.exit('tensorflow' in sys.modules)"], cwd).returncode != 0
    for cmd in ("predict", "bench-server"):
        out[f"{cmd}_help_exit"] = _run([str(cli), cmd, "--help"], cwd).returncode
    search = {}
    for args in SEARCH_COMMANDS:
        proc = _run([str(cli), *args], cwd, timeout=120)
        lines = proc.stderr.strip().splitlines()
        search[args[0]] = {"exit": proc.returncode, "stderr_lines": len(lines),
                           "names_the_extra": bool(lines) and EXTRA_LINE in lines[-1],
                           "traceback": "Traceback" in proc.stderr, "last_line": lines[-1] if lines else ""}
    out["search_commands"] = search
    out["all_pass"] = (out["import_ecg_automl_tflite"] and not out["tensorflow_importable"]
                       and not out["pi_modules_import_tensorflow"]
                       and out["predict_help_exit"] == 0 and out["bench-server_help_exit"] == 0
                       and all(s["exit"] == 2 and s["stderr_lines"] == 1 and s["names_the_extra"]
                               for s in search.values()))
    return out


def one_install(python: str, cold: bool, work: Path) -> dict[str, Any]:
    """One repeat: copy, fresh venv, timed pip install, sizes, checks; the venv is removed afterwards."""
    src = copy_checkout(work / "ecg-automl")
    venv = work / "venv"
    t0 = time.perf_counter()
    made = _run([python, "-m", "venv", str(venv)], work)
    venv_s = time.perf_counter() - t0
    if made.returncode != 0:
        raise SystemExit(f"pi_install.py: error: {python} -m venv failed: {made.stderr.strip()[-300:]}")
    pip = [str(venv / "bin" / "python"), "-m", "pip"]
    empty_apparent, empty_allocated = tree_bytes(venv)
    cmd = [*pip, "install", *(["--no-cache-dir"] if cold else []), f"{src}[pi]"]
    log.info("%s", " ".join(cmd))
    t0 = time.perf_counter()
    proc = _run(cmd, work, timeout=1800)
    install_s = time.perf_counter() - t0
    if proc.returncode != 0:
        why = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise SystemExit(f"pi_install.py: error: pip install failed after {install_s:.0f} s: {why}")
    apparent, allocated = tree_bytes(venv)
    inv = _run([str(venv / "bin" / "python"), "-c", _INVENTORY], work)
    if inv.returncode != 0:
        raise SystemExit(f"pi_install.py: error: listing the venv's distributions failed: {inv.stderr.strip()[-300:]}")
    dists = json.loads(inv.stdout)
    own = dists.get("ecg-automl", {}).get("requires", [])
    pip_version = _run([*pip, "--version"], work).stdout.split()[1]
    result = {"venv_seconds": round(venv_s, 2), "install_seconds": round(install_s, 2), "cold": cold,
              "pip_version": pip_version, "empty_venv_mb": round(empty_apparent / MB, 1),
              "venv_mb": round(apparent / MB, 1), "venv_allocated_mb": round(allocated / MB, 1),
              "installed_mb": round((apparent - empty_apparent) / MB, 1), "distributions": len(dists),
              "largest": largest(dists), "brought_by": {k: {"mb": round(v["bytes"] / MB, 1), **v}
                                                        for k, v in brought_by(own, dists).items()},
              "versions": {k: v["version"] for k, v in sorted(dists.items())},
              "checks": checks(venv, work)}
    shutil.rmtree(venv)
    shutil.rmtree(src)
    return result


# ---------------------------------------------------------------------------------------------------------
# plot, arguments, main
# ---------------------------------------------------------------------------------------------------------
def plot(result: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = result["runs"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.8), gridspec_kw={"width_ratios": [2.2, 1]})
    top = runs[0]["largest"][::-1]
    by = {n: root for root, v in runs[0]["brought_by"].items() for n in v["distributions"]}
    groups = list(runs[0]["brought_by"])
    colour = {g: plt.get_cmap("tab10")(i) for i, g in enumerate(groups)}
    colour[None] = "lightgray"  # the venv's own pip and setuptools
    bars = ax1.barh([r["name"] for r in top], [r["mb"] for r in top], color=[colour[by.get(r["name"])] for r in top])
    for b, r in zip(bars, top):
        ax1.text(r["mb"], b.get_y() + b.get_height() / 2, f" {r['mb']:.1f}", va="center", fontsize=7)
    ax1.legend(handles=[plt.Rectangle((0, 0), 1, 1, color=colour[g]) for g in [*groups, None]],
               labels=[f"{'brought by ' + g if g != 'shared' else 'shared'} ({runs[0]['brought_by'][g]['mb']:.0f} MB)"
                       for g in groups] + ["the venv itself"], fontsize=7, loc="lower right")
    s = result["summary"]
    ax1.set_xlabel("MB installed (10^6 bytes, the distribution's files)")
    ax1.set_title(f"largest of {runs[0]['distributions']} distributions; venv {s['venv_mb']['median']:.0f} MB "
                  f"(median of {len(runs)})", fontsize=10)
    ax1.grid(axis="x", alpha=0.3)
    ax2.bar(range(1, len(runs) + 1), [r["install_seconds"] for r in runs], color="tab:gray")
    ax2.set_xticks(range(1, len(runs) + 1))
    ax2.set_xlabel("repeat")
    ax2.set_ylabel("pip install seconds")
    cold = "cold, --no-cache-dir" if result["settings"]["cold"] else "pip cache allowed"
    ax2.set_title(f"install time ({cold})", fontsize=10)
    ax2.grid(axis="y", alpha=0.3)
    fig.suptitle(f'pip install "ecg-automl[pi]" into a fresh Python {result["settings"]["python_version"]} venv '
                 f"({result['mode']})", fontsize=10)
    return C.save_figure(fig, path)


def parse_args(argv=None) -> argparse.Namespace:
    ap = C.parser(__doc__)
    ap.add_argument("--quick", action="store_true", help="smoke run: 1 repeat, pip's cache allowed")
    ap.add_argument("--repeats", type=C.at_least(1), default=None, help="fresh installs (full 3, quick 1)")
    ap.add_argument("--python", default=sys.executable,
                    help="the Python that makes the venv, 3.11 or later (default: the one running this script)")
    args = C.parse_mode(ap, argv, QUICK, FULL)
    try:
        args.python_version = ".".join(map(str, python_version(args.python)))
    except ValueError as exc:
        ap.error(f"argument --python: {exc}")
    return args


def _spread(values: list[float]) -> dict[str, float]:
    return {"median": float(np.median(values)), "min": float(min(values)), "max": float(max(values))}


def main(argv=None) -> int:
    args = parse_args(argv)
    result, t_start = C.start("pi_install", args.mode, args.verbose, args.out_dir)
    index = check_index(args.python)
    log.info("pip reaches the index (%s)", index)
    cold = not args.quick
    result["settings"] = {"repeats": args.repeats, "python": args.python, "python_version": args.python_version,
                          "cold": cold, "index_check": index, "source": "git-tracked files of this checkout",
                          "mb": "10^6 bytes"}
    runs = []
    for i in range(args.repeats):
        with tempfile.TemporaryDirectory(prefix="pi_install-") as tmp:
            log.info("install %d of %d", i + 1, args.repeats)
            runs.append(one_install(args.python, cold, Path(tmp)))
            r = runs[-1]
            log.info("installed in %.1f s, venv %.1f MB, checks %s", r["install_seconds"], r["venv_mb"],
                     "pass" if r["checks"]["all_pass"] else "FAIL")
    result["runs"] = runs
    result["summary"] = {k: _spread([r[k] for r in runs]) for k in ("install_seconds", "venv_seconds", "venv_mb",
                                                                      "venv_allocated_mb", "installed_mb")}
    result["summary"]["checks_pass"] = all(r["checks"]["all_pass"] for r in runs)
    C.finish(result, time.perf_counter() - t_start)
    js = C.write_json(args.out_dir / f"pi_install_{args.mode}.json", result)
    png = plot(result, args.out_dir / f"pi_install_{args.mode}.png")
    s = result["summary"]
    print(f'pip install "ecg-automl[pi]", Python {args.python_version}, {len(runs)} repeat(s) '
          f"({'cold' if cold else 'pip cache allowed'}):")
    print(f"  install {s['install_seconds']['median']:.0f} s (min {s['install_seconds']['min']:.0f}, max "
          f"{s['install_seconds']['max']:.0f}); venv {s['venv_mb']['median']:.0f} MB "
          f"({s['venv_allocated_mb']['median']:.0f} MB of disk blocks)")
    print("  largest: " + ", ".join(f"{r['name']} {r['mb']:.0f} MB" for r in runs[0]["largest"][:8]))
    print("  brought by: " + ", ".join(f"{k} {v['mb']:.0f} MB" for k, v in runs[0]["brought_by"].items()))
    print(f"  checks (no TensorFlow, Pi commands run, search commands name the extra): "
          f"{'pass' if s['checks_pass'] else 'FAIL'}")
    print(f"wrote {js} and {png}")
    return 0 if s["checks_pass"] else 1


if __name__ == "__main__":
    C.run(main)
