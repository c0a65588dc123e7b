"""Take a screenshot of the MLflow UI showing a study (its trials nested under the study's run), for the README.

Usage (from the directory holding the study's mlflow.yaml / runs/):
    python docs/screenshot_ui.py --study mitdb-default-20 --out docs/mlflow-ui.png
    python docs/screenshot_ui.py --study mitdb-default-20 --chart --out docs/mlflow-ui-chart.png

Starts `ecg-automl ui` on a free loopback port, drives Debian's Chromium with Playwright and saves a PNG,
then stops the server (its whole process group). Needs the `docs` extra (`pip install -e ".[docs]"`,
i.e. Playwright for Python) and a Chromium binary; Playwright's own browser download is not used.

The runs table shows the study's parent run expanded, with one row per trial (oldest first) and the
columns that matter for a study: the `objective.*` metrics, cross-validated means, the main
hyperparameters and the Optuna trial state. `--chart` shows the chart view instead: the study's trials
(best first) in a parallel-coordinates chart of the numeric hyperparameters against the first
objective, a bar chart of that objective, and a scatter and a bar chart of a second metric (mean.roc_auc).

The view is set up through the UI's own per-browser state (localStorage, in a throw-away browser
profile), so nothing is written to the tracking store.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars"]
#: Columns shown when the trials have them (in this order); `objective.*` metrics always come first.
METRICS = ["mean.roc_auc", "mean.f1"]
PARAMS = ["input_length", "res_blocks", "conv_filters", "lstm_units", "learning_rate", "batch_size"]
#: Numeric hyperparameters for the parallel-coordinates chart (strings cannot be plotted there).
PARALLEL_PARAMS = ["input_length", "res_blocks", "conv_filters", "lstm_units", "dense_units", "learning_rate"]
TAGS = ["optuna.state"]
#: The runs table's own leading columns (ag-grid ids in MLflow 3.17): run name, created, duration.
FIXED_COLUMNS = ["attributes.`Run Name`", "runDateAndNestInfo", "duration"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _find_chromium(path: str | None) -> str | None:
    if path:
        return path if Path(path).is_file() and os.access(path, os.X_OK) else None
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def _key(kind: str, name: str) -> str:
    """The runs table's column id / sort key: ``metrics.`objective.quality```."""
    return f"{kind}.`{name}`"


def _csv(text: str | None) -> list[str] | None:
    return [s.strip() for s in text.split(",") if s.strip()] if text else None


def _filter_value(text: str) -> str:
    """A quoted string for an MLflow search filter."""
    if "'" not in text:
        return f"'{text}'"
    if '"' not in text:
        return f'"{text}"'
    raise SystemExit(f"error: a study name with both kinds of quotes cannot be searched in MLflow: {text!r}")


def _pick_columns(trials, metrics: list[str] | None, params: list[str] | None) -> tuple[list[str], list[str]]:
    """Metric and param names to show: the given ones, else the preferred ones the trials have."""
    have_m = {k for r in trials for k in r.data.metrics}
    have_p = {k for r in trials for k in r.data.params}
    if metrics is None:
        metrics = sorted(k for k in have_m if k.startswith("objective."))
        metrics.sort(key=lambda k: k != "objective.quality")
        metrics += [k for k in METRICS if k in have_m]
    if params is None:
        params = [k for k in PARAMS if k in have_p]
        if len(params) < 4:  # another search space: add the hyperparameters that vary across trials
            varying = sorted(k for k in have_p - set(params)
                             if len({r.data.params.get(k) for r in trials}) > 1)
            params += varying[:8 - len(params)]
    return metrics, params


