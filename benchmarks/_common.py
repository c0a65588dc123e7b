"""Shared helpers of the benchmark scripts: machine and version record, config loading, JSON output.

Not a public module: ``benchmarks/quality.py`` and ``benchmarks/pipeline_cost.py`` import it from their own
folder (a script's folder is on ``sys.path``).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import functools
import json
import logging
import math
import os
import platform
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, NoReturn

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# the CLI's own checks of numeric options: one usage line, exit 2, before any work
from ecg_automl.argtypes import int_at_least as at_least, positive_float as above_zero  # noqa: E402
from ecg_automl import versions  # noqa: E402

#: The config both scripts use unless ``--config`` or ``--study`` says otherwise.
DEFAULT_CONFIG = ROOT / "benchmarks" / "configs" / "quality_default.json"
DEFAULT_OUT = ROOT / "benchmarks" / "results"
OUT_HELP = "folder for the result JSON and PNG (default benchmarks/results, where the published results are)"

log = logging.getLogger("benchmarks")
_PARTIAL: list[Path] = []  # the partial result file this run keeps up to date (named when it is interrupted)


def loadavg() -> list[float]:
    """1, 5 and 15 minute load averages."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # pragma: no cover - not on Linux
        return [float("nan")] * 3


def lscpu_model_name() -> str:
    """``Model name`` as ``lscpu`` prints it (``/proc/cpuinfo`` when lscpu is missing)."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10,
                             env={**os.environ, "LC_ALL": "C"}).stdout
        for line in out.splitlines():
            if line.strip().lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    from ecg_automl.tflite.pi_estimate import host_cpu_name

    return host_cpu_name()


def cpu_signature() -> dict[str, str]:
    """The first CPU's vendor, family, model, stepping, cache size and bogomips from ``/proc/cpuinfo``: hosts that
    ``lscpu`` names alike ("Intel(R) Xeon(R) Processor") gave other timings, and these tell them apart ({} where the
    file is missing)."""
    wanted = ("vendor_id", "cpu family", "model", "stepping", "microcode", "cache size", "bogomips")
    out: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if not line.strip():
                    break  # the first processor's block only
                key, _, value = line.partition(":")
                if key.strip() in wanted:
                    out[key.strip()] = value.strip()
    except OSError:
        pass
    return out


def check_inter_patient(train, test) -> None:
    """The inter-patient protocol's guard: no patient of the test part among the training beats, but for the one the
    published de Chazal split itself shares (MIT-BIH 201 in DS1 and 202 in DS2 are one man: patient id 201+202,
    docs/DATA.md); :class:`ecg_data.PatientLeakError` for any other."""
    from ecg_data import check_no_leak
    from ecg_data.mitdb import SUBJECTS

    groups = np.concatenate([train.groups, test.groups])
    side = np.arange(len(groups)) < len(train)
    usual = ~np.isin(groups, sorted(set(SUBJECTS.values()))) if train.name == "mitdb" else np.ones(len(groups), bool)
    check_no_leak(groups, np.flatnonzero(side & usual), np.flatnonzero(~side & usual))


def add_ds2_beats_option(ap: argparse.ArgumentParser, quick: int) -> None:
    """``--ds2-beats N``: test on a DS2 subsample (:func:`ds2_part`); full runs test on every DS2 beat."""
    ap.add_argument("--ds2-beats", type=at_least(1), default=None,
                    help=f"test on a DS2 subsample of this size, stratified by patient and class (full: all; quick {quick}, "
                         f"a smoke run's scores, not a figure)")


def ds2_part(test, max_beats: int | None, seed: int):
    """``test`` itself, or a subsample of about ``max_beats`` of its beats stratified by patient and class
    (:func:`ecg_data.subsample_beats`): a quick run predicts every DS2 beat (about 50,000) several times, which took
    most of its minute without testing any more of the script."""
    if not max_beats or max_beats >= len(test):
        return test
    from ecg_data import subsample_beats

    return test.subset(subsample_beats(test.y, test.groups, max_beats, seed=seed))


def ds2_name(run: dict[str, Any]) -> str:
    """"DS2", or "DS2 (N of M beats)" for a run tested on a subsample: what a plot's labels call the test part."""
    n, total = run.get("test_beats"), run.get("test_beats_total")
    return f"DS2 ({n:,} of {total:,} beats)" if n and total and n < total else "DS2"


def machine_info() -> dict[str, Any]:
    """What the numbers were measured on (load averages are added at start and end by the caller)."""
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover
        affinity = None
    return {"logical_cpus": os.cpu_count(), "cpus_usable_by_process": affinity,
            "lscpu_model_name": lscpu_model_name(), "cpu_signature": cpu_signature(), "platform": platform.platform(),
            "hostname": platform.node()}


