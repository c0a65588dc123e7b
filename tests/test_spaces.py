"""Space files: validation that names the bad key, and one space serving both engines."""

from __future__ import annotations

import re
from pathlib import Path

import keras_tuner as kt
import numpy as np
import optuna
import pytest
import yaml

import spaces
from spaces import PARAMS, SearchSpace, SpaceError, build_model


def _doc():
    return yaml.safe_load(SearchSpace.load("default").to_yaml())


@pytest.mark.parametrize("name", ["default", "edge"])
def test_builtin_spaces_load(name):
    space = SearchSpace.load(name)
    assert set(space.params) == set(PARAMS)
    assert space.window >= 128



@pytest.mark.parametrize("name", ["default", "edge"])
def test_a_folder_named_like_a_builtin_space_does_not_hide_it(tmp_path, monkeypatch, name):
    """`--space edge` run where an edge/ folder lies (exports of the edge model) failed with 'edge: cannot read
    the space file (Is a directory)'."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / name).mkdir()
    assert SearchSpace.load(name).name == name


def test_a_file_named_like_a_builtin_space_says_it_hides_it(tmp_path, monkeypatch):
    """A stray text file ./edge was read for `--space edge`: "edge: a space file must be a mapping at the top level,
    not str", with no word that a file of the working folder was read, not the built-in space."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "edge").write_text("notes on the edge exports\n")
    with pytest.raises(SpaceError, match=r"^edge: .*\(read from the file edge in the working folder, which hides the "
                                         r"built-in space 'edge': --space edge.yaml names the built-in\)$"):
        SearchSpace.load("edge")
    assert SearchSpace.load("edge.yaml").name == "edge"


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d["params"].update(lstm_unitz=8), "params.lstm_unitz: unknown hyperparameter"),
    # a misspelt name is unknown and leaves the real one missing: the misspelling is named, with the fix
    (lambda d: d["params"].update(kernal_size=d["params"].pop("kernel_size")),
     "params.kernal_size: unknown hyperparameter (did you mean 'kernel_size'?)"),
    (lambda d: d["params"].update(lstm_units={"type": "int", "low": "eight", "high": 16}),
     "params.lstm_units.low: 'eight' is a str, expected int"),
    (lambda d: d["params"].update(conv_dropout={"type": "float", "low": 0.5, "high": 0.1}),
     "params.conv_dropout: low (0.5) is greater than high (0.1)"),
    (lambda d: d["params"].update(conv_dropout=1.5), "params.conv_dropout: 1.5 is out of range"),
    (lambda d: d["params"].update(pool={"type": "categorical", "choices": ["max", "median"]}),
     "params.pool.choices[1]: 'median' is out of range"),
    (lambda d: d["params"].update(conv_dropout={"type": "float", "low": 0.0, "high": 0.5, "log": True}),
     "params.conv_dropout.log: a log scale needs low > 0 (low is 0.0)"),
    (lambda d: d["params"].pop("epochs"), "params: missing epochs"),
    (lambda d: d.update(colour="blue"), "unknown top-level key 'colour'"),
    (lambda d: d["params"].update(batch_size={"type": "normal", "mean": 64}), "params.batch_size.type"),
    (lambda d: d["params"].update(rr_features="yes"), "params.rr_features: 'yes' is a str, expected bool"),
    # longer than any window the data layer prepares: was "window must be from 16 to 20,000 samples" at load time
    (lambda d: d["params"].update(input_length={"type": "categorical", "choices": [256, 30000]}),
     "params.input_length.choices[1]: 30000 is out of range, expected window length in samples, in [16, 20000]"),
    # a typo that loaded and then died for memory in the trial (3.6 GB of weights in the stem)
    (lambda d: d["params"].update(stem_filters=100_000_000), "params.stem_filters: 100000000 is out of range"),
    (lambda d: d["params"].update(lstm_layers={"type": "int", "low": 1, "high": 100}),
     "params.lstm_layers.high: 100 is out of range, expected an integer in [1, 16]"),
    # a data section that is no mapping was taken for none (only a truthy one was refused)
    (lambda d: d.update(data=[]), "data: must be a mapping (fs, window), not list ([])"),
    (lambda d: d.update(data=0), "data: must be a mapping (fs, window), not int (0)"),
])
def test_malformed_space_names_the_key(mutate, message):
    doc = _doc()
    mutate(doc)
    with pytest.raises(SpaceError) as err:
        SearchSpace.from_dict(doc, "bad.yaml")
    assert message in str(err.value)
    assert str(err.value).startswith("bad.yaml: ")


