"""Declarative search spaces over the residual-Conv1D + LSTM family, and the model builder."""

from .model import N_RR_FEATURES, build_ensemble, build_model, make_optimizer, model_inputs
from .schema import OPTIONAL, PARAMS, SpaceError, check_config_values, params_from_text, validate
from .space import SearchSpace, load_yaml, yaml_problem

__all__ = ["N_RR_FEATURES", "OPTIONAL", "PARAMS", "SearchSpace", "SpaceError", "build_ensemble", "build_model",
           "check_config_values", "load_yaml", "make_optimizer", "model_inputs", "params_from_text", "validate",
           "yaml_problem"]