def source() -> dict[str, Any]:
    """Which code produced the numbers: the git commit (and whether the tree had uncommitted changes) and the
    data pipeline version, so a result file can be matched to the code that wrote it."""
    from ecg_data.cache import PIPELINE_VERSION

    out: dict[str, Any] = {"pipeline_version": PIPELINE_VERSION, "git_commit": None, "git_dirty": None}
    try:
        run = functools.partial(subprocess.run, cwd=ROOT, capture_output=True, text=True, timeout=10, check=True)
        out["git_commit"] = run(["git", "rev-parse", "HEAD"]).stdout.strip()
        out["git_dirty"] = bool(run(["git", "status", "--porcelain", "--untracked-files=no"]).stdout.strip())
    except (OSError, subprocess.SubprocessError):  # not a git checkout (e.g. an sdist): leave them None
        pass
    return out


def command_line() -> str:
    """The exact command that ran this script (interpreter included), shell-quoted."""
    return shlex.join([sys.executable, *sys.argv])


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def header(script: str, mode: str) -> dict[str, Any]:
    """The common head of a result file; ``finish`` adds the end time and load. Training runs with TensorFlow's
    oneDNN kernels off, as the ``ecg-automl`` CLI and ``import search`` set it (they give other floats; result
    files before commit 5d7dd86 trained with them on), unless TF_ENABLE_ONEDNN_OPTS is set already."""
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    return {"benchmark": script, "mode": mode, "command": command_line(), "argv": sys.argv[1:],
            "cwd": os.getcwd(), "started_utc": now(), "machine": {**machine_info(), "loadavg_start": loadavg()},
            "versions": versions(), "source": source(),
            "env": {k: os.environ.get(k) for k in ("ECG_AUTOML_DATA", "ECG_AUTOML_CACHE", "TF_ENABLE_ONEDNN_OPTS",
                                                   "TF_NUM_INTEROP_THREADS",
                                                   "TF_NUM_INTRAOP_THREADS", "OMP_NUM_THREADS",
                                                   "ECG_AUTOML_PI_CALIBRATION")},
            "pi4_calibration": _pi_calibration()}


def _pi_calibration() -> dict[str, Any]:
    """Which host->Pi fit this run's Raspberry Pi 4 estimates use, and whether it was measured on this CPU."""
    from ecg_automl.tflite.pi_estimate import calibration_record

    return calibration_record()


def finish(result: dict[str, Any], wall_s: float) -> dict[str, Any]:
    result["finished_utc"] = now()
    result["wall_seconds"] = round(wall_s, 2)
    result["machine"]["loadavg_end"] = loadavg()
    return result


def parser(doc: str) -> argparse.ArgumentParser:
    """A script's argument parser: its docstring's first paragraph as the description, the rest as the epilog."""
    head, _, rest = doc.strip().partition("\n\n")
    return argparse.ArgumentParser(description=head, epilog=rest or None,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)


def f1_target(text: str) -> float:
    """An argparse ``type``: a validation F1 to reach, above 0 and at most 1 (an F1 of 2 is never reached)."""
    value = above_zero(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"must be an F1 of at most 1, not {text}")
    return value