def test_bad_yaml_and_missing_file(tmp_path):
    p = tmp_path / "s.yaml"
    p.write_text("params: {a: [1, 2\n")
    with pytest.raises(SpaceError, match="not valid YAML"):
        SearchSpace.load(p)
    with pytest.raises(SpaceError, match="no such space file"):
        SearchSpace.load(tmp_path / "missing.yaml")


def test_one_space_serves_optuna_and_keras_tuner():
    space = SearchSpace.load("default")
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(3)).ask()
    a = space.suggest(trial)
    b = space.keras_tuner_config(kt.HyperParameters())
    assert set(a) == set(b) == set(PARAMS)
    for key, spec in space.searched.items():
        for cfg in (a, b):
            if spec["type"] == "categorical":
                assert cfg[key] in spec["choices"]
            else:
                assert spec["low"] <= cfg[key] <= spec["high"]
    # a trial's logged params alone rebuild the same config
    assert space.config_from_params(trial.params) == a


def test_config_builds_a_two_branch_model():
    space = SearchSpace.load("default")
    cfg = space.suggest(optuna.create_study(sampler=optuna.samplers.RandomSampler(0)).ask())
    cfg.update(rr_features=True, lstm_bidirectional=True, lstm_layers=2)
    model = build_model(cfg, decay_steps=100)  # the steps a cosine schedule (if drawn) decays over
    names = [layer.name for layer in model.layers]
    assert {"ecg", "rr", "concat", "abnormal"} <= set(names)
    assert any(n.startswith("res0_") for n in names) and any("lstm" in n for n in names)
    assert model.output_shape == (None, 1)


@pytest.mark.parametrize("pick", [0, -1])
def test_every_hyperparameter_shapes_the_model_it_names(pick):
    """Each searched value reaches the built model: layer sizes, counts, kernel, pooling, dropout rates, the
    optimizer and its rate (a value ignored by the builder would be searched for nothing, unnoticed)."""
    import keras

    space = SearchSpace.load("default")
    cfg = space.suggest(optuna.create_study(sampler=optuna.samplers.RandomSampler(0)).ask())
    cfg.update({"stem_filters": 6, "conv_filters": 10, "kernel_size": 5, "res_blocks": 2, "lstm_units": 7,
                "lstm_layers": 2, "lstm_downsample": 4, "input_length": 128, "dense_layers": 2, "dense_units": 9,
                "rr_features": True, "rr_units": 3, "conv_dropout": 0.3, "dense_dropout": 0.2, "learning_rate": 0.004,
                "lr_schedule": "constant"})
    cfg.update({"pool": ["max", "avg"][pick], "optimizer": ["rmsprop", "sgd"][pick],
                "lstm_bidirectional": [True, False][pick]})
    model = build_model(cfg)
    layer = model.get_layer
    assert model.get_layer("ecg").output.shape[1] == 128
    assert layer("stem_conv").filters == 6 and layer("stem_conv").kernel_size == (5,)
    assert layer("res1_conv2").filters == 10 and layer("res1_conv2").kernel_size == (5,)
    assert not [n.name for n in model.layers if n.name.startswith("res2_")]
    assert isinstance(layer("res0_pool"), {"max": keras.layers.MaxPooling1D, "avg": keras.layers.AveragePooling1D}[
        cfg["pool"]])
    assert layer("conv_dropout").rate == pytest.approx(0.3) and layer("head1_dropout").rate == pytest.approx(0.2)
    assert layer("lstm_downsample").pool_size == (4,)
    lstm = layer("bilstm1").forward_layer if cfg["lstm_bidirectional"] else layer("lstm1")
    assert lstm.units == 7 and not [n.name for n in model.layers if n.name.endswith("lstm2")]
    assert layer("head1").units == 9 and layer("rr_dense").units == 3
    assert not [n.name for n in model.layers if n.name == "head2"]
    opt = model.optimizer
    assert type(opt) is {"rmsprop": keras.optimizers.RMSprop, "sgd": keras.optimizers.SGD}[cfg["optimizer"]]
    assert float(opt.learning_rate) == pytest.approx(0.004)


