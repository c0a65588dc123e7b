"""Size of a candidate before training: parameters and multiply-accumulates per window."""

from __future__ import annotations

from typing import Any


def model_stats(model: Any) -> dict[str, int]:
    """Trainable+frozen parameter count and MACs of one window through a ``build_model`` Keras model.

    MACs count the layers that dominate cost: Conv1D (out_len x kernel x in_ch x filters), LSTM
    (steps x 4 gates x (input + units) x units, doubled when bidirectional) and Dense (in x out).
    """
    macs = 0
    for layer in model.layers:
        kind = type(layer).__name__
        if kind == "Conv1D":
            _, length, filters = layer.output.shape
            in_ch = layer.input.shape[-1]
            macs += int(length) * int(layer.kernel_size[0]) * int(in_ch) * int(filters)
        elif kind in ("LSTM", "Bidirectional"):
            rnn = layer.forward_layer if kind == "Bidirectional" else layer
            steps, in_dim = layer.input.shape[1], layer.input.shape[2]
            units = rnn.units
            macs += (2 if kind == "Bidirectional" else 1) * int(steps) * 4 * (int(in_dim) + units) * units
        elif kind == "Dense":
            macs += int(layer.input.shape[-1]) * int(layer.units)
    return {"params": int(model.count_params()), "macs": int(macs)}
