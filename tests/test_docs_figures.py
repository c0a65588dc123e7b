"""The README's headline figures are the published result files' numbers.

The benchmarks issue allows no number in the README that a script did not produce. These figures were
copied by hand from ``benchmarks/results/*.json``; a rerun that rewrites a file, or an edit of the README,
must keep the two in step, and this test says which figure moved. (The "Results of a real study" section
quotes `ecg-automl search` reports, which are not kept in the repository, so it is not checked here.)
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def _load(name: str) -> dict:
    return json.loads((RESULTS / f"{name}.json").read_text())


def _edge_best_int8() -> dict:
    """The edge front member the README quotes: the int8 row with the highest DS2 F1."""
    return max((r for r in _load("edge_full")["table"] if r["mode"] == "int8"), key=lambda r: r["ds2_f1"])


def _half_time_wins(name: str) -> str:
    """'N of M': comparisons in which the driver reached a KerasTuner engine's best within half its time."""
    rows = _load(name)["optuna_vs_baselines"]["per_seed"]
    wins = sum(r["ratio"] is not None and r["ratio"] <= 0.5 for r in rows)
    return f"{wins} of {len(rows)}"


def _figures() -> list[tuple[str, str]]:
    """(what, the text the README must hold, whitespace as single spaces), each formatted from a result file."""
    q = _load("quality_full")["headline"]
    f52 = _load("fold_ensemble_full_5x2")["medians"]
    f5 = _load("fold_ensemble_full_5folds")["medians"]["ensemble_int8_one_file"]
    f3 = _load("fold_ensemble_full")["medians"]["ensemble_int8"]
    one, member = f52["ensemble_int8_one_file"], f52["member_keras_median"]
    rerun = [r["ensemble_int8_one_file"] for r in _load("fold_ensemble_full_folds5_repeats2_stopped")["runs"]]
    k10 = next(e for e in _load("ensemble_latency_full")["ensembles"] if e["members"] == 10)  # the same file's shape
    tr = _load("threshold_rules_full")["medians"]
    chosen, product = tr["rules"][tr["chosen_on_ds1"]], tr["rules"]["median_of_fold_best"]
    p = _load("ptbxl_records_full")["headline"]
    cost = _load("pipeline_cost_full")["summary"]
    e = _edge_best_int8()
    s600 = _load("search_efficiency_full_600s_both_parallel")["medians"]
    s300 = _load("search_efficiency_full_300s_both_parallel")["medians"]
    return [
        ("quality, inter-patient", f"DS2 F1 {q['inter_patient_f1']:.3f} / ROC-AUC {q['inter_patient_roc_auc']:.3f}"),
        ("quality, int8 file", f"one {q['inter_patient_int8_size_kb']:.0f} KB file"),
        ("quality, int8 F1", f"per beat: {q['inter_patient_int8_f1']:.3f} / {q['inter_patient_roc_auc']:.3f}"),
        # the file counted each record as a patient (201 and 202, one man, got one id after it was written)
        ("quality, leaky split", f"all {q['beat_level_patients_on_both_sides']} records' patients leak, reports F1 "
                                 f"{q['beat_level_f1']:.3f} / ROC-AUC {q['beat_level_roc_auc']:.3f}"),
        ("edge, best member", f"is {e['size_kb']:.1f} KB, {e['host_median_ms']:.3f} ms per beat"),
        ("edge, Pi estimate", f"{e['host_ms']:.3f} ms with the host's slow stretches divided out, which is what "
                              f"gives the Pi 4 estimate of {e['pi4_estimate_ms']:.2f} ms)"),
        ("edge, DS2", f"DS2 F1 {e['ds2_f1']:.3f} / ROC-AUC {e['ds2_roc_auc']:.3f}"),
        ("ptbxl", f"accuracy {p['record_accuracy']:.3f}, F1 {p['record_f1']:.3f}, ROC-AUC {p['record_roc_auc']:.3f}"),
        ("fold ensemble 5x2, file", f"({one['size_kb']:.0f} KB, {one['ms_median']:.3f} ms per beat on the EPYC host,"),
        ("fold ensemble 5x2, Xeon", f"{k10['ms_median']:.3f} ms on the Xeon: `benchmarks/ensemble_latency.py`"),
        ("fold ensemble 5x2, DS2", f"F1 **{one['f1']:.3f}** / ROC-AUC {one['roc_auc']:.4f} at the DS1 threshold"),
        ("fold ensemble 5x2, member", f"(one member at that threshold: {member['f1']:.3f} / {member['roc_auc']:.3f};"),
        ("fold ensemble 5x2, rerun", f"gave F1 {rerun[0]['f1']:.3f} / {rerun[1]['f1']:.3f} and ROC-AUC "
                                     f"{rerun[0]['roc_auc']:.4f} / {rerun[1]['roc_auc']:.4f} in two seeds"),
        ("threshold rules", f"(DS1 F1 {chosen['ds1_leave_one_fold_out_f1']:.3f} for the best against "
                            f"{product['ds1_leave_one_fold_out_f1']:.3f}; DS2 F1 {chosen['ds2_f1']:.3f} against "
                            f"{product['ds2_f1']:.3f})"),
        ("threshold rules, ROC-AUC", f"5-fold Keras averages reach DS2 ROC-AUC {tr['ds2_roc_auc']:.4f}, still under"),
        ("fold ensemble 5 folds", f"{f5['size_kb']:.0f} KB, {f5['ms_median']:.3f} ms) "
                                  f"{f5['f1']:.3f} / {f5['roc_auc']:.4f}"),
        ("fold ensemble 3 folds", f"with 3 folds {f3['f1']:.3f} / {f3['roc_auc']:.3f}"),
        ("bar, closest", f"F1 {one['f1']:.3f} / ROC-AUC {one['roc_auc']:.4f}, ROC-AUC "
                         f"{0.97 - one['roc_auc']:.4f} short"),
        ("search 600 s, half-time wins", f"within half that engine's time in "
                                         f"{_half_time_wins('search_efficiency_full_600s_both_parallel')} comparisons"),
        ("search 600 s, bests", f"({s600['optuna']['best_f1']:.3f}, against KerasTuner Hyperband's "
                                f"{s600['kt-hyperband']['best_f1']:.3f} and random search's "
                                f"{s600['kt-random']['best_f1']:.3f}"),
        ("search 300 s", f"At 300 s per engine it is {_half_time_wins('search_efficiency_full_300s_both_parallel')}"
                         f" and its median best ({s300['optuna']['best_f1']:.3f}) sits between Hyperband's "
                         f"({s300['kt-hyperband']['best_f1']:.3f}) and random search's "
                         f"({s300['kt-random']['best_f1']:.3f})"),
        ("pipeline cost", f"a trial spends {100 * cost['trial_training_share']:.1f} % of its time training "
                          f"({100 * cost['trial_other_share']:.1f} % MLflow"),
    ]


