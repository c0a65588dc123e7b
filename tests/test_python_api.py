"""The Python API as a notebook uses it: what each package re-exports, and one-line errors for arguments of the
wrong type (they were deep tracebacks, or silently read otherwise)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest


def test_fit_result_the_type_fit_returns_is_re_exported():
    """``search.fit`` returns a FitResult (so do ``fit_final`` and ``FoldEnsemble.fits``): a user annotating
    their own code had to import it from the private-looking ``search.training``."""
    import search
    from search.training import FitResult

    assert "FitResult" in search.__all__ and search.FitResult is FitResult


def test_predict_and_export_functions_are_re_exported_without_slowing_the_package_import(cli_env):
    """``predict_record``, ``predict_csv`` (with their ``Prediction``) and ``export_trial`` are the Python side of
    ``ecg-automl predict`` and ``export``: importable from ``ecg_automl.tflite``, but only loaded (wfdb, scipy) when
    first used, so ``TFLiteModel`` and the bench-server start as fast as before."""
    import ecg_automl.tflite as tfl
    from ecg_automl.tflite.export import export_trial
    from ecg_automl.tflite.predict import Prediction, format_prediction, predict_csv, predict_record

    for name, obj in {"predict_record": predict_record, "predict_csv": predict_csv, "Prediction": Prediction,
                      "format_prediction": format_prediction, "export_trial": export_trial}.items():
        assert name in tfl.__all__ and getattr(tfl, name) is obj and name in dir(tfl)
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        tfl.nope  # noqa: B018
    code = ("import sys; import ecg_automl.tflite; "
            "print(sorted(m for m in ('wfdb', 'scipy', 'ecg_data', 'tensorflow') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], env=cli_env, capture_output=True, text=True, timeout=120)
    assert proc.stdout.strip() == "[]", proc.stderr[-2000:]


def test_import_search_trains_as_the_cli_does_with_onednn_off_unless_told_otherwise(cli_env):
    """The CLI sets TF_ENABLE_ONEDNN_OPTS=0 before TensorFlow loads; run_search from a notebook left oneDNN on and
    gave other values for the same study (trial 0: 0.127238 against the CLI's 0.126836)."""
    code = ("import os, search, tensorflow; "
            "print(os.environ.get('TF_ENABLE_ONEDNN_OPTS'))")
    env = {k: v for k, v in cli_env.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert proc.stdout.strip() == "0", proc.stderr[-2000:]
    assert "oneDNN custom operations are on" not in proc.stderr
    proc = subprocess.run([sys.executable, "-c", code], env={**env, "TF_ENABLE_ONEDNN_OPTS": "1"},
                          capture_output=True, text=True, timeout=300)
    assert proc.stdout.strip() == "1", proc.stderr[-2000:]  # the user's choice wins


def test_grouped_splits_takes_lists_and_refuses_a_number_of_folds_for_cv(small_mitdb):
    """Groups and labels as plain lists (scikit-learn splitters take them) were a numpy 'only integer scalar arrays'
    TypeError from the leak check; ``cv=5``, which scikit-learn reads as a KFold that ignores the patients, was an
    AttributeError: it is refused in one line naming the splitter to pass."""
    from ecg_data import check_no_leak, grouped_splits, patient_kfold

    search = small_mitdb.search_part()
    as_lists = list(grouped_splits(patient_kfold(2), search.X, list(search.y), list(search.groups)))
    as_arrays = list(grouped_splits(patient_kfold(2), search.X, search.y, search.groups))
    assert len(as_lists) == 2 and all((a == b).all() for fold, other in zip(as_lists, as_arrays)
                                      for a, b in zip(fold, other))
    check_no_leak(list(search.groups), *as_lists[0])
    with pytest.raises(TypeError, match=r"cv must be a splitter object .* ecg_data.patient_kfold\(5\)"):
        list(grouped_splits(5, search.X, search.y, search.groups))


def test_grouped_splits_checks_its_arguments_when_called_not_at_the_first_fold(small_mitdb):
    """A generator raised nothing until iterated: ``folds = grouped_splits(cv, X, y, None)`` passed, and the error
    came later, from wherever the folds were first used."""
    from ecg_data import grouped_splits, patient_kfold

    search = small_mitdb.search_part()
    with pytest.raises(ValueError, match="groups is required"):
        grouped_splits(patient_kfold(2), search.X, search.y, None)
    with pytest.raises(ValueError, match="folds need at least 50 patients"):
        grouped_splits(patient_kfold(50), search.X, search.y, search.groups)


@pytest.mark.parametrize("kwargs, error, message", [
    ({"seed": "0"}, TypeError, "seed must be a whole number or None, not '0'"),
    ({"n_splits": "3"}, TypeError, "n_splits must be a whole number of folds, not '3'"),
    ({"n_splits": 1}, ValueError, "n_splits must be at least 2"),
])
def test_patient_kfold_refuses_a_bad_seed_or_fold_count_when_made(kwargs, error, message):
    """A seed of "0" was accepted and failed only once the folds were drawn, eight frames deep in scikit-learn."""
    from ecg_data import patient_kfold

    with pytest.raises(error, match=message):
        patient_kfold(**kwargs)


@pytest.mark.parametrize("kwargs, message", [
    ({"records": "101"}, r"records must be a list of record names, not '101': records=\['101'\]"),
    ({"records": 101}, r"records must be a list of record names, not 101: records=\['101'\]"),
    ({"seed": "0"}, "seed must be a whole number, not '0'"),
    ({"max_beats": "3000"}, "max_beats must be a whole number or None, not '3000'"),
    ({"final_members": 2.0}, "final_members must be a whole number, not 2.0"),
    ({"fold_repeats": "2"}, "fold_repeats must be a whole number, not '2'"),
    ({"objectives": "quality"}, r"objectives must be a list such as \['quality'\] .*: objectives=\['quality'\]"),
])
def test_study_settings_of_the_wrong_type_are_refused_when_made(kwargs, message):
    """``records="101"`` became records ['0', '1'] (the string read letter by letter), and a seed of "0" was stored
    with the study and failed in the first trial's sampler, after minutes of data loading."""
    from search import StudySettings

    with pytest.raises(TypeError, match=message):
        StudySettings(**kwargs)


def test_study_settings_refuse_a_seed_scikit_learn_cannot_take_but_open_any_it_can():
    """A seed of -1 was stored with the study and failed in the splitter; a stored seed up to 2**32 - 1 (which an
    earlier version accepted) still opens."""
    from search import StudySettings

    with pytest.raises(ValueError, match="seed must be from 0 to 4294967295, not -1"):
        StudySettings(seed=-1)
    assert StudySettings.from_dict(StudySettings(seed=2**32 - 1).to_dict()).seed == 2**32 - 1


def test_study_settings_keep_record_lists_and_make_numpy_integers_ints():
    from search import StudySettings

    s = StudySettings(records=("119", 101), seed=np.int64(3), max_beats=np.int32(2000))
    assert s.records == ["101", "119"] and type(s.seed) is int and type(s.max_beats) is int
    assert StudySettings.from_dict(s.to_dict()) == s


def test_build_model_names_what_its_config_lacks_before_building_a_layer():
    """A config without ``lstm_units`` was a bare ``KeyError: 'lstm_units'`` from the middle of the network (after
    its convolutional layers were built), and a SearchSpace passed as the config a 'not subscriptable' TypeError."""
    from spaces import SearchSpace, SpaceError, build_ensemble, build_model

    space = SearchSpace.load("default")
    config = {**space.fixed, **{k: (v["choices"][0] if "choices" in v else v["low"]) for k, v in space.searched.items()}}
    del config["lstm_units"], config["learning_rate"]
    with pytest.raises(SpaceError, match=r"^config lacks lstm_units, learning_rate: .*config_from_params"):
        build_model(config)
    with pytest.raises(SpaceError, match=r"^config lacks lstm_units: "):  # an ensemble is never compiled
        build_ensemble(config, [object()])
    with pytest.raises(TypeError, match=r"config must be a mapping .*, not SearchSpace: .*space.suggest\(trial\)"):
        build_model(space)


def test_fit_final_and_build_ensemble_name_a_wrong_kind_of_members():
    """``fit_final(members="2")`` failed as a TypeError from inside the training loop and ``build_ensemble(config,
    [1, 2])`` (seeds or paths for models) as an AttributeError from a copied layer."""
    from search import fit_final
    from spaces import SearchSpace, build_ensemble

    with pytest.raises(TypeError, match=r"members must be a whole number of models, not '2'"):
        fit_final({}, None, members="2")
    space = SearchSpace.load("default")
    config = {**space.fixed, **{k: (v["choices"][0] if "choices" in v else v["low"]) for k, v in space.searched.items()}}
    with pytest.raises(TypeError, match=r"members must be trained Keras models .*, not int: 1"):
        build_ensemble(config, [1, 2])


def test_build_ensemble_refuses_members_of_another_config():
    """A member built with fewer blocks or head layers than ``config`` left the ensemble's extra layers at their
    random initial weights, without a word, and the result exported as a trained model."""
    from spaces import SearchSpace, build_ensemble, build_model

    space = SearchSpace.load("default")
    config = {**space.fixed, **{k: (v["choices"][0] if "choices" in v else v["low"]) for k, v in space.searched.items()}}
    config.update(res_blocks=1, dense_layers=1)
    member = build_model(config)
    assert build_ensemble(config, [member, build_model(config)]).count_params() == 2 * member.count_params()
    with pytest.raises(ValueError, match=r"member 0 is not a model of this config .* it lacks \['res1_"):
        build_ensemble({**config, "res_blocks": 2}, [member])


def test_fit_and_fit_fold_models_refuse_arrays_for_a_dataset(small_mitdb):
    """``fit(config, X, None)`` was an AttributeError ('ndarray' object has no attribute 'y') once TensorFlow had
    loaded; the folds, labels and patients travel together in a BeatDataset."""
    from search import fit, fit_fold_models

    part = small_mitdb.search_part()
    with pytest.raises(TypeError, match=r"^train must be an ecg_data.BeatDataset .*, not ndarray$"):
        fit({}, part.X)
    with pytest.raises(TypeError, match=r"^val must be an ecg_data.BeatDataset .*, not tuple$"):
        fit({}, part, (part.X, part.y))
    with pytest.raises(TypeError, match=r"^train must be an ecg_data.BeatDataset .*, not ndarray$"):
        fit_fold_models({}, part.X)


def test_a_path_for_the_study_storage_is_one_error_giving_the_url_to_pass(tmp_path):
    """``open_study(..., Path("runs/optuna.db"))`` was an AttributeError ('PosixPath' object has no attribute
    'startswith'), and ``run_search(storage=Path(...))`` a TypeError ('PosixPath' is not iterable)."""
    from search import StorageError, make_storage
    from search.storage import check_storage

    db = tmp_path / "optuna.db"
    for call in (make_storage, check_storage):
        with pytest.raises(StorageError, match=f"not the path '{db}': for a SQLite file pass "
                                               f"storage='sqlite:///{db}'"):
            call(db)
        with pytest.raises(StorageError, match="storage must be a URL string such as 'sqlite:///runs/optuna.db', "
                                               "not 5"):
            call(5)
    assert not db.exists()


def test_load_dataset_refuses_one_record_number_for_the_list():
    """``records=101`` was "'int' object is not iterable" (a lone string was refused so already)."""
    from ecg_data import load_dataset

    with pytest.raises(TypeError, match=r"records must be a list of record names, not 101: records=\['101'\]"):
        load_dataset("mitdb", records=101)


@pytest.mark.parametrize("kwargs, message", [({"max_beats": "3000"}, "max_beats must be a number of beats, not '3000'"),
                                             ({"seed": "0"}, "seed must be a whole number, not '0'")])
def test_subsample_beats_refuses_text_for_a_number(small_mitdb, kwargs, message):
    """A max_beats of "3000" was "'<' not supported between 'str' and 'int'", a seed of "0" a SeedSequence error
    seven frames into numpy."""
    from ecg_data import subsample_beats

    part = small_mitdb.search_part()
    with pytest.raises(TypeError, match=message):
        subsample_beats(part.y, part.groups, **{"max_beats": 3000, **kwargs})
    assert len(subsample_beats(part.y, part.groups, 3000.0, seed=np.int64(1))) >= 3000  # numbers of any kind


def test_save_returns_the_file_numpy_wrote_which_load_reads(small_mitdb, tmp_path):
    """``ds.save("beats")`` wrote beats.npz (numpy adds the ending) and returned None, so ``load("beats")`` was a
    FileNotFoundError: save now returns the file it wrote."""
    from ecg_data import BeatDataset

    part = small_mitdb.subset(np.arange(50))
    written = part.save(str(tmp_path / "beats"))
    assert written == tmp_path / "beats.npz" and written.is_file()
    assert part.save(tmp_path / "beats.npz") == tmp_path / "beats.npz"
    back = BeatDataset.load(written)
    assert (back.X == part.X).all() and (back.groups == part.groups).all()


_UNTYPED_OK = {"self", "cls"}


def _public_callables():
    """Every function in the packages' ``__all__`` and every public method or property of the classes there."""
    import importlib
    import inspect

    for pkg in ("ecg_data", "spaces", "search", "ecg_automl.tflite"):
        module = importlib.import_module(pkg)
        for name in module.__all__:
            obj = getattr(module, name)
            if inspect.isfunction(obj):
                yield f"{pkg}.{name}", obj
            elif inspect.isclass(obj) and obj.__module__.split(".")[0] in ("ecg_data", "spaces", "search",
                                                                            "ecg_automl"):
                for attr, value in vars(obj).items():
                    if attr.startswith("_") and attr != "__init__":
                        continue
                    fn = value.fget if isinstance(value, property) else getattr(value, "__func__", value)
                    if inspect.isfunction(fn):
                        yield f"{pkg}.{name}.{attr}", fn


def test_every_public_function_has_a_docstring_and_type_hints():
    """The project's convention, checked: ``help()`` on any re-exported function or public method says what it does,
    and every parameter and return value is annotated (``Any`` where the type is a Keras or Optuna object)."""
    import inspect

    bare, untyped = [], []
    for qualname, fn in _public_callables():
        if not (fn.__doc__ or "").strip() and not qualname.endswith("__init__"):
            bare.append(qualname)
        sig = inspect.signature(fn)
        missing = [p.name for p in sig.parameters.values() if p.annotation is inspect.Parameter.empty
                   and p.name not in _UNTYPED_OK and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        if missing or sig.return_annotation is inspect.Signature.empty:
            untyped.append(f"{qualname}({', '.join(missing)})")
    assert not bare, f"no docstring: {bare}"
    assert not untyped, f"no type hints: {untyped}"


def test_open_study_reads_a_study_by_its_name_alone(tmp_path, monkeypatch):
    """Reading a study's trials took ``open_study(name, storage, None)``: the storage and the settings had no
    default. Now the name alone opens a study of the default storage (sqlite:///runs/optuna.db), read-only."""
    from search import StorageError, StudySettings, open_study
    from spaces import SearchSpace

    monkeypatch.chdir(tmp_path)
    with pytest.raises(StorageError, match="optuna.db does not exist"):
        open_study("quickstart")
    assert not (tmp_path / "runs" / "optuna.db").exists()
    settings = StudySettings(space_yaml=SearchSpace.load("default").to_yaml(), records=["101", "106"])
    made, _ = open_study("quickstart", None, settings)
    made.enqueue_trial({"epochs": 4})
    study, stored = open_study("quickstart")
    assert stored.records == ["101", "106"] and len(study.trials) == 1
    assert study.user_attrs == made.user_attrs  # nothing written by reading it


def test_the_readmes_python_api_block_runs_as_it_is(tmp_path, cli_env):
    """The README's Python API example (load, patient-grouped fold, fit, metrics, int8 file, latency, the file with
    its sidecar and predict on a record) is what a researcher copies first: it must run as printed, and print the
    test patient's metrics for Keras and int8."""
    import ast
    import re

    from conftest import ROOT

    section = (ROOT / "README.md").read_text(encoding="utf-8").split("## Python API\n", 1)[1].split("\n## ", 1)[0]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=cli_env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert all(line.startswith("{") for line in lines[:3]), proc.stdout
    keras_metrics, int8_metrics = (ast.literal_eval(line) for line in lines[:2])  # dict reprs of floats
    assert {"f1", "roc_auc", "recall", "specificity"} <= set(keras_metrics) == set(int8_metrics)
    assert 0.5 < keras_metrics["roc_auc"] <= 1 and abs(keras_metrics["roc_auc"] - int8_metrics["roc_auc"]) < 0.05
    assert "median_ms" in lines[2]
    # the exported file and its sidecar, read by predict as `ecg-automl predict` reads them
    assert (tmp_path / "mine-int8.tflite").is_file() and (tmp_path / "mine-int8.json").is_file()
    assert "against the record's annotations: accuracy" in proc.stdout
    assert "loader.cc" not in proc.stderr  # TensorFlow's C++ INFO lines are off, as the block sets it


def test_export_model_refuses_data_without_test_patients_or_a_threshold_out_of_range(small_mitdb, tmp_path):
    """``export_model`` checks the file on the data's held-out patients and calibrates int8 on its search ones: data
    with no test part (only DS1 records loaded) is one clear error before any conversion, not a failure inside the
    verification; so is a threshold that is no probability."""
    from ecg_automl.tflite import TFLiteError, export_model

    search_only = small_mitdb.search_part()
    with pytest.raises(TFLiteError, match=r"the data has no test beats: give the dataset the model was trained on"):
        export_model(None, {}, search_only, tmp_path / "m.tflite", mode="int8", threshold=0.5)
    with pytest.raises(TFLiteError, match=r"threshold must be a probability from 0 to 1, not 1.5"):
        export_model(None, {}, small_mitdb, tmp_path / "m.tflite", mode="int8", threshold=1.5)
    assert not list(tmp_path.iterdir())


def test_records_201_and_202_one_man_share_a_patient_id_so_no_split_puts_them_apart():
    """MIT-BIH 201 (DS1) and 202 (DS2) are one man: with patient ids '201' and '202', a patient-grouped split a user
    drew over both (and ``check_no_leak``) put his beats on both sides. The de Chazal split still keeps them apart,
    as every published result does; ``CVObjective`` refuses data that still holds the DS2 test beats."""
    from ecg_data import check_no_leak, load_dataset
    from search import CVObjective
    from spaces import SearchSpace

    ds = load_dataset("mitdb", records=["201", "202", "101"])
    assert set(ds.groups[ds.records == "201"]) == set(ds.groups[ds.records == "202"]) == {"201+202"}
    assert set(ds.groups[ds.records == "101"]) == {"101"}
    with pytest.raises(Exception, match="201\\+202"):
        check_no_leak(ds.groups, np.flatnonzero(ds.records == "201"), np.flatnonzero(ds.records == "202"))
    with pytest.raises(ValueError, match=r"holds 2,\d{3} beats of held-out test patients.*data.search_part\(\)"):
        CVObjective(ds, SearchSpace.load("default"), None)


def test_study_settings_and_run_search_refuse_values_that_failed_after_the_study_was_written(tmp_path):
    """final_members=0 failed after the whole search; latency_mode='bogus' was stored and failed every trial;
    latency_budget_ms=-1 pruned every trial; max_beats=0 read as 'every beat'; run_search(n_trials=-1) or '2'
    wrote a study first. Each is refused before anything is written."""
    from search import StudySettings, run_search
    from spaces import SearchSpace

    space = SearchSpace.load("default").to_yaml()
    for kw, message in [({"final_members": 0}, "final_members must be at least 1"),
                        ({"max_beats": 0}, "max_beats must be at least 1"),
                        ({"latency_mode": "bogus"}, "unknown latency_mode 'bogus'"),
                        ({"latency_budget_ms": -1.0}, "latency_budget_ms must be a positive number"),
                        ({"latency_budget_ms": float("nan")}, "latency_budget_ms must be a positive number")]:
        with pytest.raises(ValueError, match=message):
            StudySettings(space_yaml=space, **kw)
    assert StudySettings(space_yaml=space, latency_budget_ms=2).latency_budget_ms == 2.0
    # a study stored by `--max-beats 0` (every beat) before that was refused still opens
    assert StudySettings.from_dict({**StudySettings(space_yaml=space).to_dict(), "max_beats": 0}).max_beats is None
    # a study made with http://Pi.local:8765/ was refused on resume with http://pi.local:8765 as "other settings"
    assert StudySettings(space_yaml=space, latency_budget_ms=1, latency_target="http://Pi.local:8765/ ").latency_target \
        == "http://pi.local:8765"
    storage = f"sqlite:///{tmp_path / 'o.db'}"
    for n, error in [(-1, ValueError), ("2", ValueError), (True, ValueError)]:
        with pytest.raises(error, match="n_trials must be a whole number"):
            run_search("s", StudySettings(space_yaml=space), n_trials=n, storage=storage)
    with pytest.raises(TypeError, match="settings must be a StudySettings"):
        run_search("s", {"space_yaml": space}, n_trials=1, storage=storage)
    assert not (tmp_path / "o.db").exists()


def test_a_config_rebuilt_from_mlflow_text_params_is_the_trial_s_and_bad_values_are_refused_before_keras():
    """MLflow returns params as text: ``rr_features="False"`` built a model with an ``rr`` input (bool("False") is
    True). build_model trained learning_rate=-1 to a loss of 6.6e6 and failed deep inside Keras on lstm_layers=0."""
    import optuna

    from spaces import SearchSpace, SpaceError, build_model, params_from_text

    space = SearchSpace.load("default")
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask()
    config = space.suggest(trial)
    text = {k: str(v) for k, v in trial.params.items()}
    assert space.config_from_params(text) == config
    assert params_from_text({"rr_features": "false", "lstm_bidirectional": "True", "pool": "max"}) == {
        "rr_features": False, "lstm_bidirectional": True, "pool": "max"}
    with pytest.raises(SpaceError, match="rr_features: 'maybe' is not bool"):
        space.config_from_params({**text, "rr_features": "maybe"})
    for key, value in [("learning_rate", -1.0), ("lstm_layers", 0), ("kernel_size", 0), ("stem_filters", "16"),
                       ("class_weight", "bogus")]:
        with pytest.raises(SpaceError, match=f"^{key}: "):
            build_model({**config, key: value})
    build_model({**config, "stem_filters": np.int64(8), "learning_rate": np.float32(1e-3)}, decay_steps=10)
    # KerasTuner trials stored before 2026-12-05 hold rr_features and lstm_bidirectional as 1/0: they still build
    build_model({**config, "rr_features": 1, "lstm_bidirectional": np.int64(0)}, decay_steps=10)
    assert params_from_text({"rr_features": "1", "lstm_bidirectional": "0"}) == {"rr_features": True,
                                                                                 "lstm_bidirectional": False}
    with pytest.raises(SpaceError, match="rr_features: 2 is a int, expected bool"):
        build_model({**config, "rr_features": 2}, decay_steps=10)


def test_load_dataset_takes_the_rates_and_windows_a_space_file_may_and_read_mitdb_a_text_path():
    """window=100000 wrote a 507 MB cache file for one record; fs=1 blamed (and said to remove) a sound record's
    .dat; read_mitdb("folder") was a TypeError about '/' on strings."""
    from ecg_data import DataError, data_root, load_dataset, read_mitdb

    for kw, message in [({"window": 100000}, "window must be from 16 to 20,000 samples, not 100000"),
                        ({"window": 8}, "window must be from 16"),
                        ({"fs": 1}, "fs must be a sampling rate from 50 to 1000 Hz, not 1"),
                        ({"fs": 5000.0}, "fs must be a sampling rate from 50 to 1000 Hz")]:
        with pytest.raises(DataError, match=message):
            load_dataset("mitdb", records=["101"], **kw)
    ds = read_mitdb(str(data_root() / "mitdb"), records=["101"])
    assert set(ds.records) == {"101"} and len(ds) > 1000


def test_predict_refuses_another_config_s_window_and_arrays_and_fit_names_missing_keys(small_mitdb):
    """predict(model, config with another input_length) returned probabilities of windows the model was not built
    for; an array for the dataset was an AttributeError; fit without batch_size a bare KeyError."""
    from search import fit, predict
    from spaces import SpaceError, build_model

    config = {"input_length": 128, "stem_filters": 4, "res_blocks": 0, "conv_filters": 4, "kernel_size": 3,
              "pool": "max", "lstm_units": 4, "lstm_layers": 1, "dense_layers": 0, "learning_rate": 1e-3,
              "batch_size": 64, "epochs": 1}
    model = build_model(config, compile_model=False)
    part = small_mitdb.test_part().subset(np.arange(4))
    assert predict(model, config, part).shape == (4,)
    with pytest.raises(ValueError, match="model reads 128-sample windows, but config has input_length 120"):
        predict(model, {**config, "input_length": 120}, part)
    with pytest.raises(TypeError, match="ds must be an ecg_data.BeatDataset"):
        predict(model, config, part.X)
    with pytest.raises(SpaceError, match="config lacks batch_size"):
        fit({k: v for k, v in config.items() if k != "batch_size"}, small_mitdb.search_part().subset(np.arange(200)))


def test_export_checks_the_mode_and_storage_helpers_the_tilde_before_any_work(tmp_path, monkeypatch):
    """export_trial(mode='bogus') retrained the trial first and only then failed; make_storage and open_study made
    a folder named ~ in the working directory (only run_search checked); register_source took a non-function."""
    from ecg_automl.tflite import TFLiteInputError, export_trial
    from ecg_data import register_source
    from search import StorageError, make_storage, open_study

    monkeypatch.chdir(tmp_path)
    with pytest.raises(TFLiteInputError, match="unknown TFLite mode 'bogus'"):
        export_trial("no-such-study", f"sqlite:///{tmp_path / 'none.db'}", "best", "bogus", tmp_path / "m.tflite")
    for call in (lambda: make_storage("sqlite:///~/x.db"), lambda: open_study("t", "sqlite:///~/y.db")):
        with pytest.raises(StorageError, match="SQLite does not expand ~"):
            call()
    assert not (tmp_path / "~").exists() and not (tmp_path / "none.db").exists()
    with pytest.raises(TypeError, match="reader must be a function"):
        register_source("x", 5)


def test_rates_patient_ids_rr_rows_and_channels_are_named_when_wrong():
    """bandpass(fs=0) and resample(.., 0) were SciPy errors that did not name the rate; patient ids of mixed types a
    numpy "'<' not supported" TypeError; model_inputs with rr_features and rr=None gave Keras {'rr': None};
    build_model(channels=0) built a model of nothing."""
    from ecg_data import bandpass, check_no_leak, grouped_splits, patient_kfold, resample
    from spaces import build_model, model_inputs

    with pytest.raises(ValueError, match="fs must be a sampling rate above 0 Hz, not 0"):
        bandpass(np.zeros(100), 0)
    with pytest.raises(TypeError, match="fs must be a sampling rate in Hz, not '360'"):
        bandpass(np.zeros(100), "360")
    assert bandpass(np.zeros(100), np.array(360.0)).shape == (100,)  # a rate read back from an .npz
    with pytest.raises(ValueError, match="fs_out must be a sampling rate above 0 Hz, not -1"):
        resample(np.zeros(100), 360, -1)
    mixed = np.array([1, "a", 2, "b"], dtype=object)
    with pytest.raises(TypeError, match=r"groups mixes number and text: give every patient id as text"):
        check_no_leak(mixed, [0, 1], [2, 3])
    check_no_leak(np.array([1, np.int64(2), 3.0, 4], dtype=object), [0, 1], [2, 3])  # numbers of types
    check_no_leak(np.array(["a", np.str_("b"), "c", "d"], dtype=object), [0, 1], [2, 3])  # text of two types
    with pytest.raises(TypeError, match="groups mixes number and text"):
        grouped_splits(patient_kfold(2), np.zeros((4, 1)), np.array([0, 1, 0, 1]), mixed)
    config = {"input_length": 16, "rr_features": True, "stem_filters": 2, "res_blocks": 0, "conv_filters": 2,
              "kernel_size": 3, "pool": "max", "lstm_units": 2, "lstm_layers": 1, "dense_layers": 0}
    with pytest.raises(ValueError, match="rr must hold the RR features of each of the 3 beats, not None"):
        model_inputs(config, np.zeros((3, 32, 1)), None)
    with pytest.raises(ValueError, match="not 2 rows"):
        model_inputs(config, np.zeros((3, 32, 1)), np.zeros((2, 14)))
    with pytest.raises(ValueError, match="channels must be the number of leads a window holds, at least 1, not 0"):
        build_model(config, channels=0, compile_model=False)
    with pytest.raises(TypeError, match="channels must be a whole number of leads, not 1.5"):
        build_model(config, channels=1.5, compile_model=False)
    assert build_model({**config, "rr_features": False}, channels=np.int64(2), compile_model=False).inputs[0].shape[2] == 2


def test_a_registered_source_s_long_class_names_and_patient_ids_come_back_whole_from_the_cache(
        tmp_path, monkeypatch, data_root):
    """The cache wrote labels as 8 characters and patient ids as 32: a reader's "Myocardial infarction" came back
    as "Myocardi" on a cache hit (the miss had it whole), and ids that share their first 32 characters became one
    patient."""
    from ecg_data import SOURCES, load_dataset, read_mitdb, register_source

    def long_names(path, *, fs, window, records, on_bad_record):
        ds = read_mitdb(path, fs=fs, window=window, records=["101", "106"], on_bad_record=on_bad_record)
        ds.name = "long-names"
        ds.label = np.where(ds.y == 1, "Myocardial infarction", "Healthy control")
        ds.groups = np.char.add("hospital-north/ward-7/consultant-a/", ds.records)  # 38 characters
        return ds

    monkeypatch.setitem(SOURCES, "long-names", SOURCES["mitdb"])  # undone after the test
    register_source("long-names", long_names)
    monkeypatch.setenv("ECG_AUTOML_CACHE", str(tmp_path / "cache"))
    first = load_dataset("long-names", path=data_root / "mitdb")
    again = load_dataset("long-names", path=data_root / "mitdb")
    assert again.info["cache"]["hit"]
    assert set(again.label) == {"Myocardial infarction", "Healthy control"}
    np.testing.assert_array_equal(again.label, first.label)
    np.testing.assert_array_equal(again.groups, first.groups)
    assert len(set(again.groups)) == 2 and again.summary() == first.summary()


def test_a_registered_source_loads_caches_and_splits_like_a_built_in_one(tmp_path, monkeypatch, data_root):
    """``register_source`` had a test of its refusal only: a reader registered under a new name is what
    ``load_dataset`` calls with the documented arguments, its arrays are cached under that name and split by patient."""
    from ecg_data import SOURCES, check_no_leak, grouped_splits, load_dataset, patient_kfold, read_mitdb, register_source

    calls = []

    def my_holter(path, *, fs, window, records, on_bad_record):
        calls.append((path, fs, window, records, on_bad_record))
        ds = read_mitdb(path, fs=fs, window=window, records=["101", "106", "119", "223"], on_bad_record=on_bad_record)
        ds.name = "my-holter"
        return ds

    monkeypatch.setitem(SOURCES, "my-holter", SOURCES["mitdb"])  # undone after the test
    register_source("my-holter", my_holter)
    monkeypatch.setenv("ECG_AUTOML_CACHE", str(tmp_path / "cache"))
    first = load_dataset("my-holter", path=data_root / "mitdb", fs=180, window=256)
    again = load_dataset("my-holter", path=data_root / "mitdb", fs=180, window=256)
    assert calls == [((data_root / "mitdb").resolve(), 180, 256, None, "error")]  # the second load is the cache's
    assert first.name == "my-holter" and again.info["cache"]["hit"] and np.array_equal(first.X, again.X)
    search = first.search_part()
    for train, val in grouped_splits(patient_kfold(2), search.X, search.y, search.groups):
        check_no_leak(search.groups, train, val)
