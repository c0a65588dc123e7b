"""What the sampler alone can gain in a search-efficiency budget, on a surrogate of measured trials
(``search_efficiency.py --sampler-surrogate [JSON ...]``).

The benchmark's runs cost 1-2 hours each and give one draw of a noisy race, so sampler settings cannot be
compared there. Instead, a random forest is fitted to the configs and validation F1 of the completed
4-epoch KerasTuner trials that ``search_efficiency.py`` result files hold (same space, data, folds and
objective as the driver's trials), and samplers are run many times on "forest prediction + Gaussian noise":
random search, and Optuna's TPE as the driver builds it (``search.samplers.tpe_sampler``: multivariate, constant
liar) with several numbers of random start-up trials (the driver's ``tpe_startup_trials``: 7 at 3 folds). The noise is the forest's
out-of-bag residual (an upper bound: it holds the forest's own error) and half of it.

Reported per sampler: the median best-so-far after n trials, and the issue's bar in trial counts -- how
often a run reaches an independent random search's best within half the trials that search needed for it
(every trial costing the same; the driver's pruned and gated trials cost less, which this leaves out), and
the chance that the median of 3 seeds passes -- at the full run length and at shorter budgets (both runs cut
at n trials), so that a longer budget can be judged before spending hours on it. An "oracle" that draws the
surrogate's best config in every trial (only its noise varies) bounds what any sampler could do here: it
cannot pass when random search finds its best in its first trial. Between it and random search, "top_X%"
draws uniformly from the best X % of random configs by the surrogate's prediction: how much of the space a
sampler would have to rule out before its first trial. A surrogate of 4-epoch trials says nothing
about configs far from those measured; it ranks samplers, it does not predict a study's F1.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import numpy as np

#: Trials per simulated run, repeats per sampler and noise level (full; --quick uses QUICK).
FULL = {"trials": 64, "repeats": 60}
QUICK = {"trials": 8, "repeats": 3}
STARTUP = (2, 4, 7, 10)
#: Budgets (trials) at which the bar is also read, both runs cut there; those up to the run length are used.
BUDGETS = (4, 8, 12, 16, 24, 32, 48, 64)
#: Random configs on which the oracle looks for the surrogate's best (besides the measured configs).
ORACLE_DRAWS = 5000
#: Shares of those random configs (best first, by prediction) that the top_X% samplers draw from.
TOP_SHARES = (0.01, 0.05, 0.2)
DRIVER_FOLDS = 3  # the benchmark's folds; the driver's start-up count is tpe_startup_trials(3)


def collect(paths: list[Path], space) -> tuple[list[dict[str, Any]], list[float], list[str]]:
    """Completed trials trained for the space's full epochs, with a config holding every searched parameter,
    from search_efficiency result files whose objective is validation F1 (``settings.metric == 'f1'``) on beats
    prepared as this version prepares them (``source.pipeline_version``)."""
    from ecg_data.cache import PIPELINE_VERSION

    names = list(space.searched)
    _, high = space.epochs_range
    configs, values, used = [], [], []
    for path in paths:
        data = json.loads(path.read_text())
        if data.get("settings", {}).get("metric") != "f1":
            continue
        if data.get("source", {}).get("pipeline_version") != PIPELINE_VERSION:
            continue  # other features, other F1
        n0 = len(values)
        for run in data.get("runs", []):
            for t in run.get("trials", []):
                cfg = t.get("config")
                if t.get("state") != "complete" or t.get("value") is None or not cfg:
                    continue
                if t.get("epochs", high) != high:
                    continue  # Hyperband's shorter rungs measure something else
                if not all(n in cfg for n in names):
                    continue  # an older space
                configs.append({n: cfg[n] for n in names})
                values.append(float(t["value"]))
        if len(values) > n0:
            used.append(path.name)
    return configs, values, used


def _encoder(space) -> Callable[[dict[str, Any]], list[float]]:
    """One-hot for categoricals, log for log-scaled numbers, the value otherwise."""
    params = list(space.searched.items())

    def enc(cfg: dict[str, Any]) -> list[float]:
        row: list[float] = []
        for n, spec in params:
            v = cfg[n]
            if spec["type"] == "categorical":  # KerasTuner stores a bool choice as 0/1
                row += [float(v == c if not isinstance(c, bool) else bool(v) == c) for c in spec["choices"]]
            else:
                row.append(float(np.log(float(v))) if spec.get("log") else float(v))
        return row

    return enc


def simulate(space, configs: list[dict[str, Any]], values: list[float], trials: int, repeats: int,
             seed: int = 0, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Fit the surrogate, run every sampler ``repeats`` times per noise level, and summarise."""
    import optuna
    from sklearn.ensemble import RandomForestRegressor

    from search.samplers import tpe_sampler

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    enc = _encoder(space)
    X, y = np.array([enc(c) for c in configs]), np.array(values)
    forest = RandomForestRegressor(n_estimators=200, min_samples_leaf=3, oob_score=True, random_state=seed).fit(X, y)
    resid_sd = float(np.std(y - forest.oob_prediction_))
    mu_star, cfg_star, drawn = _surrogate_best(space, forest, enc, configs, seed)
    top20 = float(np.quantile(drawn, 0.8))  # the prediction a config needs to be in the space's best 20 %
    samplers: dict[str, Callable[[int], optuna.samplers.BaseSampler]] = {
        "random": lambda s: optuna.samplers.RandomSampler(seed=s)}
    for k in STARTUP:
        samplers[f"tpe_startup_{k}"] = (lambda k: lambda s: tpe_sampler(s, k))(k)
    out: dict[str, Any] = {"surrogate": {"trials": len(y), "oob_r2": float(forest.oob_score_),
                                         "oob_residual_sd": resid_sd, "best_measured": float(y.max()),
                                         "median_measured": float(np.median(y)),
                                         "best_predicted": mu_star, "best_predicted_config": cfg_star,
                                         "top_20%_threshold": top20},
                           "trials": trials, "repeats": repeats, "noise": {}}
    for label, sd in (("oob_residual", resid_sd), ("half", resid_sd / 2)):
        curves: dict[str, np.ndarray] = {}
        in_top: dict[str, np.ndarray] = {}  # per run and trial: did the sampler draw a config of the best 20 %?
        for name, make in samplers.items():
            runs, tops = [], []
            for r in range(repeats):
                rng = np.random.default_rng(10_000 + r)  # the same noise stream for every sampler's r-th run
                mus: list[float] = []

                def objective(trial):
                    cfg = space.suggest(trial)
                    mus.append(float(forest.predict([enc(cfg)])[0]))
                    return mus[-1] + float(rng.normal(0.0, sd))

                study = optuna.create_study(direction="maximize", sampler=make(seed + r))
                study.optimize(objective, n_trials=trials)
                runs.append(np.maximum.accumulate([t.value for t in study.trials]))
                tops.append(np.array(mus) >= top20)
            curves[name], in_top[name] = np.array(runs), np.array(tops)
            log(f"noise {label} ({sd:.3f}): {name} median best after {trials} trials "
                f"{np.median(curves[name][:, -1]):.3f}")
        # the oracle: the surrogate's best config every trial, with the r-th run's noise stream
        curves["oracle"] = np.array([np.maximum.accumulate(mu_star + np.random.default_rng(10_000 + r).normal(
            0.0, sd, trials)) for r in range(repeats)])
        for share in TOP_SHARES:  # a config drawn from the best share of the space every trial, same noise
            pool = np.sort(drawn)[::-1][:max(1, int(round(share * len(drawn))))]
            curves[f"top_{share:.0%}"] = np.array([np.maximum.accumulate(
                pool[np.random.default_rng(20_000 + r).integers(len(pool), size=trials)]
                + np.random.default_rng(10_000 + r).normal(0.0, sd, trials)) for r in range(repeats)])
        out["noise"][label] = {"sd": sd, "samplers": {n: _summary(c, curves["random"], in_top.get(n))
                                                      for n, c in curves.items()}}
    return out


