"""Take a headless-Chromium screenshot of the MLflow UI showing a study, for the README.

Usage (from the directory holding the study's mlflow.yaml / runs/):
    python docs/screenshot_ui.py --study mitdb-default-20 --out docs/mlflow-ui.png

Starts `ecg-automl ui` on a free loopback port, opens the experiment page (trials nested under the
study's parent run) in Debian's `chromium --headless`, saves a PNG, stops the server.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--study", required=True, help="study whose runs to show")
    p.add_argument("--out", default="docs/mlflow-ui.png")
    p.add_argument("--tracking-uri", default=None)
    p.add_argument("--width", type=int, default=2200)
    p.add_argument("--height", type=int, default=1100)
    p.add_argument("--chart", action="store_true", help="show the chart view instead of the runs table")
    args = p.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        print("error: chromium not found (Debian: apt-get install chromium)", file=sys.stderr)
        return 2

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from search import TrackingConfig, Tracker

    cfg = TrackingConfig.load(None, tracking_uri=args.tracking_uri)
    tracker = Tracker(cfg)
    exp_id = tracker.check()
    parents = tracker.client.search_runs([exp_id], f"tags.`optuna.study_name` = '{args.study}' and "
                                                   f"tags.`ecg_automl.kind` = 'study'")
    if not parents:
        print(f"error: no MLflow run for study {args.study!r} in {cfg.tracking_uri}", file=sys.stderr)
        return 2
    port = _free_port()
    cmd = [sys.executable, "-m", "ecg_automl", "ui", "--port", str(port)]
    if args.tracking_uri:
        cmd += ["--tracking-uri", args.tracking_uri]
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(120):
            try:
                urllib.request.urlopen(base + "/health", timeout=2)
                break
            except OSError:
                time.sleep(1)
        else:
            print("error: the MLflow UI did not start", file=sys.stderr)
            return 1
        view = "chart" if args.chart else "table"
        tracker.client.set_experiment_tag(exp_id, "mlflow.experimentKind", "custom_model_development")
        url = (f"{base}/#/experiments/{exp_id}/runs?compareRunsMode={'CHART' if args.chart else 'TABLE'}"
               f"&searchFilter=tags.%60optuna.study_name%60%20%3D%20%27{args.study}%27%20and%20"
               f"tags.%60ecg_automl.kind%60%20%3D%20%27trial%27")
        out = Path(args.out).resolve()
        out.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                        "--disable-background-networking", "--disable-component-update", "--disable-sync",
                        "--hide-scrollbars", f"--user-data-dir=/tmp/ecg-automl-chromium-{port}",
                        f"--window-size={args.width},{args.height}", "--virtual-time-budget=20000",
                        f"--screenshot={out}", url], check=True, capture_output=True, timeout=180)
        print(f"wrote {out} ({view} view of {url})")
        return 0
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()


if __name__ == "__main__":
    sys.exit(main())
