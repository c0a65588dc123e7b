"""Build the residual-Conv1D + LSTM classifier from a plain config dict.

The builder takes nothing but a dict of hyperparameters (what a trial logs), so any trial can be rebuilt
from its logged params alone, by either search engine or by the TFLite exporter.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable, Mapping

from ecg_data.preprocess import N_RR_FEATURES  # rhythm (RR-interval) features per beat

from .schema import SpaceError, check_config_values, why_config_cannot_build

if TYPE_CHECKING:  # keras loads TensorFlow (seconds): imported by the functions that build
    import keras
    import numpy as np

#: Hyperparameters the builder cannot do without (the others have the defaults of :data:`spaces.OPTIONAL` or of
#: the layer they switch on); ``learning_rate`` only for a compiled model, ``dense_units`` only with dense layers.
_REQUIRED = ("input_length", "stem_filters", "res_blocks", "conv_filters", "kernel_size", "pool", "lstm_units",
             "lstm_layers", "dense_layers")


def build_model(
    config: Mapping[str, Any],
    *,
    channels: int = 1,
    compile_model: bool = True,
    decay_steps: int | None = None,
) -> keras.Model:
    """Return a Keras model for ``config``: conv branch and LSTM branch on the same window, concatenated,
    dense head, one sigmoid unit (probability of *abnormal*). ``decay_steps``: the training's length in
    batches, which a ``cosine`` learning-rate schedule decays over."""
    _check_config(config, compile_model)
    import keras

    ecg, rr = _inputs(config, channels)
    out = _network(config, ecg, rr)
    model = keras.Model(inputs=[t for t in (ecg, rr) if t is not None], outputs=out, name="ecg_resconv_lstm")
    if compile_model:
        # precision and recall at 0.5 give each epoch's validation F1 without another pass over the beats
        model.compile(optimizer=make_optimizer(config, decay_steps), loss="binary_crossentropy",
                      metrics=[keras.metrics.AUC(name="auc"), keras.metrics.Precision(0.5, name="precision"),
                               keras.metrics.Recall(0.5, name="recall")])
    return model


def build_ensemble(config: Mapping[str, Any], members: Iterable[keras.Model], *, channels: int = 1) -> keras.Model:
    """One model averaging the probabilities of ``members`` (trained ``build_model(config)`` models, e.g.
    the same config trained with different seeds): each member's layers are copied under an ``m<i>_``
    prefix into a single flat graph with the members' inputs, so it saves, loads and converts to TFLite
    like any one model (one file, the members run one after another)."""
    _check_config(config, compile_model=False)
    import keras
    from keras import layers

    members = list(members)
    if not members:
        raise ValueError("an ensemble needs at least one member")
    wrong = [m for m in members if not isinstance(m, keras.Model)]
    if wrong:  # a list of seeds or paths failed deep inside as an AttributeError
        raise TypeError(f"members must be trained Keras models (build_model(config), fitted), not "
                        f"{type(wrong[0]).__name__}: {wrong[0]!r:.60}")
    ecg, rr = _inputs(config, channels)
    outs = [_network(config, ecg, rr, prefix=f"m{i}_") for i in range(len(members))]
    out = outs[0] if len(outs) == 1 else layers.Average(name="abnormal")(outs)
    model = keras.Model(inputs=[t for t in (ecg, rr) if t is not None], outputs=out,
                        name=f"ecg_resconv_lstm_x{len(members)}")
    for i, member in enumerate(members):
        own = {layer.name for layer in member.layers if layer.weights}
        slots = {layer.name[len(f"m{i}_"):] for layer in model.layers if layer.weights and layer.name.startswith(f"m{i}_")}
        if own != slots:  # a slot no member layer fills kept its random weights, exported as if trained
            raise ValueError(f"member {i} is not a model of this config (build_model(config) builds one): it lacks "
                             f"{sorted(slots - own)[:4] or 'nothing'} and has {sorted(own - slots)[:4] or 'nothing'} "
                             f"besides")
        for layer in member.layers:
            if layer.weights:
                model.get_layer(f"m{i}_{layer.name}").set_weights(layer.get_weights())
    return model


def _check_config(config: Any, compile_model: bool) -> None:
    """TypeError for a config that is not a mapping (a :class:`SearchSpace` itself, say), :class:`SpaceError`
    naming the hyperparameters it lacks: both were a KeyError or TypeError from inside the network's layers."""
    if not isinstance(config, Mapping):
        raise TypeError(f"config must be a mapping of hyperparameters to values, not {type(config).__name__}: draw "
                        f"one from a space with space.suggest(trial), or complete a trial's params with "
                        f"space.config_from_params(params)")
    wanted = [*_REQUIRED, *(["dense_units"] if int(config.get("dense_layers") or 0) > 0 else []),
              *(["learning_rate"] if compile_model else [])]
    missing = [k for k in wanted if k not in config]
    if missing:
        raise SpaceError(f"config lacks {', '.join(missing)}: a model needs a value for every hyperparameter of the "
                         f"space (space.config_from_params(params) adds its fixed ones)")
    check_config_values(config)
    why = why_config_cannot_build(config)  # Keras' own error ("Computed output size would be zero") names neither
    if why:
        raise SpaceError(why)


