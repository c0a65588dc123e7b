"""A declarative search space read from YAML, serving Optuna and KerasTuner from one definition."""

from __future__ import annotations

import collections.abc
import copy
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .schema import OPTIONAL, PARAMS, SpaceError, check_config_values, params_from_text, validate

_BUILTIN_DIR = Path(__file__).resolve().parent
log = logging.getLogger("spaces")


def _warn_borrowed_name(space: "SearchSpace", path: Path) -> None:
    """Warn when an edited copy of a built-in space file keeps the built-in's ``name:``: MLflow and the reports
    would label the user's space as the built-in one."""
    builtin = {p.stem: p for p in _BUILTIN_DIR.glob("*.yaml")}.get(space.name)  # a name, never a path to follow
    if builtin is None or path.resolve() == builtin.resolve():
        return
    original = SearchSpace.from_yaml(builtin.read_text(encoding="utf-8"), str(builtin))
    if (space.params, space.data) != (original.params, original.data):
        log.warning("space file %s is named %r, like the built-in space, but differs from it: MLflow and the "
                    "reports will label it %r. Give it its own `name:`.", path, space.name, space.name)


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key given twice in one mapping: plain YAML keeps the last silently, so
    a user who adds ``epochs: 2`` below an ``epochs: 4`` they missed, or above it, gets one of the two unsaid."""

    def construct_mapping(self, node, deep=False):
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *anchor`: merged by the base loader, whose keys
                continue  # the mapping's own may override
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if not isinstance(key, collections.abc.Hashable):
                continue  # the base loader names an unhashable key
            if key in seen:
                raise SpaceError(f"{key!r} is given twice in one mapping (lines {seen[key]} and {line}); "
                                 f"keep one")
            seen[key] = line
        return super().construct_mapping(node, deep=deep)

    def _refuse_yaml11_number(self, node, value):
        """YAML 1.1 reads ``010`` as octal 8 and ``1:30`` as base-60 90: a space file's ``epochs: 010`` or
        ``choices: [064, 128]`` became other numbers without a word."""
        raw = node.value.replace("_", "").lstrip("+-")
        if ":" in raw or (len(raw) > 1 and raw[0] == "0" and raw[1].isdigit()):
            raise SpaceError(f"line {node.start_mark.line + 1}, column {node.start_mark.column + 1}: {node.value!r} "
                             f"reads as {value!r} in YAML (a leading 0 is octal, a colon base 60); write the number "
                             f"without them, or quote it if it is text")
        return value

    def construct_yaml_int(self, node):
        return self._refuse_yaml11_number(node, super().construct_yaml_int(node))

    def construct_yaml_float(self, node):
        value = super().construct_yaml_float(node)
        return self._refuse_yaml11_number(node, value) if ":" in node.value else value


_UniqueKeyLoader.add_constructor("tag:yaml.org,2002:int", _UniqueKeyLoader.construct_yaml_int)
_UniqueKeyLoader.add_constructor("tag:yaml.org,2002:float", _UniqueKeyLoader.construct_yaml_float)


def load_yaml(text: str) -> Any:
    """``yaml.safe_load`` that refuses a key given twice (:class:`SpaceError`): for space files and ``mlflow.yaml``."""
    loader = _UniqueKeyLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def yaml_problem(exc: yaml.YAMLError, text: str | None = None) -> str:
    """One line with the file's line and column, not PyYAML's several lines about a ``<unicode string>``
    (``text``: the parsed text, to place a character the reader refuses, which PyYAML gives as an offset)."""
    if isinstance(exc, yaml.reader.ReaderError) and text is not None:
        pos = min(exc.position, len(text))
        line, col = text.count("\n", 0, pos) + 1, pos - (text.rfind("\n", 0, pos) + 1) + 1
        char = exc.character if isinstance(exc.character, int) else ord(exc.character)
        return f"line {line}, column {col}: {exc.reason} (character #x{char:04x}); the file must be plain text"
    if not isinstance(exc, yaml.MarkedYAMLError) or exc.problem_mark is None:
        return " ".join(str(exc).split())
    mark = exc.problem_mark
    text = f"line {mark.line + 1}, column {mark.column + 1}: {exc.problem}"
    if exc.context and exc.context_mark is not None:
        text += f" ({exc.context} that starts at line {exc.context_mark.line + 1}, column {exc.context_mark.column + 1})"
    return text


@dataclass
class SearchSpace:
    """Hyperparameters to search (``params`` specs) plus data settings (``fs``, ``window``)."""

    name: str
    params: dict[str, Any]
    description: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    source: str = ""

    # -- construction -----------------------------------------------------------------------
    @classmethod
    def from_dict(cls, doc: Any, source: str = "<dict>") -> "SearchSpace":
        """Validate ``doc`` (a parsed YAML mapping) and build the space."""
        try:
            validate(doc)
        except SpaceError as exc:
            raise SpaceError(f"{source}: {exc}") from None
        params = copy.deepcopy(doc["params"])
        params.update({k: v for k, v in OPTIONAL.items() if k not in params})
        for key, spec in params.items():  # [0, 0.25] for a float: KerasTuner refuses a Choice of ints and floats
            if isinstance(spec, dict) and spec.get("type") == "categorical" and PARAMS[key].kind is float:
                spec["choices"] = [float(c) for c in spec["choices"]]
        return cls(name=str(doc.get("name") or Path(source).stem), params=params,
                   description=str(doc.get("description") or ""), data=dict(doc.get("data") or {}), source=source)

    @classmethod
    def from_yaml(cls, text: str, source: str = "<string>") -> "SearchSpace":
        """Parse YAML text (safe loader only) and validate it."""
        try:
            doc = load_yaml(text)
        except yaml.YAMLError as exc:
            raise SpaceError(f"{source}: not valid YAML: {yaml_problem(exc, text)}") from None
        except SpaceError as exc:  # a key given twice
            raise SpaceError(f"{source}: {exc}") from None
        return cls.from_dict(doc, source)

    @classmethod
    def load(cls, path_or_name: str | Path) -> "SearchSpace":
        """Load a space file, or a built-in space by name (``default``, ``edge``)."""
        p = Path(path_or_name)
        if not p.is_file():  # a folder named like a built-in (an edge/ of exports) does not hide it
            # "default", or "spaces/default.yaml" run from outside a checkout: the installed copy
            builtin = _BUILTIN_DIR / (p.name if p.suffix == ".yaml" else f"{p.name}.yaml")
            # only then: an edited copy at a mistyped path (/home/me/exp/spaces/default.yaml) ran the built-in
            if builtin.exists() and p.parts in ((p.name,), ("spaces", p.name)):
                p = builtin
        if not p.exists():
            names = ", ".join(sorted(x.stem for x in _BUILTIN_DIR.glob("*.yaml")))
            raise SpaceError(f"{path_or_name}: no such space file (built-in spaces: {names})")
        try:
            text = p.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise SpaceError(f"{p}: not a text (UTF-8) file, byte {exc.start}: a space file is YAML") from None
        except OSError as exc:  # a folder, an unreadable file
            raise SpaceError(f"{p}: cannot read the space file ({exc.strerror or exc})") from None
        try:
            space = cls.from_yaml(text, str(p))
        except SpaceError as exc:
            if p.parts == (p.name,) and not p.suffix and (_BUILTIN_DIR / f"{p.name}.yaml").exists():
                # a stray file ./edge read for the built-in space edge: the error named neither
                raise SpaceError(f"{exc} (read from the file {p.name} in the working folder, which hides the "
                                 f"built-in space {p.name!r}: --space {p.name}.yaml names the built-in)") from None
            raise
        _warn_borrowed_name(space, p)
        return space

    def to_yaml(self) -> str:
        """The space as YAML, so a study can store the exact space it ran with."""
        doc = {"name": self.name, "description": self.description, "data": self.data, "params": self.params}
        return yaml.safe_dump(doc, sort_keys=False)

    # -- views ------------------------------------------------------------------------------
    @property
    def fixed(self) -> dict[str, Any]:
        """Hyperparameters with one value (not searched)."""
        return {k: v for k, v in self.params.items() if not isinstance(v, dict)}

    @property
    def searched(self) -> dict[str, dict]:
        """Hyperparameters with a distribution."""
        return {k: v for k, v in self.params.items() if isinstance(v, dict)}

    @property
    def fs(self) -> float:
        """The sampling rate (Hz) the space's windows are prepared at: ``data.fs``, else 180."""
        return float(self.data.get("fs", 180.0))

    @property
    def epochs_range(self) -> tuple[int, int]:
        """Fewest and most epochs a trial can train each fold for (equal when epochs is fixed)."""
        spec = self.params["epochs"]
        if not isinstance(spec, dict):
            return int(spec), int(spec)
        if spec["type"] == "categorical":
            return int(min(spec["choices"])), int(max(spec["choices"]))
        return int(spec["low"]), int(spec["high"])

    @property
    def window(self) -> int:
        """Samples per prepared window: the largest input length the space can ask for."""
        if "window" in self.data:
            return int(self.data["window"])
        spec = self.params["input_length"]
        if isinstance(spec, dict):
            return int(max(spec["choices"]) if spec["type"] == "categorical" else spec["high"])
        return int(spec)

    def with_overrides(self, **values: Any) -> "SearchSpace":
        """A copy where the given hyperparameters are fixed to ``values`` (e.g. ``epochs`` from the CLI)."""
        doc = {"name": self.name, "description": self.description, "data": self.data,
               "params": {**self.params, **{k: v for k, v in values.items() if v is not None}}}
        return SearchSpace.from_dict(doc, self.source)

    def without_rr_features(self, reason: str) -> "SearchSpace":
        """A copy with ``rr_features`` fixed to false, for data without RR intervals (``reason`` says which);
        :class:`SpaceError` if the space can only draw true, since its models would need RR context."""
        spec = self.params["rr_features"]
        values = spec["choices"] if isinstance(spec, dict) else [spec]
        if False not in values:
            raise SpaceError(f"{self.source}: params.rr_features is fixed to true in space {self.name!r}, but "
                             f"{reason}: models of this space would need RR-interval context the data does not "
                             f"have; set rr_features: false in the space file (or use a space that searches it)")
        return self if spec is False else self.with_overrides(rr_features=False)

    # -- engines ----------------------------------------------------------------------------
    def suggest(self, trial: Any) -> dict[str, Any]:
        """Draw a full config with an Optuna trial (``trial.suggest_*``)."""
        config = dict(self.fixed)
        for key, spec in self.searched.items():
            kind = spec["type"]
            if kind == "categorical":
                config[key] = trial.suggest_categorical(key, spec["choices"])
            elif kind == "int":
                config[key] = trial.suggest_int(key, spec["low"], spec["high"], step=spec.get("step", 1),
                                                log=spec.get("log", False))
            else:
                config[key] = trial.suggest_float(key, float(spec["low"]), float(spec["high"]),
                                                  step=spec.get("step"), log=spec.get("log", False))
        return config

    def optuna_distributions(self) -> dict[str, Any]:
        """The searched hyperparameters as Optuna distributions, the ones :meth:`suggest` draws from (so
        trials run by another engine can be recorded in an Optuna study with ``optuna.trial.create_trial``)."""
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

        out: dict[str, Any] = {}
        for key, spec in self.searched.items():
            if spec["type"] == "categorical":
                out[key] = CategoricalDistribution(spec["choices"])
            elif spec["type"] == "int":
                out[key] = IntDistribution(spec["low"], spec["high"], step=spec.get("step", 1), log=spec.get("log", False))
            else:
                out[key] = FloatDistribution(float(spec["low"]), float(spec["high"]), step=spec.get("step"),
                                             log=spec.get("log", False))
        return out

    def keras_tuner_config(self, hp: Any) -> dict[str, Any]:
        """Draw a full config from a KerasTuner ``HyperParameters`` object (``hp.Int/Float/Choice/Fixed``)."""
        config = {}
        for key, spec in self.params.items():
            if not isinstance(spec, dict):
                config[key] = hp.Fixed(key, spec)
            elif spec["type"] == "categorical":
                value = hp.Choice(key, spec["choices"])
                # KerasTuner returns 1/0 for a choice of true/false: the trial's config, its MLflow params and the
                # Optuna study then held 1/0 where the Optuna engine's trials hold true/false
                config[key] = bool(value) if all(isinstance(c, bool) for c in spec["choices"]) else value
            elif spec["type"] == "int":
                # KerasTuner reads a log-scale step as a factor; leave it unset there, as Optuna does.
                # KerasTuner maps the top of a log scale (probability 1.0, which its Bayesian optimiser proposes)
                # to high + 1 (65 for 16-64), a value the Optuna study then refused: kept inside the range
                value = hp.Int(key, spec["low"], spec["high"], step=None if spec.get("log") else spec.get("step", 1),
                               sampling="log" if spec.get("log") else "linear")
                config[key] = min(max(int(value), int(spec["low"])), int(spec["high"]))
            elif spec.get("step") and not spec.get("log"):
                # KerasTuner counts the values as int((high - low) // step + 1), which loses the top one where the
                # division rounds down (0.5 // 0.1 = 4.0), and draws low + i * step, which can overshoot high
                # (0.30000000000000004), a value the Optuna study then refused: half a step of room, then each
                # draw put on Optuna's grid of the same range
                low, high, step = float(spec["low"]), float(spec["high"]), float(spec["step"])
                value = hp.Float(key, low, high + step / 2, step=step)
                config[key] = min(max(low + round((value - low) / step) * step, low), high)
            else:  # its top can come back a rounding over high (0.44000000000000006 for 0.03-0.44): kept inside
                low, high = float(spec["low"]), float(spec["high"])
                value = hp.Float(key, low, high, step=spec.get("step"), sampling="log" if spec.get("log") else "linear")
                config[key] = min(max(float(value), low), high)
        return config

    def config_from_params(self, params: dict[str, Any]) -> dict[str, Any]:
        """A full config from a trial's logged params (searched values) plus this space's fixed values. Params as
        MLflow returns them, all text, are read as their hyperparameter's type (``"False"`` as False)."""
        config = {**self.fixed, **params_from_text({k: v for k, v in params.items() if k in PARAMS})}
        missing = [k for k in PARAMS if k not in config]
        if missing:
            raise SpaceError(f"params do not determine {', '.join(missing)}")
        check_config_values(config)
        return config
