#!/usr/bin/env python
"""Do CSV rows give a record's decisions? ``predict --csv`` on beats cut three ways vs ``predict --record``.

``ecg-automl predict MODEL --record R`` band-pass filters the whole signal as the sidecar's ``filter`` says,
resamples it to the sidecar's ``fs`` and cuts ``window`` samples centred on each R peak; ``predict MODEL --csv
FILE`` classifies rows as they are, unfiltered. For each record this benchmark classifies the record's annotated
beats (``predict_record(..., annotations="atr")``), then the same beats as CSV rows (``predict_csv``) cut at the
model's rate

* ``filtered``: from the whole signal filtered and resampled as predict does (``ecg_data.preprocess.bandpass``,
  ``resample``, ``extract_windows``): what the README asks of a CSV;
* ``raw``: from the raw signal, resampled but not filtered;
* ``filtered_per_row``: the ``raw`` rows, each band-pass filtered on its own (``bandpass`` of the row);

and counts, per kind, the beats whose decision differs from the record's and the largest |probability
difference|. The model is ``--model`` (its ``.json`` sidecar beside it; it must take no RR features, which CSV rows
lack), or, without it, the quickstart's int8 model made here through the CLI as README command 1 makes it::

    ecg-automl search --dataset mitdb --trials 4 --folds 2 --epochs 1 --max-beats 4000 --study quickstart
    ecg-automl export --study quickstart --mode int8 --out quickstart-int8.tflite

(with ``--storage sqlite:///WORK/optuna.db --out-dir WORK/runs --no-mlflow``; ``--quick`` searches one trial on
a few records with ``rr_features`` fixed false, so the model takes CSV rows whatever the trial draws). Writes
``csv_rows_<mode>.json`` and ``csv_rows_<mode>.png`` (per-beat |dp| of each row kind, and the changed decisions).
The rows are written with 9 significant digits; the ``filtered`` rows are also written with fewer
(``filtered_by_precision``), since a CSV's rounding moves an int8 model's output too.

    python benchmarks/csv_rows.py --quick                  # a 1-trial model on 7 records, then 213 (~1-2 min)
    python benchmarks/csv_rows.py                          # the quickstart's search and export, then 213 (116 s on 2 cores, results/csv_rows_full.json)
    python benchmarks/csv_rows.py --model m.tflite --records 213,208,119   # another model and records
"""

from __future__ import annotations

import argparse
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

log = logging.getLogger("benchmarks.csv_rows")

#: README command 1: the quickstart's search and its int8 export.
QUICKSTART_SEARCH = ["--dataset", "mitdb", "--trials", "4", "--folds", "2", "--epochs", "1", "--max-beats", "4000"]
#: A one-trial search on a few DS1 records (trials) and DS2 records (its final test), for the smoke run.
QUICK_SEARCH = ["--dataset", "mitdb", "--trials", "1", "--folds", "2", "--epochs", "1", "--max-beats", "1500",
                "--records", "101,106,108,109,100,103,105"]
EXPORT = ["--mode", "int8"]
QUICK = {"search": QUICK_SEARCH, "export": [*EXPORT, "--verify-beats", "500", "--runs", "10"]}
FULL = {"search": QUICKSTART_SEARCH, "export": EXPORT}
KINDS = ("filtered", "raw", "filtered_per_row")
LABELS = {"filtered": "cut from the filtered signal", "raw": "cut from the raw signal",
          "filtered_per_row": "raw rows, each filtered on its own"}
STUDY = "quickstart"
#: Text formats the ``filtered`` rows are also written with: how many digits a CSV needs to give the record's
#: decisions (an int8 model's output moves in steps of 1/256, so rounding shows as multiples of 0.0039).
PRECISIONS = ("%.9g", "%.6g", "%.5f", "%.4f", "%.3f")


