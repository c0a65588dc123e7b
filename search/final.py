"""The final test: train the best configuration's final model on the search patients, evaluate once on
held-out ones. The final model is the config retrained on all search patients (``refit``, optionally several
seeds averaged) or the average of its K patient-grouped fold models (``folds``)."""

from __future__ import annotations

import logging
import numbers
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from tqdm.auto import tqdm

from ecg_data import BeatDataset

from . import plots
from ._process import is_alive
from .folders import OutputError, why_no_folder, why_not_writable
from .metrics import _check_threshold, best_threshold, binary_metrics, full_report
from .tracking import FINAL_MODEL_TAG, Tracker
from .training import FitResult, fit, predict, require_dataset, tf_threads

log = logging.getLogger("search")

#: How the final model is made. ``refit``: the config trained on every search beat (``members`` seeds averaged).
#: ``folds``: the K models trained on the K patient-grouped folds (each on K-1 folds of the patients) averaged
#: into one model, its threshold chosen on their own out-of-fold predictions. On MIT-BIH DS2 the fold average
#: ranked unseen patients' beats better than 3 seeds refit on all DS1 (docs/RESULTS.md, sections 1 and 7).
FINAL_MODELS = ("refit", "folds")

#: Called after every epoch of every model the final model is made of: (model index, epoch, Keras logs).
EpochCallback = Callable[[int, int, dict], None]


def _member_epochs(on_epoch_end: EpochCallback | None, i: int):
    return None if on_epoch_end is None else (lambda epoch, logs: on_epoch_end(i, epoch, logs))


@dataclass
class FoldEnsemble:
    """The fold models of :func:`fit_fold_models`, their average as one model, and the decision threshold
    chosen on their out-of-fold predictions (each search beat scored by the models that did not see it)."""

    model: Any
    #: one per fold model, repeat by repeat (repeat r, fold k at index ``r * folds + k``)
    fits: list[FitResult]
    splits: list[tuple[np.ndarray, np.ndarray]]
    threshold: float
    #: each search beat's out-of-fold probability: the mean over repeats of the one model per repeat that did
    #: not see its patient (with one repeat, that model's probability)
    oof: np.ndarray
    #: each beat's validation fold, one row per repeat (shape repeats x beats)
    fold_of: np.ndarray
    #: the out-of-fold probabilities of each repeat on its own (shape repeats x beats)
    oof_by_repeat: np.ndarray


def fit_fold_models(config: dict[str, Any], train: BeatDataset, *, folds: int = 3, seed: int = 0, repeats: int = 1,
                    on_epoch_end: EpochCallback | None = None, cv: Sequence[Any] | None = None) -> FoldEnsemble:
    """Train ``config`` on each of ``folds`` patient-grouped folds of ``train`` (``ecg_data.patient_kfold``,
    split seed ``seed``; fold k trained with seed ``seed * 1009 + k``), pick the threshold from their
    out-of-fold predictions as the search does (:func:`search.best_threshold` with the folds), and average
    the fold models into one (:func:`spaces.build_ensemble`: one file to save, export and time).

    ``repeats`` > 1 repeats all that (split seed ``seed + 7919 * r``, training seeds ``seed * 1009 + r * folds
    + k``): ``repeats * folds`` models in the average, and every search beat is scored out of fold by
    ``repeats`` of them, whose mean chooses the threshold -- closer to the smoother average the threshold is
    applied to than one model's probabilities are. The repeats always differ in training seed; their patient
    folds differ only where the split seed changes them: scikit-learn's ``StratifiedGroupKFold`` shuffles
    only to break ties between patients of equal class balance, and on MIT-BIH DS1 every seed gives the same
    folds.

    ``cv``, one scikit-learn group splitter per repeat (each giving ``folds`` splits), replaces those
    splitters: e.g. ``[patient_kfold(5, seed=0), GroupKFold(5, shuffle=True, random_state=1)]`` for repeats
    whose patient folds differ (``benchmarks/fold_ensemble.py --reshuffle-repeats``). Every fold is checked for
    patient leakage all the same."""
    from ecg_data import grouped_splits, patient_kfold
    from spaces import build_ensemble

    require_dataset("train", train)
    if folds < 2:
        raise ValueError(f"a fold ensemble needs at least 2 folds, not {folds}")
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, not {repeats}")
    if cv is not None:
        cv = list(cv)
        if len(cv) != repeats:
            raise ValueError(f"cv has {len(cv)} splitters for {repeats} repeats (one per repeat)")
    oof = np.full((repeats, len(train)), np.nan)
    fold_of = np.full((repeats, len(train)), -1)
    fits, splits = [], []
    for r in range(repeats):
        splitter = patient_kfold(folds, seed=seed + 7919 * r) if cv is None else cv[r]
        repeat = list(grouped_splits(splitter, train.X, train.y, train.groups))  # TypeError for no splitter
        n_splits = splitter.get_n_splits(train.X, train.y, train.groups)
        if n_splits != folds:
            raise ValueError(f"the splitter of repeat {r} gives {n_splits} folds, not {folds}: {splitter!r}")
        validated = np.bincount(np.concatenate([va for _, va in repeat]), minlength=len(train))
        if (validated != 1).any():  # else found after all the training, as NaN out-of-fold "scores of a diverged model"
            raise ValueError(f"the splitter of repeat {r} validates {int((validated == 0).sum())} beats in no fold and "
                             f"{int((validated > 1).sum())} in more than one: a fold ensemble needs K-fold splits whose "
                             f"validation folds hold every beat once ({splitter!r})")
        for k, (tr, va) in enumerate(repeat):
            i = r * folds + k
            log.info("final model: training fold model %d/%d on %d beats", i + 1, repeats * folds, len(tr))
            res = fit(config, train.subset(tr), train.subset(va), seed=seed * 1009 + i,
                      on_epoch_end=_member_epochs(on_epoch_end, i))
            oof[r, va], fold_of[r, va] = res.val_prob, k
            fits.append(res)
            splits.append((tr, va))
    mean_oof = oof.mean(axis=0)
    threshold = best_threshold(train.y, mean_oof, fold_of)
    model = build_ensemble(config, [f.model for f in fits], channels=int(train.X.shape[2]))
    return FoldEnsemble(model, fits, splits, threshold, mean_oof, fold_of, oof)