def _ui_state(args, parent_id: str, trials, metrics: list[str], params: list[str]) -> dict:
    """The experiment page's state, as MLflow 3.x keeps it in localStorage."""
    study = _filter_value(args.study)
    columns = [_key("metrics", m) for m in metrics] + [_key("params", p) for p in params] + \
              [_key("tags", t) for t in TAGS]
    state = {
        "startTime": "ALL", "lifecycleFilter": "Active", "datasetsFilter": [], "modelVersionFilter": "All Runs",
        "selectedColumns": columns, "columnOrder": [*FIXED_COLUMNS, *columns],
        "columnWidths": {c: (125 if c.startswith("metrics.") else 105) for c in columns},  # CSS px
        "runsExpanded": {parent_id: True}, "runsPinned": [], "runsHidden": [], "runsVisibilityMap": {},
        "runsHiddenMode": "SHOW_ALL", "viewMaximized": False, "runListHidden": False,
        "isAccordionReordered": False, "useGroupedValuesInCharts": True, "hideEmptyCharts": True,
        "groupBy": None, "groupsExpanded": {}, "autoRefreshEnabled": False,
        "globalLineChartConfig": {"xAxisKey": "step", "lineSmoothness": 0, "selectedXAxisMetricKey": ""},
    }
    if not args.chart:
        # Sorting by start time keeps the trials nested under the (expanded) study run; sorting by a
        # metric would list the runs flat.
        state.update(searchFilter=f"tags.`optuna.study_name` = {study}",
                     orderByKey="attributes.start_time", orderByAsc=True)
        return state
    objective = metrics[0] if metrics else "objective.quality"
    other = next((m for m in metrics[1:] if not m.startswith("objective.")), None)
    have_p = {k for r in trials for k in r.data.params}
    numeric = [p for p in have_p if all(_is_number(r.data.params.get(p, "0")) for r in trials)]
    parallel = [p for p in PARALLEL_PARAMS if p in numeric] or sorted(numeric)[:6]
    section = "ecg-automl-trials"

    def chart(kind: str, name: str, **config) -> dict:
        return {"uuid": f"ecg-automl-{kind.lower()}-{name}", "type": kind, "runsCountToCompare": 100,
                "metricSectionId": section, "deleted": False, "isGenerated": False, "displayName": name,
                **config}

    charts = [chart("PARALLEL", f"hyperparameters vs {objective}", selectedParams=parallel,
                    selectedMetrics=[objective], showAllRuns=True)] if parallel else []
    charts.append(chart("BAR", objective, metricKey=objective))
    if other:
        charts += [chart("SCATTER", f"{other} vs {objective}", xaxis={"key": other, "type": "METRIC"},
                         yaxis={"key": objective, "type": "METRIC"}),
                   chart("BAR", other, metricKey=other)]
    # Only the trials (not the study run, whose metrics are the final test ones), best first.
    state.update(searchFilter=f"tags.`optuna.study_name` = {study} and tags.`ecg_automl.kind` = 'trial'",
                 orderByKey=_key("metrics", objective), orderByAsc=False,
                 compareRunSections=[{"uuid": section, "name": f"Study {args.study}: trials", "display": True,
                                      "isReordered": True, "deleted": False, "isGenerated": False,
                                      "columns": 2, "cardHeight": 430}],
                 compareRunCharts=charts)
    return state


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except (TypeError, ValueError):
        return False


def _start_server(args, port: int) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "ecg_automl", "ui", "--port", str(port)]
    if args.tracking_uri:
        cmd += ["--tracking-uri", args.tracking_uri]
    env = dict(os.environ, MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="true")
    # Its own process group: `ecg-automl ui` runs `mlflow server`, which starts uvicorn and job workers;
    # stopping only the first process would leave them running.
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                            start_new_session=True)