def config_file(text: str) -> Path:
    """An argparse ``type`` for ``--config``: a readable file holding a JSON object (checked before any work)."""
    path = Path(text)
    try:
        doc = json.loads(path.read_text())
    except OSError as exc:
        raise argparse.ArgumentTypeError(f"cannot read {text}: {exc.strerror or exc}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise argparse.ArgumentTypeError(f"{text} is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise argparse.ArgumentTypeError(f"{text} must hold a JSON object of hyperparameters")
    return path


def out_dir(text: str) -> Path:
    """An argparse ``type`` for ``--out-dir``: a folder that exists or can be created there, checked now, not
    after the run (it is created when the first file is written)."""
    path = Path(text)
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise argparse.ArgumentTypeError(f"cannot create {text}: {probe} is not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"cannot create {text}: {probe} is not writable")
    return path


def space_file(text: str) -> str:
    """An argparse ``type`` for ``--space``: a space file (or built-in name) that loads, checked before any folder
    is made or data is read (a missing file was a SpaceError traceback after the work folder existed)."""
    from spaces import SearchSpace, SpaceError

    try:
        SearchSpace.load(text)
    except SpaceError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def out_file(text: str) -> Path:
    """An argparse ``type`` for a file a run writes at its end: its folder is checked now (as ``out_dir``)."""
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a folder, not a file name")
    out_dir(str(path.parent))
    return path


def load_config(path: str | Path) -> dict[str, Any]:
    """A model config from a JSON file (keys starting with ``_`` are comments), validated as a space."""
    from spaces import OPTIONAL, PARAMS, SearchSpace

    doc = json.loads(Path(path).read_text())
    config = {k: v for k, v in doc.items() if not str(k).startswith("_")}
    config.update({k: v for k, v in OPTIONAL.items() if k not in config})
    missing = [k for k in PARAMS if k not in config]
    if missing:
        raise SystemExit(f"{path}: the config lacks {', '.join(missing)}")
    unknown = [k for k in config if k not in PARAMS]
    if unknown:
        raise SystemExit(f"{path}: unknown keys {', '.join(unknown)} (known: {', '.join(PARAMS)})")
    SearchSpace.from_dict({"name": "config", "params": config}, str(path))  # type and range checks
    return config


def add_config_option(ap: argparse.ArgumentParser) -> None:
    """``--config``: the model config JSON a benchmark trains (default :data:`DEFAULT_CONFIG`)."""
    ap.add_argument("--config", type=config_file, default=None,
                    help=f"model config JSON (default {DEFAULT_CONFIG.relative_to(ROOT)})")


def run_config(args) -> tuple[dict[str, Any], Path]:
    """The config of ``--config`` (or the default) with ``--epochs`` set, and the file it came from."""
    path = args.config or DEFAULT_CONFIG
    config = load_config(path)
    config["epochs"] = int(args.epochs)
    return config, path


def study_config(name: str, storage: str) -> tuple[dict[str, Any], float, dict[str, Any]]:
    """The best trial's config and decision threshold, and the study's stored settings."""
    import optuna

    study = optuna.load_study(study_name=name, storage=storage)
    best = study.best_trial
    config = dict(best.user_attrs["config"])
    threshold = float(best.user_attrs.get("threshold", 0.5))
    settings = dict(study.user_attrs.get("settings", {}))
    return config, threshold, {"study": name, "trial": best.number, "value": best.value,
                               "settings": {k: v for k, v in settings.items() if k != "space_yaml"},
                               "space_yaml": settings.get("space_yaml")}


def resolve_config(args) -> tuple[dict[str, Any], float | None, float, int, str, dict[str, Any] | None]:
    """Config, threshold (None unless from a study), sampling rate, window, a description of where the
    config came from, and the study's info: from ``--study/--storage`` (its best trial) or ``--config``."""
    fs, window, threshold, study_info = 180.0, 256, None, None
    if args.study:
        from spaces import SearchSpace

        config, threshold, study_info = study_config(args.study, args.storage)
        if study_info.get("space_yaml"):
            space = SearchSpace.from_yaml(study_info["space_yaml"], f"study {args.study}")
            fs, window = space.fs, space.window
        source = f"study {args.study!r} ({args.storage}), best trial {study_info['trial']}"
    else:
        path = args.config or DEFAULT_CONFIG
        config, source = load_config(path), str(path)
    return config, threshold, fs, max(window, int(config["input_length"])), source, study_info


def jsonable(obj):
    """Plain JSON types; NaN and infinities become None (strict JSON)."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, (np.floating, float)):
        v = float(obj)
        return v if math.isfinite(v) else None
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.bool_,)):
        return bool(obj)
    if isinstance(obj, Path):
        return str(obj)
    return obj


def warn_if_exists(path: Path) -> None:
    """Say at the start, not never, that this run's result will replace an earlier one (which, and how to keep it)."""
    if not path.exists():
        return
    try:
        old = json.loads(path.read_text())
        when = f" (started {old.get('started_utc')}, commit {str((old.get('source') or {}).get('git_commit'))[:10]})"
    except (OSError, ValueError, AttributeError):
        when = ""
    log.warning("%s%s will be replaced when this run ends; give --out-dir to keep it", path, when)


def write_json(path: Path, result: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(jsonable(result), indent=1, allow_nan=False))
    os.replace(tmp, path)
    return path


def median_of(dicts: list[dict[str, Any]], _where: str = "") -> dict[str, Any]:
    """Key-wise median of numeric values over ``dicts`` (nested dicts recursed; non-numbers dropped). Every key
    of any dict counts (a key whose first seed held None was dropped); a median over fewer seeds than ``dicts``
    (a value missing or NaN in some) is logged, as it is a median of the rest."""
    out: dict[str, Any] = {}
    keys = list(dict.fromkeys(k for d in dicts for k in d))
    for key in keys:
        vals = [d.get(key) for d in dicts]
        kind = next((v for v in vals if v is not None), None)
        if isinstance(kind, dict):
            out[key] = median_of([v if isinstance(v, dict) else {} for v in vals], f"{_where}{key}.")
        elif isinstance(kind, (int, float, np.integer, np.floating)) and not isinstance(kind, bool):
            nums = [float(v) for v in vals if isinstance(v, (int, float, np.integer, np.floating))]
            nums = [v for v in nums if math.isfinite(v)]
            if len(nums) < len(dicts):
                logging.getLogger("benchmarks").info("median of %s%s over %d of %d seeds (the others have none)",
                                                     _where, key, len(nums), len(dicts))
            out[key] = float(np.median(nums)) if nums else float("nan")
    return out


def start(script: str, mode: str, verbose: bool = False, out_dir: Path | None = None) -> tuple[dict[str, Any], float]:
    """A benchmark's start: quieter TensorFlow, timestamped logging on stderr, the result header and the
    start time (for ``finish``); with ``out_dir``, a word when the run will replace ``<script>_<mode>.json`` there
    (:func:`warn_if_exists`)."""
    quiet_tensorflow()
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(asctime)s %(message)s",
                        datefmt="%H:%M:%S", stream=sys.stderr)
    logging.getLogger("tensorflow").setLevel(logging.ERROR)  # retracing notices of the fold loops
    if out_dir is not None:
        warn_if_exists(Path(out_dir) / f"{script}_{mode}.json")
    return header(script, mode), time.perf_counter()


def start_together(folder: Path, me: str, n: int, poll: float = 0.01) -> None:
    """Barrier for benchmark worker processes: mark ``me`` ready in ``folder`` and wait until ``n`` are, so
    their clocks start together after each has paid its imports and data loading."""
    folder = Path(folder)
    (folder / f"ready-{me}").touch()
    while len(list(folder.glob("ready-*"))) < n:
        time.sleep(poll)


def parse_mode(ap: argparse.ArgumentParser, argv, quick: dict[str, Any], full: dict[str, Any]) -> argparse.Namespace:
    """Add the options every benchmark ends with (``--out-dir``, ``-v``), parse ``argv`` and fill the mode's presets
    (:func:`apply_mode`)."""
    ap.add_argument("--out-dir", type=out_dir, default=DEFAULT_OUT, help=OUT_HELP)
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    apply_mode(args, quick, full, parser=ap, argv=argv)
    return args


def apply_mode(args, quick: dict[str, Any], full: dict[str, Any], *, parser: argparse.ArgumentParser | None = None,
               argv: list[str] | None = None) -> None:
    """Set ``args.mode`` ("quick"/"full") and fill every option left at None from that mode's presets. With
    ``parser`` (and the ``argv`` it parsed), a full run given options that change what it measures gets a mode of
    its own (:func:`full_variant`), so its files do not replace those of the default run."""
    args.mode = "quick" if args.quick else "full"
    for key, value in (quick if args.quick else full).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if parser is not None and not args.quick:
        args.mode = full_variant(parser, argv, args, full)


#: Options that say where a run writes or how much it says, not what it measures: no part of a variant's name.
_NOT_MEASURED = frozenset({"quick", "out_dir", "work_dir", "work", "verbose", "mode"})
_UNSET = object()


def full_variant(parser: argparse.ArgumentParser, argv: list[str] | None, args: argparse.Namespace,
                 full: dict[str, Any]) -> str:
    """``full``, or ``full_<option><value>_...`` (e.g. ``full_folds5_repeats2``) for a full run given options whose
    values differ from the full mode's (presets included): each variant writes ``<script>_<mode>.json`` and
    ``.png`` of its own, so that ``--folds 5`` no longer replaces the published default run's figures. Only the
    options given on the command line count (in the parser's order), so a value a script derives from another
    does not."""
    base = vars(parser.parse_args([]))
    given = argparse.Namespace(**dict.fromkeys(base, _UNSET))
    parser.parse_args(sys.argv[1:] if argv is None else argv, namespace=given)
    parts = []
    for key in base:
        if key in _NOT_MEASURED or getattr(given, key) is _UNSET:
            continue
        default = full[key] if base[key] is None and key in full else base[key]
        value = getattr(args, key)
        if value != default:
            parts.append(_variant_part(key, value))
    name = "_".join(["full", *parts])
    if len(name) > 80:  # a long --config path or storage URL: a short, stable name instead
        import hashlib

        name = f"{name[:67]}_{hashlib.sha256(name.encode()).hexdigest()[:12]}"
    return name


def _variant_part(key: str, value: Any) -> str:
    """One option of a variant's name: ``folds5``, ``metric-f1-0.5``, ``config-mine`` (a path's stem), ``flag``."""
    import re

    key = key.replace("_", "-")
    if value is True:
        return key
    if value is False or value is None:
        return f"no-{key}"
    if isinstance(value, Path):
        value = value.stem
    if isinstance(value, (list, tuple)):
        value = ",".join(map(str, value))
    if isinstance(value, str) and "://" in value:  # a storage URL may hold a password: never in a file name
        import hashlib

        return f"{key}-{hashlib.sha256(value.encode()).hexdigest()[:8]}"
    text = re.sub(r"[^A-Za-z0-9.,+-]+", "-", f"{value:g}" if isinstance(value, float) else str(value)).strip("-")
    return f"{key}{text}" if isinstance(value, (int, float)) else f"{key}-{text}"


def quiet_tensorflow() -> None:
    """Less TensorFlow start-up noise on stderr (set before TensorFlow is imported)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def clear_keras() -> None:
    """Free the last model's graph between runs, so repeated runs do not slow down or grow."""
    import gc

    import keras

    keras.backend.clear_session()
    gc.collect()


def save_figure(fig, path: Path) -> Path:
    """Lay out, write (120 dpi, creating the folder) and close a benchmark's matplotlib figure."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the process is, so it unwinds (children killed, partial file named) as Ctrl-C does."""


def _raise_terminated(signum, frame) -> NoReturn:
    raise Terminated()


def run(main: Callable[[], int]) -> NoReturn:
    """A benchmark's entry point: SIGTERM stops it as Ctrl-C does; missing data (exit 2) and an interruption
    (exit 130, 143 for SIGTERM, naming what was kept) are one line on stderr, not a traceback."""
    from ecg_data.errors import DataError

    signal.signal(signal.SIGTERM, _raise_terminated)
    # Python leaves SIGINT ignored when it starts ignored (a background job, a pytest-xdist worker's child):
    # `kill -INT` must stop a benchmark as Ctrl-C does, as it stops `ecg-automl search`
    signal.signal(signal.SIGINT, signal.default_int_handler)
    prog = Path(sys.argv[0]).name
    try:
        code = main()
    except DataError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        code = 2
    except KeyboardInterrupt as exc:
        code = 143 if isinstance(exc, Terminated) else 130
        kept = (f"the work finished so far is kept in {_PARTIAL[-1]}" if _PARTIAL and _PARTIAL[-1].exists()
                else "nothing had finished, nothing was written")
        print(f"\n{prog}: interrupted; {kept}", file=sys.stderr)
    sys.exit(code)


def exit_when_orphaned(parent: int, poll_s: float = 2.0) -> None:
    """In a child that runs until its benchmark kills it: exit once ``parent`` is gone (killed with SIGKILL,
    which no ``finally`` survives), instead of training on under init until someone finds it."""
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_s)
        os._exit(1)

    threading.Thread(target=watch, name="orphan-watch", daemon=True).start()