def _edge_page_figures() -> list[tuple[str, str]]:
    """(what, text) that docs/EDGE.md must hold: the reference figures the README leaves to that page."""
    (rows,) = _load("csv_rows_full")["records"]
    inst = _load("pi_install_full")["summary"]
    return [
        ("csv rows, record", f"On MIT-BIH {rows['record']} ({rows['beats']:,} annotated beats, the quickstart's int8 model)"),
        ("csv rows, changed", f"rows of the raw signal changed {rows['rows']['raw']['changed_decisions']} and rows "
                              f"filtered one by one {rows['rows']['filtered_per_row']['changed_decisions']}"),
        ("pi install", f"took {inst['install_seconds']['min']:.0f}-{inst['install_seconds']['max']:.0f} s and "
                       f"{inst['venv_mb']['median']:.0f} MB"),
    ]


def _latency_figures() -> list[tuple[str, str, str]]:
    """(page, what, text): the one-file ensembles' latency on this host (docs/RESULTS.md section 7 and the Pi page)."""
    result = _load("ensemble_latency_full")
    rows = []
    for e in result["ensembles"]:
        rounds = " / ".join(f"{x:.3f}" for x in e["ms_median_per_round"])
        pi = f"{e['pi4_estimate_ms']:.2f}" if e["members"] == 1 else f"{e['pi4_estimate_ms']:.1f}"
        rows.append(("docs/RESULTS.md", f"latency, {e['members']} member(s)",
                     f"| {e['size_kb']:.1f} KB | **{e['ms_median']:.3f}** ({rounds}) | {e['ms_p90']:.3f} | {pi} ms"))
    c, one = result["control"], result["ensembles"][0]
    rows += [("docs/RESULTS.md", "latency, control", f"an untrained member took {c['untrained']['ms_median']:.3f} ms "
                                                      f"against the trained one's {c['trained_1_epoch']['ms_median']:.3f} ms"),
             ("docs/PI_LATENCY.md", "member on the Xeon", f"{one['ms_median']:.4f} ms on the Xeon on 2026-12-07"),
             ("docs/PI_LATENCY.md", "its Pi estimate", f"| Xeon, 2026-12-07 | Xeon (shipped) | {one['pi4_estimate_ms']:.2f} ms |")]
    return rows


def _text(page: str) -> str:
    return " ".join((ROOT / page).read_text().split())  # line breaks fall anywhere in a paragraph


@pytest.mark.parametrize("what, text", _figures(), ids=[w for w, _ in _figures()])
def test_the_readme_quotes_the_result_files(what, text):
    assert text in _text("README.md"), f"{what}: the README no longer says {text!r}, which is what the result file holds"


@pytest.mark.parametrize("what, text", _edge_page_figures(), ids=[w for w, _ in _edge_page_figures()])
def test_the_edge_page_quotes_the_result_files(what, text):
    assert text in _text("docs/EDGE.md"), (f"{what}: docs/EDGE.md no longer says {text!r}, which is what the result "
                                           f"file holds")


@pytest.mark.parametrize("page, what, text", _latency_figures(), ids=[w for _, w, _ in _latency_figures()])
def test_the_latency_check_is_quoted_from_its_result_file(page, what, text):
    assert text in _text(page), f"{what}: {page} no longer says {text!r}, which is what the result file holds"