def _inputs(config: Mapping[str, Any], channels: int):
    import numbers

    if isinstance(channels, bool) or not isinstance(channels, numbers.Integral):
        raise TypeError(f"channels must be a whole number of leads, not {channels!r}")
    if channels < 1:  # 0 built a model of nothing
        raise ValueError(f"channels must be the number of leads a window holds, at least 1, not {int(channels)}")
    channels = int(channels)
    import keras

    ecg = keras.Input(shape=(int(config["input_length"]), channels), name="ecg")
    rr = keras.Input(shape=(N_RR_FEATURES,), name="rr") if config.get("rr_features", False) else None
    return ecg, rr


def _network(config: Mapping[str, Any], ecg, rr, prefix: str = ""):
    """The family's layers from the inputs to the sigmoid output (layer names prefixed by ``prefix``)."""
    from keras import layers

    def name(n: str) -> str:
        return prefix + n

    # --- residual Conv1D branch -------------------------------------------------------------
    if config["pool"] not in ("max", "avg"):  # checked: anything but "max" would quietly build "avg"
        raise ValueError(f"unknown pool {config['pool']!r} (expected max or avg)")
    k = int(config["kernel_size"])
    x = layers.Conv1D(int(config["stem_filters"]), k, padding="same", use_bias=False, name=name("stem_conv"))(ecg)
    x = layers.BatchNormalization(name=name("stem_bn"))(x)
    x = layers.Activation("relu", name=name("stem_relu"))(x)
    pool_cls = layers.MaxPooling1D if config["pool"] == "max" else layers.AveragePooling1D
    filters = int(config["conv_filters"])
    for b in range(int(config["res_blocks"])):
        shortcut = x
        y = layers.Conv1D(filters, k, padding="same", use_bias=False, name=name(f"res{b}_conv1"))(x)
        y = layers.BatchNormalization(name=name(f"res{b}_bn1"))(y)
        y = layers.Activation("relu", name=name(f"res{b}_relu1"))(y)
        y = layers.Conv1D(filters, k, padding="same", use_bias=False, name=name(f"res{b}_conv2"))(y)
        y = layers.BatchNormalization(name=name(f"res{b}_bn2"))(y)
        if shortcut.shape[-1] != filters:
            shortcut = layers.Conv1D(filters, 1, padding="same", use_bias=False, name=name(f"res{b}_proj"))(shortcut)
        x = layers.Add(name=name(f"res{b}_add"))([y, shortcut])
        x = layers.Activation("relu", name=name(f"res{b}_relu2"))(x)
        x = pool_cls(2, name=name(f"res{b}_pool"))(x)
    if config["pool"] == "max":
        conv_feat = layers.GlobalMaxPooling1D(name=name("conv_gpool"))(x)
    else:
        conv_feat = layers.GlobalAveragePooling1D(name=name("conv_gpool"))(x)
    if float(config.get("conv_dropout", 0.0)) > 0:
        conv_feat = layers.Dropout(float(config["conv_dropout"]), name=name("conv_dropout"))(conv_feat)

    # --- LSTM branch ------------------------------------------------------------------------
    down = int(config.get("lstm_downsample", 1))
    s = layers.AveragePooling1D(down, name=name("lstm_downsample"))(ecg) if down > 1 else ecg
    n_layers = int(config["lstm_layers"])
    for i in range(n_layers):
        last = i == n_layers - 1
        cell = layers.LSTM(int(config["lstm_units"]), return_sequences=not last, name=name(f"lstm{i}"))
        if config.get("lstm_bidirectional", False):
            cell = layers.Bidirectional(cell, name=name(f"bilstm{i}"))
        s = cell(s)
    features = [conv_feat, s]

    # --- optional rhythm context (RR intervals) ---------------------------------------------
    if rr is not None:
        features.append(layers.Dense(int(config.get("rr_units", 8)), activation="relu", name=name("rr_dense"))(rr))

    # --- dense head -------------------------------------------------------------------------
    h = layers.Concatenate(name=name("concat"))(features)
    for j in range(int(config["dense_layers"])):
        h = layers.Dense(int(config["dense_units"]), activation="relu", name=name(f"head{j}"))(h)
        if float(config.get("dense_dropout", 0.0)) > 0:
            h = layers.Dropout(float(config["dense_dropout"]), name=name(f"head{j}_dropout"))(h)
    return layers.Dense(1, activation="sigmoid", name=name("abnormal"))(h)