def test_hyperparameters_added_later_are_optional_with_the_old_behaviour():
    """A space or config written before rr_units / lr_schedule existed still loads and builds the model
    it built then (8 RR units, a constant learning rate)."""
    from spaces import OPTIONAL

    doc = _doc()
    for key in OPTIONAL:
        doc["params"].pop(key, None)
    space = SearchSpace.from_dict(doc, "old.yaml")
    assert set(space.params) == set(PARAMS)
    assert {k: space.params[k] for k in OPTIONAL} == {"rr_units": 8, "lr_schedule": "constant"}
    cfg = space.suggest(optuna.create_study(sampler=optuna.samplers.RandomSampler(0)).ask())
    cfg.update(rr_features=True)
    assert build_model(cfg).get_layer("rr_dense").units == 8
    doc["params"]["lr_schedule"] = "step"
    with pytest.raises(SpaceError, match="params.lr_schedule: 'step' is out of range"):
        SearchSpace.from_dict(doc, "bad.yaml")


def test_a_cosine_schedule_decays_the_learning_rate_over_the_training(small_mitdb):
    from search.training import fit

    space = SearchSpace.load("edge")
    cfg = space.suggest(optuna.create_study(sampler=optuna.samplers.RandomSampler(0)).ask())
    cfg.update(lr_schedule="cosine", epochs=2, learning_rate=0.005)
    part = small_mitdb.subset(np.flatnonzero(small_mitdb.split == "search")[:600])
    opt = fit(cfg, part).model.optimizer
    assert int(opt.iterations) == 2 * int(np.ceil(600 / cfg["batch_size"]))
    assert float(opt.learning_rate) < 1e-6  # decayed to zero at the last step
    with pytest.raises(ValueError, match="decays the learning rate over the training's length: build the model with "
                                         "decay_steps=.*or with compile_model=False"):
        build_model(cfg)
    build_model(cfg, compile_model=False)


def test_data_without_rr_intervals_fixes_rr_features_to_false():
    """A searched rr_features becomes fixed false (nothing else changes); a space that fixes it true is refused."""
    space = SearchSpace.load("default")
    narrowed = space.without_rr_features("dataset heartbeat-csv has no RR intervals")
    assert narrowed.params["rr_features"] is False and "rr_features" not in narrowed.searched
    assert {k: v for k, v in narrowed.params.items() if k != "rr_features"} == \
        {k: v for k, v in space.params.items() if k != "rr_features"}
    assert "rr_features" not in narrowed.optuna_distributions()
    assert narrowed.keras_tuner_config(kt.HyperParameters())["rr_features"] is False
    assert narrowed.without_rr_features("again") is narrowed
    with pytest.raises(SpaceError, match="params.rr_features is fixed to true in space 'edge', but dataset heartbeat-csv "
                                         "has no RR intervals: .*set rr_features: false"):
        SearchSpace.load("edge").without_rr_features("dataset heartbeat-csv has no RR intervals")
    doc = _doc()
    doc["params"]["rr_features"] = {"type": "categorical", "choices": [True]}
    with pytest.raises(SpaceError, match="params.rr_features is fixed to true"):
        SearchSpace.from_dict(doc, "only-true.yaml").without_rr_features("no RR")