def fit_final(config: dict[str, Any], train: BeatDataset, *, seed: int = 0, members: int = 1,
              on_epoch_end: EpochCallback | None = None) -> tuple[Any, list[FitResult]]:
    """The final model: ``config`` trained on ``train`` (seed ``seed``), or with ``members`` > 1 the average
    of that many such models (seeds ``seed``, ``seed + 1``, ...) as one model (:func:`spaces.build_ensemble`).
    Returns (model, the members' :class:`~search.training.FitResult`)."""
    if isinstance(members, bool) or not isinstance(members, numbers.Integral):  # "2" failed deep inside as a TypeError
        raise TypeError(f"members must be a whole number of models, not {members!r}")
    if members < 1:
        raise ValueError(f"members must be at least 1, not {members}")
    fits = []
    for i in range(members):
        if members > 1:
            log.info("final model: training member %d/%d", i + 1, members)
        fits.append(fit(config, train, None, seed=seed + i, on_epoch_end=_member_epochs(on_epoch_end, i)))
    if members == 1:
        return fits[0].model, fits
    from spaces import build_ensemble

    return build_ensemble(config, [f.model for f in fits], channels=int(train.X.shape[2])), fits


def file_sha256(path: str | Path) -> str:
    """The SHA-256 of a file's bytes, hex: the final model's, recorded in the study, tells its file from one another
    search saved at the same path."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def final_model_problem(final: dict[str, Any]) -> str | None:
    """Why a study's final report's ``model_path`` is not its final model, in words ("is gone (moved or deleted)",
    "was replaced ..."); None when it is there and, where the report recorded its SHA-256 (``model_sha256``), holds
    the same bytes. Two studies of one name (in two storages) with one --out-dir save at the same path: the later
    replaced the other's model, which `export` then shipped under the other study's config and threshold."""
    path = Path(final.get("model_path") or "")
    if not final.get("model_path") or not path.is_file():
        return "is gone (moved or deleted)"
    want = final.get("model_sha256")
    try:
        if want and file_sha256(path) != want:
            return ("was replaced since its search saved it (another study of the same name, in another storage, "
                    "saved its own final model there with the same --out-dir; or the file was changed)")
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    return None


def save_model(model: Any, out_path: Path) -> Path:
    """Save ``model`` at ``out_path``, creating its folder; a path that cannot be written (a file in the way,
    a read-only folder, a full disk) is an :class:`OutputError` naming it, not a traceback. Whole or not at all:
    written beside it and renamed into place (a search killed while saving left a 0-byte model there, which the
    next search took for another study's). Such a partial file of a killed save is removed by the next."""
    import os

    tmp = out_path.with_name(f".{out_path.stem}.{os.getpid()}.tmp{out_path.suffix}")  # Keras wants the suffix
    try:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        for old in out_path.parent.glob(f".{out_path.stem}.*.tmp{out_path.suffix}"):  # of a killed save
            pid = old.name[len(out_path.stem) + 2:].split(".")[0]
            if not (pid.isdigit() and is_alive(int(pid), None)):  # (not another search's save going on now)
                old.unlink(missing_ok=True)
        model.save(tmp)
        os.replace(tmp, out_path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OutputError(f"cannot save the final model as {out_path}: {why_no_folder(out_path.parent, exc)}") from None
    return out_path


def final_test(
    config: dict[str, Any],
    threshold: float,
    data: BeatDataset,
    *,
    seed: int = 0,
    members: int = 1,
    final_model: str = "refit",
    folds: int = 3,
    fold_repeats: int = 1,
    out_path: str | Path | None = None,
    tracker: Tracker | None = None,
    run_id: str | None = None,
    title: str = "final test",
    progress: bool = False,
    about: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train the final model of ``config`` on the 'search' beats, test on every 'test' beat at the
    validation-chosen ``threshold``; return the report (also at threshold 0.5), save the model, log all to ``run_id``.

    ``members`` > 1 trains the config that many times (seeds ``seed``, ``seed + 1``, ...) and the final model
    is their average (:func:`spaces.build_ensemble`, one model to save and export): the seeds' models
    disagree on unseen patients, and their average ranks those patients' beats better than a typical one.

    ``final_model="folds"`` makes the final model the average of the config's ``folds`` patient-grouped fold
    models instead (:func:`fit_fold_models`, each trained ``fold_repeats`` times with other seeds);
    ``threshold`` is then replaced by the one chosen on those models' own out-of-fold predictions (reported
    as ``search_threshold`` beside it). ``about`` (e.g. the trial number and config) goes into the report
    before it is logged."""
    if final_model not in FINAL_MODELS:
        raise ValueError(f"unknown final model {final_model!r} (choose from {', '.join(FINAL_MODELS)})")
    _check_threshold(threshold)  # before the training, not when the report is made after it
    if final_model == "folds" and members > 1:
        raise ValueError("the fold ensemble's members are its folds: members must be 1 with final_model='folds'")
    why = why_not_writable(Path(out_path).parent) if out_path is not None else None
    if why:  # before the training, not after it
        raise OutputError(f"cannot save the final model in {Path(out_path).parent}: {why}")
    train, test = data.search_part(), data.test_part()
    if len(test) == 0:
        raise ValueError(f"{data.name}: no held-out test patients")
    t0 = time.perf_counter()
    extra: dict[str, Any] = {"final_model": final_model}
    n_models, epochs = (folds * fold_repeats if final_model == "folds" else members), int(config["epochs"])
    bar = tqdm(total=n_models * epochs, desc="final model", unit="epoch", disable=not progress, file=sys.stderr,
               dynamic_ncols=True)

    def on_epoch(i: int, epoch: int, logs: dict) -> None:  # minutes of training per model on a full database
        bar.set_postfix_str(f"model {i + 1}/{n_models}, epoch {epoch + 1}/{epochs}, loss {logs.get('loss', 0):.4f}")
        bar.update(1)

    if final_model == "folds":
        ens = fit_fold_models(config, train, folds=folds, seed=seed, repeats=fold_repeats, on_epoch_end=on_epoch)
        model, fits, members = ens.model, ens.fits, len(ens.fits)
        extra.update(search_threshold=float(threshold), fold_repeats=int(fold_repeats),
                     oof=binary_metrics(train.y, ens.oof, ens.threshold),
                     fold_train_beats=[int(len(tr)) for tr, _ in ens.splits])
        threshold = ens.threshold
    else:
        model, fits = fit_final(config, train, seed=seed, members=members, on_epoch_end=on_epoch)
    bar.close()
    prob = predict(model, config, test)
    report = full_report(test.y, prob, threshold, labels=test.label)
    report["at_0.5"] = binary_metrics(test.y, prob, 0.5)
    report["train_beats"] = int(len(train))
    report["train_patients"] = int(len(np.unique(train.groups)))
    report["members"] = int(members)
    report.update(extra)
    report.update(about or {})
    if members > 1:
        report["member_roc_auc"] = [binary_metrics(test.y, predict(f.model, config, test), threshold)["roc_auc"]
                                    for f in fits]
    report["test_patients"] = int(len(np.unique(test.groups)))
    report["tf_threads"] = tf_threads()  # the figures depend on it (docs/REPRODUCIBILITY.md)
    report["seconds"] = time.perf_counter() - t0
    if out_path is not None:
        report["model_path"] = str(save_model(model, Path(out_path)).resolve())
        report["model_sha256"] = file_sha256(report["model_path"])  # which file is this study's (final_model_problem)
    if tracker is not None and run_id is not None:
        tracker.log_final_report(run_id, report, title)  # what `ecg-automl sync` can back-fill from the study
        fig = plots.roc_figure(test.y, prob, title)
        tracker.log_figure(run_id, fig, "final_roc.png")
        plots.close(fig)
        if tracker.log_model(run_id, model, "final_model.keras") and report.get("model_sha256"):
            # which final model the run's copy is (export takes it only for the study's own)
            tracker.set_tags(run_id, {FINAL_MODEL_TAG: report["model_sha256"]})
    return report