# ---------------------------------------------------------------------------------------------------------
# the model
# ---------------------------------------------------------------------------------------------------------
def _cli(args: list[str], work: Path, log_name: str) -> float:
    """Run ``python -m ecg_automl ARGS`` in ``work`` (this checkout's code first), its output to a log file there;
    the wall seconds it took. A failure is one line naming the log."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(C.ROOT), os.environ.get("PYTHONPATH")]))}
    env.pop("MLFLOW_TRACKING_URI", None)
    cmd = [sys.executable, "-m", "ecg_automl", *args]
    log.info("running %s (output in %s)", " ".join(["ecg-automl", *args]), work / log_name)
    t0 = time.perf_counter()
    with open(work / log_name, "w") as fh:
        code = subprocess.run(cmd, cwd=work, env=env, stdout=fh, stderr=subprocess.STDOUT).returncode
    if code != 0:
        tail = (work / log_name).read_text().strip().splitlines()[-1:] or [""]
        raise SystemExit(f"csv_rows.py: error: ecg-automl {args[0]} exited {code}: {tail[0]} (see {work / log_name})")
    return time.perf_counter() - t0


def _quick_space(work: Path) -> Path:
    """The default space with ``rr_features`` fixed false, so the smoke run's one trial makes a CSV-ready model."""
    from spaces import SearchSpace

    path = work / "default-no-rr.yaml"
    path.write_text(SearchSpace.load("default").with_overrides(rr_features=False).to_yaml())
    return path


def make_model(work: Path, quick: bool, search: list[str], export: list[str]) -> tuple[Path, dict[str, Any]]:
    """Search and export through the CLI into ``work``, as a user does; the .tflite and what was run, how long."""
    work.mkdir(parents=True, exist_ok=True)
    store = ["--storage", f"sqlite:///{work / 'optuna.db'}", "--no-mlflow"]
    search_args = ["search", *search, "--study", STUDY, *store, "--out-dir", str(work / "runs"), "--quiet"]
    if quick:
        search_args += ["--space", str(_quick_space(work))]
    out = work / f"{STUDY}-int8.tflite"
    export_args = ["export", "--study", STUDY, *export, "--out", str(out), *store]
    search_s = _cli(search_args, work, "search.log")
    export_s = _cli(export_args, work, "export.log")
    return out, {"search_command": ["ecg-automl", *search_args], "export_command": ["ecg-automl", *export_args],
                 "search_seconds": round(search_s, 1), "export_seconds": round(export_s, 1),
                 "export_log": (work / "export.log").read_text().strip().splitlines()}


# ---------------------------------------------------------------------------------------------------------
# the rows
# ---------------------------------------------------------------------------------------------------------
def rows_of(record: Path, lead: str, beats: np.ndarray, meta: dict[str, Any]) -> dict[str, np.ndarray]:
    """The three kinds of CSV rows for ``beats`` (samples at the record's rate), at the model's rate and window."""
    from ecg_data import read_record
    from ecg_data.preprocess import bandpass, extract_windows, fill_nans, resample, resampled_positions

    rec = read_record(record, channels=[lead])
    fs_model, window = float(meta["fs"]), int(meta["window"])
    band = meta.get("filter", {})
    low, high = band.get("low", 0.5), band.get("high", 40.0)
    peaks = resampled_positions(beats, rec.fs, fs_model)  # predict's rule (ecg_data.stream)

    def cut(signal: np.ndarray) -> np.ndarray:
        windows, keep = extract_windows(signal, peaks, window)
        if not keep.all():  # predict classified only beats with a full window: the same windows exist here
            raise SystemExit(f"csv_rows.py: error: {record}: {int((~keep).sum())} beats have no full window")
        return windows[:, :, 0]

    filtered = cut(resample(bandpass(rec.signal, rec.fs, low, high), rec.fs, fs_model))
    raw = cut(resample(fill_nans(rec.signal), rec.fs, fs_model))
    per_row = bandpass(raw.T, fs_model, low, high).T  # bandpass filters along the first axis: each row alone
    return {"filtered": filtered, "raw": raw, "filtered_per_row": per_row}


def compare(record_prob: np.ndarray, threshold: float, prob: np.ndarray) -> dict[str, Any]:
    """How the rows' probabilities and decisions differ from the record's."""
    dp = np.abs(prob.astype(np.float64) - record_prob.astype(np.float64))
    ref, hat = record_prob >= threshold, prob >= threshold
    return {"changed_decisions": int((ref != hat).sum()), "to_abnormal": int((~ref & hat).sum()),
            "to_normal": int((ref & ~hat).sum()), "abnormal_beats": int(hat.sum()),
            "max_abs_dp": float(dp.max()), "mean_abs_dp": float(dp.mean()),
            "p99_abs_dp": float(np.percentile(dp, 99)), "abs_dp": [round(float(v), 6) for v in dp]}