def save_partial(path: Path, result: dict[str, Any], done: int, total: int, t_start: float,
                 **finished: Any) -> Path:
    """Write the header and the seeds (or runs) finished so far to ``path``, a ``*.partial.json`` beside the
    result file, so an interrupted run keeps them; log the progress."""
    elapsed = round(time.perf_counter() - t_start, 1)
    write_json(path, {**result, "partial": {"done": done, "of": total, "elapsed_s": elapsed}, **finished})
    if path not in _PARTIAL:
        _PARTIAL.append(path)
    log.info("%d of %d done, %.0f s elapsed; kept in %s", done, total, elapsed, path)
    return path


def seed_loop(seeds: list[int], one: Callable[[int], Any], partial: Path, result: dict[str, Any],
              t_start: float, key: str = "runs") -> list[Any]:
    """``one(seed)`` for each seed, logging which seed runs and keeping those finished in ``partial``."""
    runs: list[Any] = []
    for i, seed in enumerate(seeds):
        log.info("seed %d (%d of %d)", seed, i + 1, len(seeds))
        runs.append(one(seed))
        save_partial(partial, result, i + 1, len(seeds), t_start, **{key: runs})
    return runs


def drop_partial(path: Path) -> None:
    """The complete result is written: remove the partial file ``save_partial`` kept."""
    path.unlink(missing_ok=True)
    if path in _PARTIAL:
        _PARTIAL.remove(path)
