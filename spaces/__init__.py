"""Declarative search spaces over the residual-Conv1D + LSTM family, and the model builder."""

from .model import N_RR_FEATURES, build_ensemble, build_model, make_optimizer, model_inputs
from .schema import (DATA_KEYS, OPTIONAL, PARAMS, SpaceError, check_config_values, check_value, params_from_text, validate,
                     why_config_cannot_build)
from .space import SearchSpace, load_yaml, yaml_problem

__all__ = [
    "build_ensemble", "build_model", "check_config_values", "check_value", "DATA_KEYS", "load_yaml",
    "make_optimizer", "model_inputs", "N_RR_FEATURES", "OPTIONAL", "PARAMS", "params_from_text", "SearchSpace",
    "SpaceError", "validate", "why_config_cannot_build", "yaml_problem",
]
