"""CLI subcommands of the TFLite tooling: ``export``, ``predict``, ``bench-server``.

``predict`` and ``bench-server`` import nothing beyond LiteRT/numpy/scipy/wfdb, so they run on a Pi with the
base install (``pip install "PATH[pi]"``, PATH a copy of the ecg-automl checkout or its wheel: it is not on PyPI).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Callable

from ..install import install_hint


def register(extra_parsers: list[Callable], commands: dict[str, Callable]) -> None:
    """Add ``predict``, ``bench-server`` and ``export`` to the main CLI's parsers and command table."""
    if _add_parsers not in extra_parsers:  # a second main() in one process would add predict twice
        extra_parsers.append(_add_parsers)
    commands.update({"predict": cmd_predict, "bench-server": cmd_bench_server})
    try:
        from .export import cmd_export

        commands["export"] = cmd_export
    except ImportError:
        pass


def _add_parsers(sub) -> None:
    from ecg_automl.argtypes import port, sampling_rate, up_to
    from ecg_automl.argtypes import positive_int

    p = sub.add_parser("predict", help="classify a WFDB record or a CSV of beats with a .tflite (no TensorFlow)")
    p.add_argument("model", help="a .tflite written by `ecg-automl export` (its .json sidecar must lie beside it)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--record", help="WFDB record path, e.g. mitdb/100 (a .dat/.hea/.atr/.mat extension is dropped)")
    src.add_argument("--csv", help="CSV with one beat per row: a window centred on the R peak, at the model's rate "
                                   "and window length unless --csv-fs, cut from a signal already band-pass filtered "
                                   "as the sidecar's `filter` says (rows are not filtered; see docs/EDGE.md); for a "
                                   "heartbeat-CSV model (`filter` null), rows of that CSV layout as they are")
    p.add_argument("--annotations", default=None,
                   help="use this annotation file's beats (e.g. atr) instead of the QRS detector, and compare")
    p.add_argument("--lead", default=None,
                   help="the record's lead to read, for a one-lead model and a record that names its leads otherwise "
                        "(e.g. ECG or CH1; default: the lead named like the model's, else its limb-lead counterpart, "
                        "else the first, with a warning)")
    p.add_argument("--csv-fs", type=sampling_rate, default=None,
                   help="sampling rate of the CSV rows in Hz, 50-1000 (default: the model's; then each row must hold "
                        "exactly the model's window; for a model trained on heartbeat CSVs, their 187 samples at "
                        "125 Hz)")
    p.add_argument("--csv-has-label", action="store_true", help="the CSV's last column is a label (0 = normal)")
    p.add_argument("--threads", type=positive_int, default=1, help="LiteRT threads (default 1)")
    p.add_argument("--json", action="store_true", help="print every beat and the summary as JSON")
    p.add_argument("--all", action="store_true", help="print every beat, not the first 50")
    p.add_argument("--strict", action="store_true",
                   help="exit 1 when the record fails a signal check (flat or clipped lead, heart rate out of range, "
                        "a long stretch without beats, beats that do not look alike, inverted QRS); the output is "
                        "printed all the same. --record only: CSV rows get no signal checks")
    p.add_argument("--plot", metavar="FILE.png", default=None,
                   help="also draw the record's p(abnormal) per beat and abnormal burden over time, lead-off gaps "
                        "and (with --annotations) the annotated abnormal beats, into this .png/.svg/.pdf (needs "
                        f"matplotlib: {install_hint('plot', 'matplotlib')})")

    b = sub.add_parser("bench-server", help="serve LiteRT latency measurements over HTTP (run it on the Pi)",
                       description="Serve LiteRT latency measurements: GET /health, POST /benchmark with a .tflite "
                                   "body (query: runs, warmup, threads). `search --latency-target http://HOST:PORT` "
                                   "uses it.")
    b.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1: loopback only)")
    b.add_argument("--port", type=port, default=8765, help="TCP port, 0-65535 (default 8765; 0: any free port)")
    b.add_argument("--max-mb", type=up_to(4096, "MB", least=0.001), default=16, help="largest model accepted, in MB (default 16)")

    try:
        from .export import add_export_parser
    except ImportError:
        return
    add_export_parser(sub)


