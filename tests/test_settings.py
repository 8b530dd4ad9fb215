"""mltk.settings.load: one function for every capability's typed settings, in the CLI's order
(shipped defaults < config file < MLTK_* environment < values), errors naming their origin."""

from __future__ import annotations

import pytest

from mltk import settings
from mltk import settings as mltk_settings
from mltk.errors import ConfigError, MltkError
from mltk.settings import SettingError


@pytest.mark.parametrize("section", sorted(settings.SECTIONS))
def test_every_section_loads_its_class_from_the_shipped_defaults(section):
    values = {"models": ["colors"]} if section == "serve" else {}
    loaded = settings.load(section, environ={}, **values)
    assert type(loaded) is settings.settings_class(section)


def test_layers_in_order(tmp_path):
    config = tmp_path / "my.yaml"
    config.write_text("xgb:\n  folds: 4\n  max_evals: 7\n")
    env = {"MLTK_XGB_MAX_EVALS": "9", "MLTK_XGB_SEED": "3"}
    loaded = settings.load("xgb", config, environ=env, seed=5)
    assert (loaded.folds, loaded.max_evals, loaded.seed) == (4, 9, 5)
    assert loaded.booster == mltk_settings.defaults("xgb")["booster"]


def test_errors_name_the_setting_and_where_it_came_from(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("k: 0\n")
    with pytest.raises(SettingError, match=f"^{config}: k must be a positive integer, got 0"):
        settings.load("recommend", config, environ={})
    with pytest.raises(SettingError, match="^MLTK_TRAIN_EPOCHS: epochs must be"):
        settings.load("train", environ={"MLTK_TRAIN_EPOCHS": "-1"})
    with pytest.raises(SettingError) as info:
        settings.load("colors", environ={}, k=0)
    assert info.value.key == "k" and info.value.origin == "command line"
    with pytest.raises(ConfigError, match="unknown setting.*epoch"):
        settings.load("train", environ={}, epoch=3)
    with pytest.raises(SettingError, match="no settings named 'nope'"):
        settings.load("nope")


def test_tfrecord_options_parse_sizes_and_splits_given_as_text():
    opts = settings.load("tfrecord", environ={}, shard_size="1.5MB",
                         split="train=0.9,validation=0.1", reencode=True)
    assert opts.shard_size == 1_500_000 and dict(opts.split) == {"train": 0.9, "validation": 0.1}
    assert opts.reencode and opts.layout == "standard"
    with pytest.raises(MltkError, match="split fractions must add up to 1"):
        settings.load("tfrecord", environ={}, split="train=0.5")


def test_serve_reads_sagemaker_variables_below_its_own():
    from mltk.serving.settings import resolve_settings

    env = {"SAGEMAKER_BIND_TO_PORT": "9000", "SAGEMAKER_MODEL_SERVER_WORKERS": "2",
           "MLTK_MODEL_DIR": "/models/a"}
    s = resolve_settings((), {}, None, env)
    assert (s.port, s.workers, s.models) == (9000, 2, ("/models/a",))
    s = resolve_settings(("colors",), {"port": 7000}, None, {**env, "MLTK_SERVE_WORKERS": "3"})
    assert (s.port, s.workers, s.models) == (7000, 3, ("colors",))
    assert resolve_settings((), {}, None, {}).models == ("/opt/ml/model",)
    with pytest.raises(ConfigError, match="SAGEMAKER_BIND_TO_PORT: expected a whole number"):
        resolve_settings((), {}, None, {"SAGEMAKER_BIND_TO_PORT": "http"})


def test_numbers_written_as_yaml_1_1_text_and_null_meaning_off(tmp_path):
    """PyYAML reads 1e-3 (no dot) as a string: such numbers are numbers, in files, variables
    and saved configs alike; null keeps meaning "off" where earlier versions read it so."""
    config = tmp_path / "old.yaml"
    config.write_text("rules: {min_support: 1e-3}\nclassifier: {learning_rate: 5e-4}\n")
    rec = settings.load("recommend", config, environ={})
    assert (rec.rules.min_support, rec.classifier.learning_rate) == (0.001, 0.0005)
    train = settings.load("train", environ={"MLTK_TRAIN_WEIGHT_DECAY": "1e-4",
                                            "MLTK_TRAIN_DROPOUT": "null",
                                            "MLTK_TRAIN_AUGMENT": "null"})
    assert (train.weight_decay, train.dropout, train.augment) == (0.0001, 0.0, False)
    xgb = settings.load("xgb", environ={
        "MLTK_XGB_SPACE": "{reg_alpha: {type: loguniform, low: 1e-3, high: 10}}"})
    assert xgb.space["reg_alpha"]["low"] == 0.001
    with pytest.raises(SettingError, match="weight_decay must be a number"):
        settings.load("train", environ={"MLTK_TRAIN_WEIGHT_DECAY": "lots"})


@pytest.mark.parametrize(("given", "meaning"), [
    ("null", "auto"), ("0", "all"), ("none", "all"), ("ALL", "all"), ("5000", 5000)])
def test_tune_rows_takes_the_spellings_of_earlier_versions(given, meaning):
    assert settings.load("xgb", environ={"MLTK_XGB_TUNE_ROWS": given}).tune_rows == meaning