def test_an_unknown_pool_is_refused_not_built_as_average_pooling():
    cfg = SearchSpace.load("default").suggest(optuna.create_study(sampler=optuna.samplers.RandomSampler(0)).ask())
    with pytest.raises(ValueError, match="pool: 'MAX' is out of range, expected one of max, avg"):
        build_model({**cfg, "pool": "MAX"}, decay_steps=10)


def test_a_number_yaml_read_as_text_says_how_to_write_it(tmp_path):
    """PyYAML (YAML 1.1) reads ``learning_rate: 1e-3`` as the string '1e-3': the error says why and what to write."""
    text = SearchSpace.load("default").to_yaml()
    p = tmp_path / "s.yaml"
    p.write_text(text.replace("low: 0.0003", "low: 3e-4"))
    with pytest.raises(SpaceError, match=r"params.learning_rate.low: '3e-4' is a str.*YAML reads 3e-4 as text: "
                                         r"write 0.0003 or 3.0e-4"):
        SearchSpace.load(p)
    p.write_text(text.replace("epochs: 4", "epochs: '4'"))
    with pytest.raises(SpaceError, match="params.epochs: '4' is a str, expected int.*write it without quotes"):
        SearchSpace.load(p)
    # the advice works when followed: an int is written as an int (1000.0 was suggested, then refused as a float),
    # and PyYAML's float needs a signed exponent too (1.0e3 was suggested, and read as text again)
    for before, after, told in (("epochs: 4", "epochs: 1e3", "write 1000"), ("high: 0.01", "high: 1e-2", "write 0.01 or 1.0e-2"),
                                ("high: 0.01", "high: 1.0e2", "write 100.0 or 1.0e+2"), ("fs: 180", "fs: 18e1", "write 180.0 or 18.0e+1")):
        p.write_text(text.replace(before, after))
        with pytest.raises(SpaceError, match=re.escape(f"YAML reads {after.split()[1]} as text: {told}")):
            SearchSpace.load(p)
        fixed = told.split()[-1]
        if fixed != "1.0e+2":  # (out of range as a learning rate)
            p.write_text(text.replace(before, f"{before.split()[0]} {fixed}"))
            SearchSpace.load(p)  # loads


def test_an_empty_description_stays_empty():
    """``description:`` with nothing after it is YAML null: the space's description was the text 'None'."""
    doc = _doc()
    doc["description"] = None
    space = SearchSpace.from_yaml(yaml.safe_dump(doc), "s.yaml")
    assert space.description == "" and "None" not in space.to_yaml()


@pytest.mark.parametrize("spec, highest", [
    ({"type": "int", "low": 1, "high": 4, "step": 2}, "3"),
    ({"type": "float", "low": 0.0, "high": 0.4, "step": 0.3}, "0.3"),
])
def test_a_step_that_does_not_divide_the_range_is_refused(spec, highest):
    """Optuna would silently search [low, last step below high] instead of the range the file states."""
    doc = _doc()
    doc["params"]["res_blocks" if spec["type"] == "int" else "conv_dropout"] = spec
    with pytest.raises(SpaceError, match=rf"step .* does not divide the range .*would be {highest},"):
        SearchSpace.from_dict(doc, "bad.yaml")
    spec = dict(spec, high=spec["low"] + 2 * spec["step"])  # a multiple of the step (0.6 in floating point) is fine
    doc["params"]["res_blocks" if spec["type"] == "int" else "conv_dropout"] = spec
    SearchSpace.from_dict(doc, "ok.yaml")