def measure_record(model: Path, data_root: Path, name: str, meta: dict[str, Any], tmp: Path) -> dict[str, Any]:
    """The record's decisions, and those of its beats as the three kinds of CSV rows."""
    from ecg_automl.tflite import predict_csv, predict_record

    record = data_root / "mitdb" / name
    t0 = time.perf_counter()
    pred = predict_record(model, record, annotations="atr")
    record_s = time.perf_counter() - t0
    lead = pred.summary["lead"]
    rows = rows_of(record, lead, pred.samples, meta)
    out: dict[str, Any] = {"record": name, "lead": lead, "fs_record": pred.fs, "beats": len(pred.prob),
                           "abnormal_beats": int(pred.abnormal.sum()), "threshold": pred.threshold,
                           "record_seconds": round(record_s, 2), "rows": {}}
    if "skipped_beats" in pred.summary:
        out["skipped_beats"] = pred.summary["skipped_beats"]
    for kind in KINDS:
        csv = tmp / f"{name}-{kind}.csv"
        np.savetxt(csv, rows[kind], delimiter=",", fmt="%.9g")  # what a user's file holds: text, 9 digits
        got = predict_csv(model, csv)
        out["rows"][kind] = compare(pred.prob, pred.threshold, got.prob)
        r = out["rows"][kind]
        log.info("%s %-17s %4d of %d decisions changed (%d to abnormal, %d to normal), max |dp| %.4f",
                 name, kind, r["changed_decisions"], out["beats"], r["to_abnormal"], r["to_normal"], r["max_abs_dp"])
    out["filtered_by_precision"] = {}
    for fmt in PRECISIONS:
        csv = tmp / f"{name}-filtered-precision.csv"
        np.savetxt(csv, rows["filtered"], delimiter=",", fmt=fmt)
        x = compare(pred.prob, pred.threshold, predict_csv(model, csv).prob)
        out["filtered_by_precision"][fmt] = {k: v for k, v in x.items() if k != "abs_dp"}
    return out


# ---------------------------------------------------------------------------------------------------------
# plot, arguments, main
# ---------------------------------------------------------------------------------------------------------
def plot(result: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = result["records"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.6), gridspec_kw={"width_ratios": [1.6, 1]})
    colours = {"filtered": "tab:green", "raw": "tab:red", "filtered_per_row": "tab:orange"}
    first = records[0]
    for kind in KINDS:
        dp = np.sort(np.asarray(first["rows"][kind]["abs_dp"]))[::-1]
        r = first["rows"][kind]
        ax1.plot(np.arange(1, len(dp) + 1), np.maximum(dp, 1e-6), color=colours[kind],
                 label=f"{LABELS[kind]}: max {r['max_abs_dp']:.3f}, {r['changed_decisions']} changed")
    ax1.set_xscale("log")
    ax1.set_yscale("log")
    ax1.set_xlabel("beats, largest |dp| first")
    ax1.set_ylabel("|p(abnormal) of CSV row - of record|\n(0 drawn at 1e-6)")
    ax1.set_title(f"MIT-BIH {first['record']}: {first['beats']:,} beats, threshold {first['threshold']:.3f}",
                  fontsize=10)
    ax1.legend(fontsize=8)
    ax1.grid(alpha=0.3, which="both")
    width = 0.8 / len(KINDS)
    x = np.arange(len(records))
    for i, kind in enumerate(KINDS):
        vals = [r["rows"][kind]["changed_decisions"] for r in records]
        bars = ax2.bar(x + (i - (len(KINDS) - 1) / 2) * width, vals, width, color=colours[kind], label=LABELS[kind])
        for b, v in zip(bars, vals):
            ax2.text(b.get_x() + b.get_width() / 2, v, str(v), ha="center", va="bottom", fontsize=8)
    ax2.set_xticks(x, [f"{r['record']}\n({r['beats']:,} beats)" for r in records])
    ax2.set_ylabel("decisions that differ from the record's")
    ax2.set_title("changed decisions per row kind", fontsize=10)
    ax2.legend(fontsize=8)
    ax2.grid(axis="y", alpha=0.3)
    fig.suptitle(f"predict --csv vs predict --record, {result['model']['source']} ({result['mode']})", fontsize=10)
    return C.save_figure(fig, path)