def make_optimizer(config: Mapping[str, Any], decay_steps: int | None = None) -> keras.optimizers.Optimizer:
    """Keras optimizer named by ``config['optimizer']`` at ``config['learning_rate']``; with
    ``lr_schedule: cosine`` the rate decays to zero over ``decay_steps`` batches (cosine decay)."""
    import keras

    lr = float(config["learning_rate"])
    schedule = config.get("lr_schedule", "constant")
    if schedule == "cosine":
        if not decay_steps:
            raise ValueError("lr_schedule 'cosine' decays the learning rate over the training's length: build the model "
                             "with decay_steps=<epochs x batches per epoch> to train it, or with compile_model=False "
                             "to predict or load weights")
        lr = keras.optimizers.schedules.CosineDecay(lr, int(decay_steps))
    elif schedule != "constant":
        raise ValueError(f"unknown lr_schedule {schedule!r} (expected constant or cosine)")
    name = config.get("optimizer", "adam")
    if name == "adam":
        return keras.optimizers.Adam(lr, clipnorm=1.0)
    if name == "rmsprop":
        return keras.optimizers.RMSprop(lr, clipnorm=1.0)
    if name == "sgd":
        return keras.optimizers.SGD(lr, momentum=0.9, nesterov=True, clipnorm=1.0)
    raise ValueError(f"unknown optimizer {name!r} (expected adam, rmsprop or sgd)")


def model_inputs(config: Mapping[str, Any], X: np.ndarray, rr: np.ndarray | None) -> dict[str, np.ndarray]:
    """The input dict the model built from ``config`` expects, centre-cropping windows to ``input_length``."""
    length = int(config["input_length"])
    full = X.shape[1]
    if length > full:
        raise ValueError(f"input_length {length} is longer than the prepared windows ({full} samples)")
    start = (full - length) // 2
    inputs = {"ecg": X[:, start:start + length, :]}
    if config.get("rr_features", False):
        if rr is None or len(rr) != len(X):  # {'rr': None} reached Keras, or rows of other beats
            raise ValueError(f"config has rr_features true: rr must hold the RR features of each of the {len(X)} "
                             f"beats, not {'None' if rr is None else f'{len(rr)} rows'}")
        inputs["rr"] = rr
    return inputs