def test_a_key_given_twice_is_refused_not_silently_overwritten(tmp_path):
    """PyYAML keeps the last of two equal keys: a second ``epochs:`` line, added by a user who missed the
    first, silently decided which one the study ran with."""
    text = SearchSpace.load("default").to_yaml()
    p = tmp_path / "twice.yaml"
    p.write_text(text.replace("params:\n", "params:\n  epochs: 2\n", 1))
    with pytest.raises(SpaceError, match=r"twice\.yaml: 'epochs' is given twice in one mapping \(lines \d+ and \d+\)"):
        SearchSpace.load(p)
    assert SearchSpace.from_yaml(text).params == SearchSpace.load("default").params  # one of each: as before


_DEFAULT_YAML = (Path(spaces.__file__).parent / "default.yaml").read_text()
_POOL = "  pool: {type: categorical, choices: [max, avg]}"
_BATCH = "  batch_size: {type: categorical, choices: [64, 128, 256]}"


@pytest.mark.parametrize("text, message", [
    ("", "s.yaml: the file is empty (or only comments)"),
    ("# nothing yet\n", "s.yaml: the file is empty (or only comments)"),
    (_DEFAULT_YAML.replace(_POOL, "  pool:"), "s.yaml: params.pool: no value given, expected str (one of max, avg)"),
    (_DEFAULT_YAML.replace(_POOL, "  pool: {choices: [max, avg]}"),
     "s.yaml: params.pool.type: missing; a distribution needs a type"),
    (_DEFAULT_YAML.replace(_BATCH, _BATCH[:-2]),
     "s.yaml: not valid YAML: line 27, column 9: expected ',' or ']', but got ':' (while parsing a flow sequence "
     "that starts at line 26, column 44)"),
])
def test_an_empty_file_a_missing_value_and_bad_yaml_say_so_in_one_line(text, message):
    """Not 'not NoneType', 'None is a NoneType' or PyYAML's lines about a '<unicode string>'."""
    assert text != _DEFAULT_YAML
    with pytest.raises(SpaceError) as err:
        SearchSpace.from_yaml(text, "s.yaml")
    assert str(err.value).startswith(message) and "\n" not in str(err.value), str(err.value)


def test_a_folder_or_a_binary_file_given_as_the_space_is_named_not_a_traceback(tmp_path):
    """IsADirectoryError and UnicodeDecodeError escaped SearchSpace.load (the CLI printed their tracebacks)."""
    binary = tmp_path / "space.yaml"
    binary.write_bytes(b"\xff\xfe\x00params")
    with pytest.raises(SpaceError, match=r"space\.yaml: not a text \(UTF-8\) file"):
        SearchSpace.load(binary)
    with pytest.raises(SpaceError, match=r"cannot read the space file \(Is a directory\)"):
        SearchSpace.load(tmp_path)


def test_keras_tuner_draws_true_false_choices_as_booleans():
    """hp.Choice over [true, false] returns 1/0: KerasTuner trials logged rr_features '1' in MLflow where the
    Optuna engine's trials of the same study space log 'True'."""
    space = SearchSpace.load("default")
    config = space.keras_tuner_config(kt.HyperParameters())
    for key in ("rr_features", "lstm_bidirectional"):
        assert type(config[key]) is bool, (key, config[key])
    assert type(config["batch_size"]) is int and type(config["pool"]) is str  # other choices keep their type


@pytest.mark.parametrize("low, high, step", [(0.0, 0.5, 0.1), (0.03, 0.3, 0.01), (0.0, 0.6, 0.2)])
def test_keras_tuner_draws_a_stepped_float_on_the_optuna_grid_top_value_included(low, high, step):
    """KerasTuner never drew the top value of 0-0.5 by 0.1 (it counts int(0.5 // 0.1 + 1) = 5 values), and drew
    0.30000000000000004 from 0.03-0.3 by 0.01, which the Optuna study refused when the trial was recorded, after
    all its folds had trained."""
    doc = _doc()
    doc["params"]["dense_dropout"] = {"type": "float", "low": low, "high": high, "step": step}
    space = SearchSpace.from_dict(doc)
    hp = kt.HyperParameters()
    space.keras_tuner_config(hp)
    drawn_hp = next(h for h in hp.space if h.name == "dense_dropout")
    distribution = space.optuna_distributions()["dense_dropout"]
    drawn = set()
    for prob in np.linspace(0, 1, 500, endpoint=False):  # every value KerasTuner's samplers can map a draw to
        hp.values["dense_dropout"] = drawn_hp.prob_to_value(prob)
        value = space.keras_tuner_config(hp)["dense_dropout"]
        assert distribution._contains(distribution.to_internal_repr(value)), value
        drawn.add(value)
    grid = {low + i * step for i in range(round((high - low) / step) + 1)}
    assert len(drawn) == len(grid) and min(drawn) == low and max(drawn) == high


