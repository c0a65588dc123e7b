"""A study's settings, stored in the study itself so a resumed run or another worker needs nothing else."""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class StudySettings:
    """Everything that defines what a study's trials mean (dataset, space, folds, objective)."""

    dataset: str = "mitdb"
    #: the search space as YAML, e.g. ``SearchSpace.load("default").to_yaml()``: required to search (the empty
    #: default is refused as an empty space file), stored with the study
    space_yaml: str = ""
    folds: int = 3
    #: ``search.metrics.METRICS``: ``f1`` at the validation-chosen threshold (default), ``f1@0.5``, ``auc``
    metric: str = "f1"
    #: what ``metric: f1`` means: 2 = at the validation-chosen threshold. Settings stored without it come from
    #: before that rule, when ``f1`` was F1 at 0.5: they read as ``f1@0.5``, so a resume cannot mix the two
    metric_version: int = 2
    seed: int = 0
    max_beats: int | None = None
    records: list[str] | None = None
    objectives: list[str] = field(default_factory=lambda: ["quality"])
    latency_budget_ms: float | None = None
    latency_mode: str = "int8"
    latency_target: str | None = None
    on_bad_record: str = "error"
    data_path: str | None = None
    #: models averaged into the final model (the best config trained with as many seeds); 1 = one model
    final_members: int = 1
    #: ``search.final.FINAL_MODELS``: ``refit`` (the best config retrained on all search patients, with
    #: ``final_members`` seeds) or ``folds`` (the average of its ``folds`` patient-grouped fold models)
    final_model: str = "refit"
    #: with ``final_model="folds"``: each fold model trained this many times with other seeds (repeats x folds
    #: models averaged, each search beat scored out of fold by ``fold_repeats`` of them for the threshold;
    #: ``search.fit_fold_models(repeats=)``)
    fold_repeats: int = 1
    #: ``ecg_data.cache.PIPELINE_VERSION`` the study was made with: trials measured on other preprocessing
    #: (other RR features, say) are not comparable, so such a study is not resumed or exported
    pipeline_version: int | None = None
    #: ``ecg_data.data_layout(dataset)`` the study was made with: the layout version of one source's arrays (the
    #: heartbeat-CSV window layout), None for a source without one. Checked per dataset, so a change to one source
    #: does not refuse the studies of the others (as a new ``pipeline_version`` would)
    data_layout: int | None = None

    def __post_init__(self) -> None:
        from ecg_automl.tflite.convert import MODES

        from .final import FINAL_MODELS
        from .metrics import METRICS
        from .study import DIRECTIONS

        if self.records is not None:  # a set to every reader: the same records in another order are the same data,
            if isinstance(self.records, (str, bytes)) or not isinstance(self.records, Iterable):
                # a lone "101" was read letter by letter, as records ['0', '1']
                raise TypeError(f"records must be a list of record names, not {self.records!r}: "
                                f"records=[{str(self.records)!r}]")
            self.records = sorted(dict.fromkeys(str(r) for r in self.records))  # and a resume must not be refused
        # whole numbers, checked here: a seed of "0" was stored with the study and failed in its first trial's
        # sampler, after the data had loaded; numpy integers become ints (the settings are stored as JSON)
        for name, optional in (("seed", False), ("max_beats", True), ("final_members", False),
                               ("fold_repeats", False)):
            value = getattr(self, name)
            if value is None and optional:
                continue
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise TypeError(f"{name} must be a whole number{' or None' if optional else ''}, not {value!r}")
            setattr(self, name, int(value))

        if not 0 <= self.seed < 2**32:  # scikit-learn's splitter refused it after the study was written (the CLI
            # takes 0..2**31 - 1, ecg_automl.argtypes.MAX_SEED, which leaves room for the seeds derived from it)
            raise ValueError(f"seed must be from 0 to {2**32 - 1}, not {self.seed}")
        # checked here, not when the first trial ends: run_search writes the study before any trial runs
        if self.metric not in METRICS:
            raise ValueError(f"unknown metric {self.metric!r} (choose from {', '.join(METRICS)})")
        if isinstance(self.folds, bool) or not isinstance(self.folds, int) or self.folds < 2:
            raise ValueError(f"folds must be a whole number of at least 2 (patient-grouped folds), not {self.folds!r}")
        if isinstance(self.objectives, str):  # "quality" was refused as "must start with 'quality', not 'quality'"
            raise TypeError(f"objectives must be a list such as ['quality'] or ['quality', 'latency'], not the string "
                            f"{self.objectives!r}: objectives=[{self.objectives!r}]")
        if not self.objectives or self.objectives[0] != "quality" or not set(self.objectives) <= set(DIRECTIONS):
            raise ValueError(f"objectives must start with 'quality' and may add {', '.join(list(DIRECTIONS)[1:])}, "
                             f"not {self.objectives!r}")
        if self.final_model not in FINAL_MODELS:
            raise ValueError(f"unknown final model {self.final_model!r} (choose from {', '.join(FINAL_MODELS)})")
        if self.final_model == "folds" and self.final_members > 1:
            raise ValueError("final model 'folds' averages the study's fold models; it cannot also take "
                             f"{self.final_members} seeds (--final-members; final_members in Python): use one or the "
                             f"other")
        if self.fold_repeats < 1:
            raise ValueError(f"fold_repeats must be at least 1, not {self.fold_repeats}")
        if isinstance(self.latency_target, str):  # http://Pi:8765/ and http://pi:8765 are one device: a resume
            from urllib.parse import urlsplit, urlunsplit  # spelt the other way was refused as "other settings"

            parts = urlsplit(self.latency_target.strip())
            self.latency_target = urlunsplit((parts.scheme.lower(), parts.netloc.lower(), parts.path.rstrip("/"),
                                              parts.query, parts.fragment))
        # each of these was stored with the study and failed (or pruned every trial) only after the search had run
        if self.final_members < 1:
            raise ValueError(f"final_members must be at least 1, not {self.final_members}")
        if self.max_beats is not None and self.max_beats < 1:  # 0 read as "no subsampling", -5 failed in splits.py
            raise ValueError(f"max_beats must be at least 1 (or None: every beat), not {self.max_beats}")
        if self.latency_mode not in MODES:
            raise ValueError(f"unknown latency_mode {self.latency_mode!r} (choose from {', '.join(MODES)})")
        if self.latency_budget_ms is not None:
            if isinstance(self.latency_budget_ms, bool) or not isinstance(self.latency_budget_ms, numbers.Real) \
                    or not 0 < self.latency_budget_ms < float("inf"):
                raise ValueError(f"latency_budget_ms must be a positive number of milliseconds (or None: no "
                                 f"budget), not {self.latency_budget_ms!r}")
            self.latency_budget_ms = float(self.latency_budget_ms)
        if self.fold_repeats > 1 and self.final_model != "folds":
            raise ValueError(f"fold_repeats={self.fold_repeats} repeats the fold ensemble's split: it needs "
                             "final_model='folds'")

    @property
    def n_final_members(self) -> int:
        """How many models the final model averages (what its latency is multiplied by)."""
        return self.folds * self.fold_repeats if self.final_model == "folds" else self.final_members

    def to_dict(self) -> dict[str, Any]:
        """The settings as a JSON-able dict, as the study stores them."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "StudySettings":
        """Settings from a stored dict; keys this version does not know are ignored, and a study stored before
        ``metric_version`` reads its ``f1`` as ``f1@0.5`` (what it meant then)."""
        names = {f.name for f in dataclasses.fields(cls)}
        if d and "metric_version" not in d and d.get("metric", "f1") == "f1":
            d = {**d, "metric": "f1@0.5"}
        if d and d.get("max_beats") == 0:  # stored by `--max-beats 0` before 2026-12-04: every beat, as None says
            d = {**d, "max_beats": None}
        return cls(**{k: v for k, v in d.items() if k in names})

    def differences(self, other: "StudySettings") -> list[str]:
        """Human-readable list of settings that differ (resuming with other settings is refused)."""
        out = []
        for f in dataclasses.fields(self):
            a, b = getattr(self, f.name), getattr(other, f.name)
            if a == b:
                continue
            if f.name != "space_yaml":
                out.append(f"{f.name}: study has {a!r}, command gives {b!r}")
            elif (space := space_differences(a, b)) is not None:  # None: the same space, in another order or form
                out.append(space)
        return out


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """``{"params": {"epochs": 4}}`` -> ``{"params.epochs": 4}``."""
    if not isinstance(tree, dict):
        return {prefix: tree}
    out: dict[str, Any] = {}
    for key, value in tree.items():
        out.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def space_differences(stored: str, given: str, limit: int = 5) -> str | None:
    """What differs between two spaces' YAML, key by key (``space: params.epochs: study has 4, command gives 2``);
    None when they hold the same values (keys in another order, ``0`` for ``0.0``: a resume was refused for that,
    saying "same values, other text")."""
    import yaml

    try:
        a, b = _flatten(yaml.safe_load(stored) or {}), _flatten(yaml.safe_load(given) or {})
    except yaml.YAMLError:
        return "space_yaml"
    keys = sorted((k for k in a.keys() | b.keys() if a.get(k, "(absent)") != b.get(k, "(absent)")),
                  key=lambda k: (k != "name", k))  # all of them: a name told first hid the rest until it was fixed
    if not keys:
        return None
    parts = [f"{k}: study has {a.get(k, '(absent)')!r}, command gives {b.get(k, '(absent)')!r}" for k in keys[:limit]]
    if keys[0] == "name":  # a file without `name:` is named after itself: a renamed copy differs by name alone
        parts[0] += " (a space file without `name:` is named after the file)"
    more = f"; and {len(keys) - limit} more" if len(keys) > limit else ""
    return "space: " + "; ".join(parts) + more