def cmd_predict(args: argparse.Namespace) -> int:
    """``ecg-automl predict``: classify a record's or a CSV's beats with an exported ``.tflite`` and its sidecar."""
    from ecg_automl.cli import UsageError

    from .predict import MODEL_WARNING_KEYS, format_prediction, predict_csv, predict_record

    if args.record is not None and not args.record.strip():  # it fell through to the CSV path ("None: not a CSV")
        raise UsageError("--record is empty: name a WFDB record, e.g. --record mitdb/100")
    if args.csv is not None and not args.csv.strip():
        raise UsageError("--csv is empty: name a CSV file of beats, one per row")
    csv_only = [o for o, given in (("--csv-fs", args.csv_fs is not None), ("--csv-has-label", args.csv_has_label))
                if given]
    if args.record is not None and csv_only:  # they were ignored
        raise UsageError(f"{' and '.join(csv_only)} {'applies' if len(csv_only) == 1 else 'apply'} to --csv only, "
                         f"not --record")
    if args.csv is not None and args.lead is not None:
        raise UsageError("--lead picks a record's lead, so it applies to --record only; a CSV row is one lead already")
    if args.lead is not None and not args.lead.strip():
        raise UsageError("--lead is empty: name one of the record's leads, e.g. --lead MLII")
    if args.csv is not None and args.annotations:  # it was ignored: rows have no annotation file
        raise UsageError("--annotations reads a record's annotation file, so it applies to --record only; a CSV "
                         "carries its labels in a last column: --csv-has-label")
    if args.csv is not None and args.strict:  # it could never fire: CSV rows get no signal checks
        raise UsageError("--strict exits 1 on a record's signal-check warning, and CSV rows get no signal checks, so "
                         "it applies to --record only; drop it with --csv")
    if args.annotations is not None:
        _check_annotations(args)
    if args.plot:
        _check_plot(args)
    if args.record is not None:
        pred = predict_record(args.model, args.record, annotations=args.annotations, threads=args.threads,
                              progress=_progress_line() if sys.stderr.isatty() else None,
                              lead=args.lead.strip() if args.lead is not None else None)
    else:
        pred = predict_csv(args.model, args.csv, fs=args.csv_fs, has_label=args.csv_has_label, threads=args.threads)
    if args.json:
        print(json.dumps({"summary": pred.summary, "beats": [
            {"sample": int(s), "p_abnormal": float(p), "abnormal": bool(p >= pred.threshold)}
            for s, p in zip(pred.samples, pred.prob)]}, indent=1))
    else:
        print(format_prediction(pred, max_beats=len(pred.prob) if args.all else 50))
    if args.plot:
        from .plot import save_prediction_plot

        path = save_prediction_plot(pred, args.plot)
        print(f"plot written to {path}", file=sys.stderr if args.json else sys.stdout)
    warnings = pred.summary.get("quality_warnings", [])
    for w in warnings:  # on stderr too: a script that reads --json, or only the exit code, still hears of it
        print(f"warning: {pred.source}: {w}", file=sys.stderr)
    for key in MODEL_WARNING_KEYS:  # about the model and the input, not the signal: --strict does not exit on them
        if key in pred.summary:
            print(f"warning: {pred.source}: {pred.summary[key]}", file=sys.stderr)
    if warnings and args.strict:
        return 1
    return 0



def _check_annotations(args: argparse.Namespace) -> None:
    """Refuse an --annotations that is not an annotation file's extension: a path to the file was a ValueError
    traceback from wfdb ("Invalid name '100./data/100.atr'"), and an empty one quietly used the QRS detector."""
    from pathlib import Path

    from ecg_automl.cli import UsageError

    text = args.annotations.strip()
    if not text:
        raise UsageError("--annotations is empty: give the annotation file's extension, e.g. --annotations atr")
    if "/" in text or "\\" in text or "." in text:
        ext = Path(text).suffix.lstrip(".") or "atr"
        raise UsageError(f"--annotations {text}: give the annotation file's extension, e.g. --annotations {ext} (the "
                         f"file is read from beside the record: --record mitdb/100 --annotations atr reads "
                         f"mitdb/100.atr)")
    args.annotations = text


def _check_plot(args: argparse.Namespace) -> None:
    """Refuse --plot before the prediction runs (a Holter record takes minutes) when it cannot be drawn: with --csv
    (rows have no time), a file type matplotlib is not asked for here, or no matplotlib (the base install)."""
    from pathlib import Path

    from ecg_automl.cli import UsageError

    from .plot import PLOT_SUFFIXES, PlotUnavailable, require_matplotlib

    if not args.record:
        raise UsageError("--plot draws a record's beats over time: it needs --record (CSV rows have no times)")
    if Path(args.plot).suffix.lower() not in PLOT_SUFFIXES:
        raise UsageError(f"--plot {args.plot}: name a {', '.join(PLOT_SUFFIXES)} file")
    if Path(args.plot).is_dir():
        raise UsageError(f"--plot {args.plot}: is a folder; name the picture file")
    folder = Path(args.plot).resolve().parent  # checked now: it was a traceback after the whole prediction
    there = next(p for p in (folder, *folder.parents) if p.exists())
    if not there.is_dir():
        raise UsageError(f"--plot {args.plot} cannot be written ({there} is a file, not a folder)")
    import tempfile

    try:  # a probe, not os.access: root may "access" a folder that refuses files (/sys), and a disk may be full
        with tempfile.NamedTemporaryFile(dir=there, prefix=".plot-probe-"):
            pass
    except OSError as exc:
        raise UsageError(f"--plot {args.plot} cannot be written ({there}: {exc.strerror or exc})") from None
    try:
        require_matplotlib()
    except PlotUnavailable as exc:
        raise UsageError(str(exc)) from None


def _progress_line():
    """A progress callback for predict that keeps one updating line on the terminal (stderr) while a long record
    is read chunk by chunk, and clears it when each stage ends: a 24-hour recording takes minutes."""
    def show(stage: str, done: int, total: int) -> None:
        if done >= total:
            print("\r\033[K", end="", file=sys.stderr, flush=True)
        else:
            print(f"\r\033[K{stage}: {100 * done / total:.0f}%", end="", file=sys.stderr, flush=True)

    return show


def cmd_bench_server(args: argparse.Namespace) -> int:
    """``ecg-automl bench-server``: serve LiteRT timings of uploaded models (run it on the Raspberry Pi)."""
    from ecg_automl.cli import UsageError

    from .bench_server import serve

    try:
        serve(args.host, args.port, max_bytes=int(args.max_mb * 1024 * 1024))
    except OSError as exc:  # port in use, an address this host does not have, a host name that does not resolve
        raise UsageError(f"bench-server cannot listen on {args.host}:{args.port}: {exc.strerror or exc}") from None
    except KeyboardInterrupt:  # stopped, as `ui` and every other command stopped so: 130 (it was 0)
        print("bench-server stopped", file=sys.stderr)
        return 130
    return 0