@pytest.mark.parametrize("name", ["default", "edge"])
def test_keras_tuner_draws_stay_in_the_optuna_range_at_their_extremes(name):
    """KerasTuner's Bayesian optimiser proposes probability 1.0, which its log-scale Int maps to high + 1
    (conv_filters 65 of 16-64 in the default space) and a Float to a rounding over high (0.44000000000000006 of
    0.03-0.44): the trial trained, then the Optuna study refused its record, and three such in a row stopped the
    search. Every numeric draw of the built-in spaces, at both ends and between, is one the study takes."""
    space = SearchSpace.load(name)
    hp = kt.HyperParameters()
    space.keras_tuner_config(hp)
    dists = space.optuna_distributions()
    numeric = [h for h in hp.space if h.name in dists and type(h).__name__ in ("Int", "Float")]
    assert numeric
    for prob in (0.0, 0.37, 0.999999, 1.0):
        for h in numeric:
            hp.values[h.name] = h.prob_to_value(prob)
        config = space.keras_tuner_config(hp)
        for h in numeric:
            d = dists[h.name]
            assert d._contains(d.to_internal_repr(config[h.name])), (h.name, prob, config[h.name])
    doc = _doc()
    doc["params"]["dense_dropout"] = {"type": "float", "low": 0.03, "high": 0.44}
    hp = kt.HyperParameters()
    SearchSpace.from_dict(doc).keras_tuner_config(hp)
    hp.values["dense_dropout"] = next(h for h in hp.space if h.name == "dense_dropout").prob_to_value(1.0)
    assert hp.values["dense_dropout"] > 0.44 and SearchSpace.from_dict(doc).keras_tuner_config(hp)["dense_dropout"] == 0.44


def test_a_float_choice_written_as_a_whole_number_serves_both_engines():
    """`conv_dropout: {type: categorical, choices: [0, 0.25, 0.5]}` ran with Optuna, but KerasTuner refused a
    Choice of ints and floats with a traceback after the study was written; the choices are floats now. 0 and 0.0
    are one choice, and a space's name and description are text."""
    doc = _doc()
    doc["params"]["conv_dropout"] = {"type": "categorical", "choices": [0, 0.25, 0.5]}
    space = SearchSpace.from_dict(doc)
    assert space.params["conv_dropout"]["choices"] == [0.0, 0.25, 0.5]
    assert all(type(c) is float for c in space.params["conv_dropout"]["choices"])
    assert space.keras_tuner_config(kt.HyperParameters())["conv_dropout"] == 0.0
    doc["params"]["conv_dropout"] = {"type": "categorical", "choices": [0, 0.0]}
    with pytest.raises(SpaceError, match=r"params.conv_dropout.choices: duplicates in \[0, 0.0\]"):
        SearchSpace.from_dict(doc)
    for key, value in (("name", ["a", "b"]), ("description", {"a": 1})):
        with pytest.raises(SpaceError, match=f"{key}: must be text, not a {type(value).__name__}"):
            SearchSpace.from_dict({**_doc(), key: value})