def parse_args(argv=None) -> argparse.Namespace:
    ap = C.parser(__doc__)
    ap.add_argument("--quick", action="store_true", help="smoke run: a one-trial model on 7 records, then 213")
    ap.add_argument("--model", type=Path, default=None,
                    help="a .tflite written by ecg-automl export, its .json sidecar beside it (default: make the "
                         "quickstart's int8 model in --work-dir)")
    ap.add_argument("--records", default="213", help="comma-separated MIT-BIH records to classify (default 213)")
    ap.add_argument("--work-dir", type=C.out_dir, default=None,
                    help="where the model is made, kept afterwards; a rerun with the same folder resumes its finished "
                         "study instead of searching again (default: a temporary folder, removed)")
    ap.add_argument("--out-dir", type=C.out_dir, default=C.DEFAULT_OUT, help=C.OUT_HELP)
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    args.search = args.export = None
    C.apply_mode(args, QUICK, FULL, parser=ap, argv=argv)
    args.records = [r.strip() for r in args.records.split(",") if r.strip()]
    if not args.records:
        ap.error("argument --records: no record given")
    if args.model is not None and not args.model.is_file():
        ap.error(f"argument --model: {args.model} is not a file")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    result, t_start = C.start("csv_rows", args.mode, args.verbose, args.out_dir)
    from ecg_automl.tflite.convert import TFLiteError
    from ecg_automl.tflite.sidecar import model_sha256, read_sidecar
    from ecg_data.errors import DataError
    from ecg_data import data_root

    root = data_root()
    missing = [r for r in args.records if not (root / "mitdb" / f"{r}.hea").exists()]
    if missing:
        raise DataError(f"no MIT-BIH record {', '.join(missing)} under {root / 'mitdb'} (ecg-automl data fetch mitdb)")
    tmp = Path(tempfile.mkdtemp(prefix="csv_rows-"))
    try:
        made = None
        model = args.model
        if model is None:
            model, made = make_model(args.work_dir or tmp / "work", args.quick, args.search, args.export)
        try:
            meta = read_sidecar(model)
            if meta.get("rr_features"):
                raise TFLiteError(f"{model} takes RR-interval features, which CSV rows lack: give a model without")
            records = [measure_record(model, root, r, meta, tmp) for r in args.records]
        except TFLiteError as exc:
            raise SystemExit(f"csv_rows.py: error: {exc}") from None
        sha = model_sha256(model.read_bytes())
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result.update({
        "settings": {"records": args.records, "kinds": {k: LABELS[k] for k in KINDS}, "csv_format": "%.9g", "precisions": list(PRECISIONS)},
        "model": {"source": "--model" if args.model else ("quick one-trial model" if args.quick else
                                                          "quickstart int8 model, made here"),
                  "path": str(model) if args.model or args.work_dir else None, "sha256": sha,
                  "fs": meta["fs"], "window": meta["window"], "input_length": meta["input_length"],
                  "filter": meta.get("filter"), "threshold": meta["threshold"], "mode": meta.get("mode"),
                  "made": made},
        "records": records,
        "totals": {kind: {"beats": sum(r["beats"] for r in records),
                          "changed_decisions": sum(r["rows"][kind]["changed_decisions"] for r in records),
                          "max_abs_dp": max(r["rows"][kind]["max_abs_dp"] for r in records)} for kind in KINDS},
    })
    C.finish(result, time.perf_counter() - t_start)
    js = C.write_json(args.out_dir / f"csv_rows_{args.mode}.json", result)
    png = plot(result, args.out_dir / f"csv_rows_{args.mode}.png")
    print(f"CSV rows vs the record's decisions ({args.mode}, model sha256 {sha[:12]}):")
    for r in records:
        print(f"  {r['record']} ({r['beats']:,} beats, {r['abnormal_beats']} abnormal at {r['threshold']:.3f}):")
        for kind in KINDS:
            x = r["rows"][kind]
            print(f"    {LABELS[kind]:36s} {x['changed_decisions']:5d} changed, max |dp| {x['max_abs_dp']:.4f}")
        digits = ", ".join(f"{fmt} {x['changed_decisions']} ({x['max_abs_dp']:.4f})"
                           for fmt, x in r["filtered_by_precision"].items())
        print(f"    filtered rows written as {digits}")
    print(f"wrote {js} and {png}")
    return 0


if __name__ == "__main__":
    C.run(main)
