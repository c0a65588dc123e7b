"""Train one model on one fold: seeds, class weights, quiet Keras, NaN detection."""

from __future__ import annotations

import contextlib
import math
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping

import numpy as np

from ecg_data import BeatDataset
from spaces import SpaceError, build_model, model_inputs


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the trial is recorded as failed with this reason."""


@dataclass
class FitResult:
    """A trained model with its per-epoch history and predictions on the validation beats.

    ``seconds`` times the whole ``model.fit``, its per-epoch validation passes included
    (``validation_seconds`` of it); ``beats_per_s`` is training beats over the time spent training alone."""

    model: Any
    history: dict[str, list[float]]
    val_prob: np.ndarray | None = None
    seconds: float = 0.0
    beats_per_s: float = 0.0
    validation_seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


def set_threads(threads: int | None) -> None:
    """Limit TensorFlow to ``threads`` intra- and inter-op threads in this process (None: its own choice).

    Must run before TensorFlow starts its runtime. Why: this model family keeps about 1.2 of 2 cores busy
    (its LSTM steps are small kernels), so two 1-thread workers on one study finish more trials than one
    worker with both cores (docs/RESULTS.md, section 6)."""
    if threads is None:
        return
    if int(threads) < 1:
        raise ValueError(f"threads must be a positive number, got {threads}")
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(int(threads))
        tf.config.threading.set_inter_op_parallelism_threads(int(threads))
    except RuntimeError as exc:  # the runtime is already up: the setting would be silently ignored
        raise RuntimeError(f"cannot limit TensorFlow to {threads} threads after it has started ({exc})") from exc


def tf_threads() -> int:
    """The intra-op threads TensorFlow trains with in this process: ``set_threads``'s number, else
    ``$TF_NUM_INTRAOP_THREADS``, else TensorFlow's own choice, the CPUs this process may run on.

    Recorded with every trial and final test because the numbers depend on it: on CPU the same seed repeats
    a study to the last bit at the same thread count, while another count sums floats in another order and
    the final model's held-out figures differ (docs/REPRODUCIBILITY.md)."""
    import tensorflow as tf

    set_to = tf.config.threading.get_intra_op_parallelism_threads()
    if set_to > 0:
        return int(set_to)
    env = os.environ.get("TF_NUM_INTRAOP_THREADS", "")
    if env.strip().isdigit() and int(env) > 0:
        return int(env)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def set_seed(seed: int) -> None:
    """Seed Python, numpy and TensorFlow so a trial is repeatable."""
    import keras

    keras.utils.set_random_seed(int(seed) % (2**31))


def class_weights(y: np.ndarray, mode: str) -> dict[int, float] | None:
    """Balanced class weights (scikit-learn's n / (2 * count)), or None: ``mode`` none, or one class absent."""
    from sklearn.utils.class_weight import compute_class_weight

    if mode == "none":
        return None
    if mode != "balanced":
        raise ValueError(f"unknown class_weight {mode!r} (expected balanced or none)")
    y = np.asarray(y).astype(int)
    if (np.bincount(y, minlength=2) == 0).any():  # scikit-learn refuses a class that is not in y
        return None
    return {c: float(w) for c, w in zip((0, 1), compute_class_weight("balanced", classes=np.array([0, 1]), y=y))}


def fit(
    config: Mapping[str, Any],
    train: BeatDataset,
    val: BeatDataset | None = None,
    *,
    seed: int = 0,
    on_epoch_end: Callable[[int, dict[str, float]], None] | None = None,
    verbose: int = 0,
) -> FitResult:
    """Build the model for ``config``, train it on ``train`` and predict ``val``.

    For repeatable training it seeds Python's ``random``, NumPy's global generator and TensorFlow with ``seed``
    (``keras.utils.set_random_seed``): a caller's own draws from ``np.random`` restart from there after each call.
    ``val`` only reports (per-epoch validation metrics, ``val_prob``): training runs every epoch, no early stop."""
    _check_fit_data(config, train, val)  # before TensorFlow loads (seconds)
    import time

    import keras

    set_seed(seed)
    steps = math.ceil(len(train) / int(config["batch_size"])) * int(config["epochs"])
    model = build_model(config, channels=int(train.X.shape[2]), decay_steps=steps)

    from . import interrupt

    class _Watch(keras.callbacks.Callback):
        validating = 0.0  # seconds of the per-epoch validation passes: not training throughput

        def on_test_begin(self, logs=None):
            self._test_start = time.perf_counter()

        def on_test_end(self, logs=None):
            self.validating += time.perf_counter() - self._test_start

        def on_train_batch_end(self, batch, logs=None):
            interrupt.check()  # a Ctrl-C swallowed by a finaliser still stops the training

        def on_epoch_end(self, epoch, logs=None):
            logs = {k: float(v) for k, v in (logs or {}).items()}
            if not math.isfinite(logs.get("loss", 0.0)):
                self.model.stop_training = True
                raise TrainingDiverged(f"loss became {logs.get('loss')} at epoch {epoch + 1}")
            if on_epoch_end is not None:
                on_epoch_end(epoch, logs)

    x_train = model_inputs(config, train.X, train.rr)
    val_data = None
    if val is not None:
        val_data = (model_inputs(config, val.X, val.rr), val.y.astype(np.float32))
    watch = _Watch()
    start = time.perf_counter()
    with _custom_gradients_released():
        hist = model.fit(
            x_train, train.y.astype(np.float32),
            batch_size=int(config["batch_size"]), epochs=int(config["epochs"]),
            class_weight=class_weights(train.y, config.get("class_weight", "none")),
            validation_data=val_data, callbacks=[watch], verbose=verbose, shuffle=True,
        )
    seconds = time.perf_counter() - start
    result = FitResult(model, {k: [float(v) for v in vs] for k, vs in hist.history.items()}, seconds=seconds,
                       beats_per_s=len(train) * int(config["epochs"]) / max(seconds - watch.validating, 1e-9),
                       validation_seconds=watch.validating)
    if val is not None:
        result.val_prob = predict(model, config, val)
        if not np.isfinite(result.val_prob).all():
            raise TrainingDiverged("the model predicts NaN on validation beats")
    return result