@pytest.mark.parametrize("values, message", [
    ({"input_length": 16, "lstm_downsample": 32}, "input_length is at most 16 samples but lstm_downsample at least 32"),
    ({"input_length": 16, "lstm_downsample": 4, "res_blocks": {"type": "int", "low": 5, "high": 6}},
     "input_length is at most 16 samples but res_blocks at least 5"),
])
def test_a_space_none_of_whose_configs_builds_a_model_is_refused(values, message):
    """Every trial failed at its first layer; after 10 the search blamed the setup and advised running the same
    command again, which the study then refused (its space had to change)."""
    doc = _doc()
    doc["params"].update(values)
    with pytest.raises(SpaceError, match=f"bad.yaml: params: no model of this space can be built: {message}"):
        SearchSpace.from_dict(doc, "bad.yaml")
    # the limits are the layers': 16 samples still take 4 halvings and a downsampling by 16
    doc["params"].update(input_length=16, lstm_downsample=16, res_blocks=4)
    config = SearchSpace.from_dict(doc, "ok.yaml").suggest(optuna.create_study().ask())
    # not compiled: the draw may be a cosine schedule, which compiles only with its decay steps
    assert build_model(config, compile_model=False).output_shape == (None, 1)


def test_an_edited_copy_of_a_builtin_space_that_keeps_its_name_is_warned_about(tmp_path, caplog):
    """A user copies default.yaml and edits it: MLflow and the reports would call the new space "default"."""
    builtin = Path(spaces.__file__).parent / "default.yaml"
    (tmp_path / "same.yaml").write_text(builtin.read_text())
    (tmp_path / "mine.yaml").write_text(builtin.read_text().replace("epochs: 4", "epochs: 2"))
    with caplog.at_level("WARNING", logger="spaces"):
        SearchSpace.load("default")
        SearchSpace.load(builtin)
        SearchSpace.load(tmp_path / "same.yaml")  # an unedited copy is the built-in space: no warning
        assert not caplog.records
        assert SearchSpace.load(tmp_path / "mine.yaml").params["epochs"] == 2
    assert len(caplog.records) == 1 and "mine.yaml is named 'default', like the built-in space" in caplog.text


def test_a_missing_space_file_under_a_folder_named_spaces_is_not_the_built_in(tmp_path, monkeypatch):
    """`--space /home/me/exp/spaces/default.yaml` (an edited copy, mistyped) ran the built-in default space without a
    word, as any missing path whose folder is named spaces did. Only a built-in's name, or spaces/NAME.yaml from
    outside a checkout, means the built-in."""
    monkeypatch.chdir(tmp_path)  # no spaces/ folder here
    builtin = SearchSpace.load("default")
    for given in ("default", "default.yaml", "spaces/default.yaml", "./spaces/edge.yaml"):
        assert SearchSpace.load(given).name in ("default", "edge"), given
    assert SearchSpace.load("spaces/default.yaml").params == builtin.params
    for given in (tmp_path / "exp" / "spaces" / "default.yaml", "typo/spaces/edge.yaml", "spaces/sub/default.yaml"):
        with pytest.raises(SpaceError, match="no such space file"):
            SearchSpace.load(given)


def test_a_space_file_may_use_yaml_merge_keys(tmp_path):
    """`dense_dropout: {<<: *drop, high: 0.5}` is plain YAML (yaml.safe_load reads it), but the loader that refuses
    duplicate keys called the merge key a constructor error: "not valid YAML". A key given twice is still refused."""
    doc = _doc()
    doc["params"]["conv_dropout"] = {"type": "float", "low": 0.0, "high": 0.3}
    body = yaml.safe_dump({k: v for k, v in doc.items() if k != "params"}, sort_keys=False)
    params = {k: v for k, v in doc["params"].items() if k not in ("conv_dropout", "dense_dropout")}
    body += "params:\n  conv_dropout: &drop {type: float, low: 0.0, high: 0.3}\n  dense_dropout: {<<: *drop, high: 0.5}\n"
    body += "".join(f"  {line}\n" for line in yaml.safe_dump(params, sort_keys=False).splitlines())
    f = tmp_path / "merge.yaml"
    f.write_text(body)
    space = SearchSpace.load(f)
    assert space.params["dense_dropout"] == {"type": "float", "low": 0.0, "high": 0.5}
    assert space.params["conv_dropout"] == {"type": "float", "low": 0.0, "high": 0.3}
    f.write_text(body + "  dense_units: 16\n  dense_units: 32\n")
    with pytest.raises(SpaceError, match="'dense_units' is given twice"):
        SearchSpace.load(f)