def _stop_server(server: subprocess.Popen) -> None:
    try:
        os.killpg(server.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            os.killpg(server.pid, 0)  # anyone left in the group?
        except ProcessLookupError:
            break
        server.poll()
        time.sleep(0.3)
    else:
        try:
            os.killpg(server.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:
        server.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass


def _screenshot(args, chromium: str, url: str, storage: dict[str, str], wait_for: str, out: Path,
                height: int) -> None:
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    init = "try {\n" + "".join(f"  localStorage.setItem({json.dumps(k)}, {json.dumps(v)});\n"
                               for k, v in storage.items()) + "} catch (e) {}\n"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": args.width, "height": height},
                                          device_scale_factor=args.scale, locale="en-US")
            context.add_init_script(init)  # before the UI's scripts read their saved state
            page = context.new_page()
            page.goto(url, timeout=args.timeout * 1000)
            try:
                page.get_by_text(wait_for, exact=True).first.wait_for(timeout=args.timeout * 1000)
                if args.chart:
                    page.locator(".js-plotly-plot").first.wait_for(timeout=args.timeout * 1000)
            except PlaywrightTimeout:
                shot = out.with_name(out.stem + ".failed" + out.suffix)
                page.screenshot(path=str(shot))
                raise SystemExit(f"error: the MLflow UI did not show {wait_for!r} within {args.timeout}s "
                                 f"(what it showed: {shot})")
            page.wait_for_timeout(1500)  # let charts finish drawing and tooltips/animations settle
            page.mouse.move(0, height - 1)  # no hover highlight
            page.screenshot(path=str(out))
        finally:
            browser.close()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--study", required=True, help="study whose runs to show")
    p.add_argument("--out", default="docs/mlflow-ui.png")
    p.add_argument("--tracking-uri", default=None)
    p.add_argument("--chart", action="store_true", help="show the chart view instead of the runs table")
    p.add_argument("--width", type=int, default=1920, help="browser window width in CSS pixels")
    p.add_argument("--height", type=int, default=None,
                   help="browser window height in CSS pixels (default: fit the table; 1180 for --chart)")
    p.add_argument("--scale", type=float, default=1.0, help="device pixel ratio (2 for a sharper, 2x-size PNG)")
    p.add_argument("--metrics", default=None, help="comma-separated metric columns (default: objective.*, mean.*)")
    p.add_argument("--params", default=None, help="comma-separated param columns (default: the main hyperparameters)")
    p.add_argument("--chromium", default=None, help="Chromium executable (default: chromium on PATH)")
    p.add_argument("--timeout", type=int, default=120, help="seconds to wait for the server and the page")
    p.add_argument("--ui-url", default=None,
                   help="use this running MLflow UI (same tracking store) instead of starting one")
    args = p.parse_args()

    chromium = _find_chromium(args.chromium)
    if not chromium:
        print(f"error: Chromium not found{f' at {args.chromium}' if args.chromium else ' on PATH'} "
              f"(Debian: apt-get install chromium; or pass --chromium PATH)", file=sys.stderr)
        return 2
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        print('error: Playwright for Python is not installed: pip install -e ".[docs]" (or pip install '
              'playwright; `playwright install` is not needed, the script uses the system Chromium)',
              file=sys.stderr)
        return 2

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from search import TrackingConfig, Tracker

    cfg = TrackingConfig.load(None, tracking_uri=args.tracking_uri)
    tracker = Tracker(cfg)
    exp_id = tracker.check()
    study = _filter_value(args.study)
    parents = tracker.client.search_runs([exp_id], f"tags.`optuna.study_name` = {study} and "
                                                   f"tags.`ecg_automl.kind` = 'study'")
    if not parents:
        print(f"error: no MLflow run for study {args.study!r} in {cfg.tracking_uri}", file=sys.stderr)
        return 2
    parent = parents[0]
    trials = tracker.client.search_runs([exp_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'",
                                        max_results=1000)
    if not trials:
        print(f"error: study {args.study!r} has no trial runs in {cfg.tracking_uri}", file=sys.stderr)
        return 2
    metrics, params = _pick_columns(trials, _csv(args.metrics), _csv(args.params))
    state = _ui_state(args, parent.info.run_id, trials, metrics, params)
    storage = {
        f'MLflowLocalStorage-1.1-ExperimentPage-["{exp_id}"]-ReactComponentState': json.dumps(state),
        # keep the "MLflow Assistant" side panel closed
        "mlflow.assistant.fab.autoOpenedOnFirstLoad_v1": "true",
        "mlflow.assistant.panelOpen_v1": "false",
    }
    if args.chart:
        best = max(trials, key=lambda r: r.data.metrics.get(metrics[0], float("-inf")) if metrics else 0)
        wait_for = best.info.run_name
        height = args.height or 1180
    else:
        wait_for = min(trials, key=lambda r: r.info.start_time).info.run_name
        rows = len(trials) + 1
        height = args.height or max(480, min(2400, 300 + 23 * rows))

    out = Path(args.out).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    server = _start_server(args, port) if not args.ui_url else None
    try:
        base = args.ui_url.rstrip("/") if args.ui_url else f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + args.timeout
        while True:
            try:
                urllib.request.urlopen(base + "/health", timeout=2)
                break
            except OSError:
                if server is not None and server.poll() is not None:
                    print(f"error: the MLflow UI exited with status {server.returncode} "
                          f"(try: python -m ecg_automl ui --port {port})", file=sys.stderr)
                    return 1
                if time.monotonic() > deadline:
                    print(f"error: the MLflow UI did not start within {args.timeout}s", file=sys.stderr)
                    return 1
                time.sleep(1)
        # workflowType=machine_learning: the model-training runs page, whatever the experiment's kind tag says
        query = {"workflowType": "machine_learning"}
        if args.chart:
            query["compareRunsMode"] = "CHART"
        url = f"{base}/#/experiments/{exp_id}/runs?{urllib.parse.urlencode(query)}"
        _screenshot(args, chromium, url, storage, wait_for, out, height)
        shown = (f"charts {', '.join(c['displayName'] for c in state['compareRunCharts'])}" if args.chart
                 else f"columns {', '.join(metrics + params + TAGS)}")
        print(f"wrote {out} ({'chart' if args.chart else 'table'} view of study {args.study!r}, "
              f"{len(trials)} trials; {shown})")
        return 0
    finally:
        if server is not None:
            _stop_server(server)


if __name__ == "__main__":
    sys.exit(main())