@contextlib.contextmanager
def _custom_gradients_released() -> Iterator[None]:
    """Drop the gradient functions TensorFlow registers while a training is traced, once it has run.

    Why: Keras's optimizer all-reduces the gradients through a ``tf.custom_gradient``, which in a traced function
    registers a closure in TensorFlow's global gradient registry, never removed, and the closure keeps the whole
    traced training graph alive (tensorflow/tensorflow#97697): about 30 MB per ``model.fit`` of this model family,
    so a study grew by about 60 MB per 2-fold trial in one process, with or without ``keras.backend.clear_session``.
    The backward pass is built when the training is traced, so nothing looks these entries up afterwards. Only the
    entries made inside the block go; a TensorFlow without that registry is left alone."""
    try:
        from tensorflow.python.framework import ops

        registry = ops._gradient_registry._registry
    except (ImportError, AttributeError):  # another TensorFlow: tests/test_search.py's leak test says so
        yield
        return
    before = set(registry)
    try:
        yield
    finally:
        for name in set(registry) - before:
            if name.startswith("CustomGradient-"):
                registry.pop(name, None)


def _check_fit_data(config: Mapping[str, Any], train: BeatDataset, val: BeatDataset | None) -> None:
    """ValueError for data no model should be trained on: Keras would train on no beats or on one class
    without complaint, and feed a model ``rr`` placeholders of a source without RR intervals; TypeError for data
    that is not a :class:`BeatDataset` (arrays: an AttributeError from the middle of the training)."""
    require_dataset("train", train)
    if val is not None:
        require_dataset("val", val)
    missing = [k for k in ("batch_size", "epochs") if k not in config]
    if missing:  # a bare KeyError from the middle of fit
        raise SpaceError(f"config lacks {', '.join(missing)}: training needs them (space.config_from_params(params) "
                         f"adds a space's fixed ones)")
    if len(train) == 0:
        raise ValueError(f"{train.name}: the training set has no beats")
    if val is not None and len(val) == 0:
        raise ValueError(f"{val.name}: the validation set has no beats (pass val=None to train without one)")
    classes = np.unique(train.y)
    if len(classes) < 2:
        kind = "abnormal" if classes[0] else "normal"
        raise ValueError(f"{train.name}: the training set holds only {kind} beats ({len(train)}); a classifier "
                         f"of normal vs abnormal needs both")
    if config.get("rr_features", False) and not train.rr_available:
        raise ValueError(f"{train.name}: config has rr_features true, but this dataset has no RR intervals "
                         f"(its rr array is a placeholder); set rr_features to false")


def require_dataset(name: str, value: Any) -> None:
    """TypeError unless argument ``name`` is a :class:`BeatDataset` (its beats, labels and patients together)."""
    if not isinstance(value, BeatDataset):
        raise TypeError(f"{name} must be an ecg_data.BeatDataset (load_dataset(...), or its .subset(indices) for a "
                        f"fold), not {type(value).__name__}")


def predict(model: Any, config: Mapping[str, Any], ds: BeatDataset, batch_size: int = 1024) -> np.ndarray:
    """Abnormal-class probabilities for every beat of ``ds``."""
    require_dataset("ds", ds)
    length = int(config["input_length"])
    built = next((t.shape[1] for t in getattr(model, "inputs", None) or () if "ecg" in str(t.name)), None)
    if built is not None and built != length:  # Keras ran the windows cut to another length without a word
        raise ValueError(f"the model reads {built}-sample windows, but config has input_length {length}: pass the "
                         f"config the model was built from")
    return np.ravel(model.predict(model_inputs(config, ds.X, ds.rr), batch_size=batch_size, verbose=0))