def _surrogate_best(space, forest, enc, configs: list[dict[str, Any]],
                    seed: int) -> tuple[float, dict[str, Any], np.ndarray]:
    """The highest surrogate prediction over the measured configs and ORACLE_DRAWS random configs of the space,
    its config, and the predictions of the random configs alone."""
    import optuna

    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=seed))
    cands = list(configs) + [space.suggest(study.ask()) for _ in range(ORACLE_DRAWS)]
    pred = forest.predict(np.array([enc(c) for c in cands]))
    i = int(np.argmax(pred))
    return (float(pred[i]), {k: (v.item() if hasattr(v, "item") else v) for k, v in cands[i].items()},
            pred[len(configs):])


def _summary(curves: np.ndarray, random_curves: np.ndarray, in_top: np.ndarray | None = None) -> dict[str, Any]:
    """Median best-so-far per trial count and the bar in trial counts against independent random runs; for a
    real sampler also the share of its draws in the space's best 20 % per block of trials."""
    n = curves.shape[1]
    by_budget = {b: _pass_rate(curves[:, :b], random_curves[:, :b]) for b in BUDGETS if 2 <= b < n}
    p = by_budget[n] = _pass_rate(curves, random_curves)
    extra = {} if in_top is None else {"share_of_draws_in_top_20%": {
        f"{a + 1}-{min(b, n)}": float(in_top[:, a:b].mean()) for a, b in zip((0,) + BUDGETS, BUDGETS) if a < n}}
    return extra | {
        "median_best_after": [float(np.median(curves[:, j])) for j in range(n)],
        "q25_best_after": [float(np.quantile(curves[:, j], 0.25)) for j in range(n)],
        "q75_best_after": [float(np.quantile(curves[:, j], 0.75)) for j in range(n)],
        "p_within_half_of_random": p,
        "p_median_of_3_seeds_passes": _median_of_3(p),
        "by_budget": {str(b): {"p_within_half_of_random": q, "p_median_of_3_seeds_passes": _median_of_3(q)}
                      for b, q in sorted(by_budget.items())}}


