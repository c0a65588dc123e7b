"""The Pareto front of a multi-objective study (quality vs Pi latency vs size), as a table and a plot."""

from __future__ import annotations

from typing import Any

import optuna


#: The measured figures a Pareto row shows beside the objectives (a bench-server's ``device_*``, else the estimate's).
_DETAILS = ("host_ms", "host_median_ms", "host_p90_ms", "pi4_estimate_ms", "device_median_ms", "device_p90_ms",
            "size_kb", "params", "macs")
#: The figure each objective is: left out of the details, where it would be a second column of the same numbers.
_OBJECTIVE_FIGURES = {"latency": ("pi4_estimate_ms", "device_median_ms"), "size": ("size_kb",)}


def pareto_table(study: optuna.Study) -> list[dict[str, Any]]:
    """One row per Pareto-optimal trial: its number, objective values and the measured latency details (a
    bench-server's p90 too; not the figure an objective already is)."""
    names = study.user_attrs.get("settings", {}).get("objectives") or [f"objective_{i}" for i in range(len(study.directions))]
    rows = []
    for t in sorted(study.best_trials, key=lambda t: t.values[0], reverse=True):
        objectives = dict(zip(names, t.values))
        same = {key for name, value in objectives.items() for key in _OBJECTIVE_FIGURES.get(name, ())
                if t.user_attrs.get(key) == value}
        row = {"trial": t.number, **objectives}
        for key in _DETAILS:
            if key in t.user_attrs and key not in same:
                row[key] = t.user_attrs[key]
        rows.append(row)
    return rows


def pareto_figure(study: optuna.Study) -> Any:
    """Quality against latency for every finished trial, each labelled with its number; the front highlighted, and
    with a size objective, marker area scaled over the study's own sizes (with a key). None when the study has no
    latency objective or no finished trial (an empty plot said nothing)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = study.user_attrs.get("settings", {}).get("objectives", [])
    if "latency" not in names:
        return None
    qi, li = names.index("quality"), names.index("latency")
    si = names.index("size") if "size" in names else None
    done = [t for t in study.trials if t.values is not None]
    if not done:
        return None
    front = {t.number for t in study.best_trials}
    kb = [t.values[si] for t in done] if si is not None else []
    lo, hi = (min(kb), max(kb)) if kb else (0.0, 0.0)

    def area(size_kb: float) -> float:  # 30-300 pt^2 over the study's range: 13.6 and 15.3 KB looked alike
        return 30 + 270 * (size_kb - lo) / (hi - lo) if hi > lo else 80

    fig, ax = plt.subplots(figsize=(6.4, 4.6), dpi=110)
    for group, color, label in ((False, "#9aa5b1", "trial"), (True, "#d62728", "Pareto front")):
        pts = [t for t in done if (t.number in front) == group]
        if not pts:
            continue
        sizes = [area(t.values[si]) if si is not None else 40 for t in pts]
        ax.scatter([t.values[li] for t in pts], [t.values[qi] for t in pts], s=sizes, c=color, alpha=0.75,
                   edgecolors="white", linewidths=0.5)
        ax.scatter([], [], s=40, c=color, label=label)  # the legend's marker: one size, whatever the points' sizes
        for t in pts:
            ax.annotate(str(t.number) + (f" ({t.values[si]:.1f} KB)" if si is not None and group else ""),
                        (t.values[li], t.values[qi]), fontsize=7, xytext=(4, 3), textcoords="offset points",
                        color="black" if group else "0.4")
    handles, labels = ax.get_legend_handles_labels()
    if si is not None and hi > lo:  # what the marker areas mean
        for size_kb in (lo, hi):
            handles.append(ax.scatter([], [], s=area(size_kb), c="white", edgecolors="0.3"))
            labels.append(f"{size_kb:.1f} KB")
    settings = study.user_attrs.get("settings", {})
    ax.set_xlabel("latency per beat on the bench-server (ms, measured)" if settings.get("latency_target")
                  else "Raspberry Pi 4 latency per beat (ms, estimate)")
    ax.set_ylabel(f"validation {settings.get('metric', 'f1')} (abnormal)")
    from .plots import _title

    scale = " (marker area: size, from the study's smallest to its largest)" if si is not None and hi > lo else ""
    _title(ax, f"{study.study_name}: quality vs latency{scale}", 64)
    ax.margins(0.12)
    # under the axes, so no point hides under it
    fig.legend(handles, labels, loc="lower center", ncol=len(handles), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    return fig


def format_pareto(rows: list[dict[str, Any]]) -> str:
    """:func:`pareto_table`'s rows as an aligned text table."""
    if not rows:
        return "no Pareto-optimal trial yet"
    keys = list(rows[0])
    head = "  ".join(f"{k:>14}" for k in keys)
    body = ["  ".join(f"{r.get(k, ''):>14.4f}" if isinstance(r.get(k), float) else f"{r.get(k, ''):>14}" for k in keys)
            for r in rows]
    return "\n".join([head, *body])