@pytest.mark.parametrize("written, read", [("010", 8), ("064", 52), ("1:30", 90)])
def test_a_yaml_11_octal_or_base_60_number_is_refused_not_read_as_another(tmp_path, written, read):
    """PyYAML reads ``epochs: 010`` as 8 and ``1:30`` as 90, and the space then searched other values unsaid."""
    text = _DEFAULT_YAML.replace("  epochs: 4\n", f"  epochs: {written}\n")
    assert text != _DEFAULT_YAML
    with pytest.raises(SpaceError) as err:
        SearchSpace.from_yaml(text, "s.yaml")
    assert str(err.value).startswith(f"s.yaml: line ") and f"{written!r} reads as {read}" in str(err.value)
    SearchSpace.from_yaml(text.replace(f"epochs: {written}", "epochs: 10"), "s.yaml")  # plain numbers still load


def test_a_control_character_is_placed_by_line_and_column(tmp_path):
    """PyYAML's reader gives an offset in a '<unicode string>'; the message names the line and column."""
    text = _DEFAULT_YAML.replace("  epochs: 4\n", "  epochs: 4\x00\n")
    line = text[:text.index("\x00")].count("\n") + 1
    with pytest.raises(SpaceError) as err:
        SearchSpace.from_yaml(text, "s.yaml")
    assert str(err.value).startswith(f"s.yaml: not valid YAML: line {line}, column 12: ") and "unicode" not in str(err.value)


def test_building_a_config_its_window_cannot_hold_names_the_hyperparameters():
    """build_model (the Python API, fit) raised Keras' 'Computed output size would be zero or negative', which names
    neither; the search prunes such draws, a direct caller got the traceback."""
    config = SearchSpace.load("default").suggest(optuna.create_study().ask())
    config.update(input_length=16, res_blocks=5)
    with pytest.raises(SpaceError, match="input_length 16 is too short for res_blocks 5"):
        build_model(config, compile_model=False)
    config.update(res_blocks=1, lstm_downsample=32)
    with pytest.raises(SpaceError, match="input_length 16 is too short for lstm_downsample 32"):
        build_model(config, compile_model=False)


def test_the_space_format_page_lists_every_hyperparameter_with_its_schema_range():
    """docs/SPACES.md is the reference for space files: a hyperparameter added to, or a bound changed in, the
    schema must show there (its table's 'allowed values' as the schema checks them)."""
    import re

    from spaces import OPTIONAL

    page = (Path(spaces.__file__).parents[1] / "docs" / "SPACES.md").read_text(encoding="utf-8")
    rows = {m.group(1): m.group(0) for m in re.finditer(r"^\| `(\w+)`[^\n]*", page, flags=re.M)}
    assert set(PARAMS) <= set(rows), sorted(set(PARAMS) - set(rows))
    for key, domain in PARAMS.items():
        bounds = re.search(r"in \[(\d+), (\d+)\]", domain.describe)
        if bounds:
            assert f"| {bounds[1]}-{bounds[2]} |" in rows[key], (key, domain.describe, rows[key])
        for choice in re.findall(r"one of (.*)", domain.describe)[:1]:
            assert all(f"`{c}`" in rows[key] for c in choice.split(", ")), (key, rows[key])
        assert ("optional" in rows[key]) == (key in OPTIONAL), key
        if key in OPTIONAL:
            assert f"optional, default {OPTIONAL[key]})" in rows[key].replace("`", ""), rows[key]