def _pass_rate(curves: np.ndarray, random_curves: np.ndarray) -> float:
    """Share of runs that reach an independent random run's best within half the trials it needed for it."""
    passes = []
    for i in range(curves.shape[0]):
        ref = random_curves[(i + 1) % random_curves.shape[0]]  # another run's noise and draws
        best, t_ref = ref[-1], int(np.argmax(ref >= ref[-1])) + 1  # trials the random run needed for its best
        hit = np.flatnonzero(curves[i] >= best)
        passes.append(bool(hit.size) and (int(hit[0]) + 1) <= t_ref / 2)
    return float(np.mean(passes))


def _median_of_3(p: float) -> float:
    """Chance that at least 2 of 3 independent seeds pass, each with probability p."""
    return p ** 3 + 3 * p ** 2 * (1 - p)


def plot(result: dict[str, Any], path: Path) -> Path:
    """Median best-so-far per sampler (one panel per noise level) and the bar's pass rate."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from _common import save_figure

    from search.samplers import tpe_startup_trials

    sim = result["simulation"]
    driver = f"tpe_startup_{tpe_startup_trials(DRIVER_FOLDS)}"
    levels = list(sim["noise"])
    fig, axes = plt.subplots(1, len(levels) + 2, figsize=(5 * (len(levels) + 2), 4))
    for ax, level in zip(axes, levels):
        for name, s in sim["noise"][level]["samplers"].items():
            x = np.arange(1, len(s["median_best_after"]) + 1)
            ax.plot(x, s["median_best_after"], label=name, lw=2 if name in ("random", driver) else 1,
                    ls=":" if name == "oracle" or name.startswith("top_") else "-")
        ax.set_title(f"noise sd {sim['noise'][level]['sd']:.3f} ({level})")
        ax.set_xlabel("trials")
        ax.set_ylabel(f"median best validation F1 ({sim['repeats']} runs)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    ax = axes[-2]
    for level, ls in zip(levels, ("-", "--")):
        tops = [n for n in sim["noise"][level]["samplers"] if n.startswith("top_")]
        colors = {"random": "C0", driver: "C3", "oracle": "k"} | {n: str(0.3 + 0.2 * i) for i, n in enumerate(tops)}
        for name, color in colors.items():
            bb = sim["noise"][level]["samplers"][name]["by_budget"]
            ax.plot([int(b) for b in bb], [v["p_median_of_3_seeds_passes"] for v in bb.values()], ls=ls, marker="o",
                    ms=3, color=color, label=name if level == levels[0] else None)
    ax.axhline(0.5, color="grey", lw=0.8)
    ax.set_xlabel("budget (trials; both runs cut there)")
    ax.set_ylabel("P(median of 3 seeds passes the bar)")
    ax.set_title(f"the bar against the budget (solid: noise {levels[0]}, dashed: {levels[-1]})", fontsize=9)
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=3)  # inside it hid points
    ax.grid(alpha=0.3)
    ax = axes[-1]
    names = list(sim["noise"][levels[0]]["samplers"])
    w = 0.8 / len(levels)
    for j, level in enumerate(levels):
        p = np.array([sim["noise"][level]["samplers"][n]["p_within_half_of_random"] for n in names])
        ax.bar(np.arange(len(names)) + j * w, p, w, yerr=np.sqrt(p * (1 - p) / sim["repeats"]), capsize=3,
               label=f"noise {level}")  # error bar: the binomial standard error over the runs
    ax.set_xticks(np.arange(len(names)) + w * (len(levels) - 1) / 2, names, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("P(reaches a random run's best in half its trials)")
    ax.set_title(f"the bar in trial counts at {sim['trials']} trials ('random': another random search)", fontsize=9)
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    fig.suptitle(f"surrogate of {sim['surrogate']['trials']} measured trials (OOB R² {sim['surrogate']['oob_r2']:.2f})")
    fig.tight_layout()
    return save_figure(fig, path)
