"""The study's figures (MLflow artifacts) for the cases a tiny or lopsided study makes: a plot says what it cannot
show instead of drawing empty axes, and what it shows can be told apart (helper review of the product's plots)."""

from __future__ import annotations

import numpy as np
import optuna
import pytest

pytest.importorskip("matplotlib")

from search import plots  # noqa: E402
from search.pareto import pareto_figure  # noqa: E402


def test_a_class_without_beats_is_na_not_0_percent_and_one_class_has_no_roc_curve():
    """A test side of normal beats only (a record choice): the abnormal row read "0 / 0.0%" and the ROC plot was a
    diagonal with an empty legend box and a matplotlib warning in the final report."""
    fig = plots.confusion_figure(np.array([[4874, 0], [0, 0]]), "final test, held-out patients: trial 2, mitdb")
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert texts == ["4874\n100.0%", "0\n0.0%", "0\nn/a", "0\nn/a"]
    fig = plots.roc_figure(np.zeros(50), np.linspace(0, 1, 50), "final test")
    ax = fig.axes[0]
    assert ax.get_legend() is None and [t.get_text() for t in ax.texts] == ["no ROC curve: every beat here is normal"]
    fig = plots.roc_figure(np.r_[np.zeros(25), np.ones(25)], np.linspace(0, 1, 50), "final test")
    assert fig.axes[0].get_legend().get_texts()[0].get_text() == "AUC 1.000" and not fig.axes[0].texts


def test_a_long_title_is_wrapped_not_cut_off():
    title = "final test, held-out patients: trial 2, heartbeat-csv (mitbih_test.csv)"
    shown = plots.confusion_figure(np.array([[5, 1], [2, 3]]), title).axes[0].get_title()
    assert shown.replace("\n", " ") == title and max(len(line) for line in shown.split("\n")) <= 44


def test_the_history_of_a_few_trials_has_whole_trial_numbers():
    """One trial gave ticks at -0.04..0.04, three at steps of 0.25."""
    study = optuna.create_study(direction="maximize", study_name="few")
    for v in (0.3, 0.5, 0.4):
        study.add_trial(optuna.trial.create_trial(value=v, params={}, distributions={}))
    ax = plots.study_figures(study)["optimization_history.png"].axes[0]
    ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
    assert ticks and all(float(t).is_integer() for t in ticks), ticks


def test_the_history_draws_the_best_so_far_as_steps_and_one_trial_without_trial_minus_one():
    """Optuna joins the bests with slopes (0.3 at trial 0 rising to 0.5 at trial 1, as if there were bests
    between); a one-trial study showed ticks -1, 0, 1 and a legend entry for a line that drew nothing."""
    study = optuna.create_study(direction="maximize", study_name="steps")
    for v in (0.3, 0.5, 0.4):
        study.add_trial(optuna.trial.create_trial(value=v, params={}, distributions={}))
    ax = plots.study_figures(study)["optimization_history.png"].axes[0]
    best = [line for line in ax.get_lines() if line.get_label() == "best so far"]
    assert len(best) == 1 and best[0].get_drawstyle() == "steps-post"
    assert list(best[0].get_ydata()) == [0.3, 0.5, 0.5]
    one = optuna.create_study(direction="maximize", study_name="one")
    one.add_trial(optuna.trial.create_trial(value=0.3, params={}, distributions={}))
    ax = plots.study_figures(one)["optimization_history.png"].axes[0]
    assert list(ax.get_xticks()) == [0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["validation f1"]


def _edge_study(values: list[tuple[float, float, float]]) -> optuna.Study:
    study = optuna.create_study(directions=["maximize", "minimize", "minimize"], study_name="edge")
    study.set_user_attr("settings", {"objectives": ["quality", "latency", "size"], "metric": "f1"})
    for v in values:
        study.add_trial(optuna.trial.create_trial(values=list(v), params={}, distributions={}))
    return study


def test_the_pareto_plot_tells_sizes_apart_labels_every_trial_and_is_not_drawn_empty():
    """Marker area was 20 + 2 x KB, so 13.6 and 15.3 KB looked alike and no key said what area meant; dominated
    trials had no number; a study with no finished trial logged empty axes (and a legend warning)."""
    fig = pareto_figure(_edge_study([(0.7, 0.5, 13.6), (0.6, 0.9, 15.3), (0.5, 0.4, 14.0)]))
    ax = fig.axes[0]
    areas = sorted(a for c in ax.collections for a in c.get_sizes() if len(c.get_offsets()))
    assert areas[0] == pytest.approx(30) and areas[-1] == pytest.approx(300)
    assert {t.get_text().split(" ")[0] for t in ax.texts} == {"0", "1", "2"}
    legend = fig.legends[0]
    assert {"13.6 KB", "15.3 KB"} <= {t.get_text() for t in legend.get_texts()}
    kinds = [h for h, t in zip(legend.legend_handles, legend.get_texts()) if t.get_text() in ("trial", "Pareto front")]
    assert [list(h.get_sizes()) for h in kinds] == [[40], [40]]  # not the largest point's size
    empty = optuna.create_study(directions=["maximize", "minimize"], study_name="none")
    empty.set_user_attr("settings", {"objectives": ["quality", "latency"]})
    assert pareto_figure(empty) is None


def test_a_trials_confusion_matrix_says_it_pools_the_folds_and_gives_its_own_f1():
    """The trial printed 0.311 while its matrix worked out to F1 0.446 (all folds' beats pooled, against the mean of
    the folds' F1): the figure now says which threshold, which F1 and that the trial's value is the folds' mean."""
    from search._trial_results import log_trial_results

    class Tracker:
        figures: dict = {}

        def log_metrics(self, *args, **kwargs):
            pass

        def log_figure(self, run_id, fig, name):
            self.figures[name] = fig.axes[0].get_title().replace("\n", " ")

        def log_model(self, run_id, model):
            return True

    y = np.r_[np.zeros(80), np.ones(20)]
    oof = np.r_[np.full(70, 0.1), np.full(10, 0.9), np.full(15, 0.8), np.full(5, 0.2)]  # TP 15, FP 10, FN 5
    tracker = Tracker()
    log_trial_results(tracker, "run", 1, y, oof, 0.5, [{"objective": 0.3}], {}, None)
    assert tracker.figures["confusion_matrix.png"] == ("trial 1: every validation fold's beats pooled, threshold "
                                                       "0.500: F1 0.667 (the trial's value: its metric's mean over the folds)")
