"""mltk._config: the layers of settings (defaults < config file < environment < command line),
config files and the shipped defaults."""

from __future__ import annotations

import sys

import pytest

from mltk import _config
from mltk.errors import ConfigError

DEFAULTS = {"k": 5, "size": 150, "crop": [0.2, 0.2, 0.8, 0.8]}


def test_settings_precedence(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("k: 6\nsize: 100\n")
    env = {"MLTK_DEMO_K": "7"}
    # defaults only
    assert _config.resolve("demo", {}, None, {}, DEFAULTS) == DEFAULTS
    # --config file beats defaults
    s = _config.resolve("demo", {}, cfg, {}, DEFAULTS)
    assert (s["k"], s["size"]) == (6, 100)
    # env beats --config, and is parsed as YAML (an int, not a string)
    s = _config.resolve("demo", {}, cfg, env, DEFAULTS)
    assert s["k"] == 7 and s["size"] == 100
    # the command line beats everything; None means "not given"
    s = _config.resolve("demo", {"k": 9, "size": None}, cfg, env, DEFAULTS)
    assert s["k"] == 9 and s["size"] == 100
    assert DEFAULTS["k"] == 5  # defaults are not mutated


def test_config_file_with_section(tmp_path):
    cfg = tmp_path / "all.yaml"
    cfg.write_text("demo:\n  k: 3\nother:\n  x: 1\n")
    assert _config.resolve("demo", {}, cfg, {}, DEFAULTS)["k"] == 3


def test_config_errors_name_the_problem(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("k: [1, 2\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: line \d+ invalid YAML"):
        _config.resolve("demo", {}, bad, {}, DEFAULTS)
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("kk: 3\n")
    with pytest.raises(ConfigError, match="unknown setting.*kk"):
        _config.resolve("demo", {}, unknown, {}, DEFAULTS)
    with pytest.raises(ConfigError, match="not found"):
        _config.resolve("demo", {}, tmp_path / "missing.yaml", {}, DEFAULTS)
    lst = tmp_path / "list.yaml"
    lst.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        _config.resolve("demo", {}, lst, {}, DEFAULTS)


def test_saved_config_round_trips(tmp_path):
    import numpy as np

    settings = {"k": np.int64(5), "crop": (0.1, 0.2), "path": tmp_path, "lr": np.float32(0.5)}
    _config.save(tmp_path / "config.yaml", settings)
    back = _config.load_yaml(tmp_path / "config.yaml")
    assert back == {"k": 5, "crop": [0.1, 0.2], "path": str(tmp_path), "lr": 0.5}


def test_default_configs_are_valid_yaml():
    from importlib import resources

    names = [p.name for p in resources.files("mltk.configs").iterdir()
             if p.name.endswith(".yaml")]
    for name in names:
        assert isinstance(_config.load_default(name[:-5]), dict)


def test_defaults_found_in_a_checkout_that_is_not_installed(tmp_path):
    """GPU hosts run mltk from the repository with PYTHONPATH=. (no mltk.configs package)."""
    import subprocess
    from pathlib import Path

    root = Path(_config.__file__).resolve().parent.parent
    code = ("import sys; sys.modules['mltk.configs'] = None\n"
            "from mltk import _config\n"
            "print(_config.default_path('train'))\n"
            "print(_config.load_default('train')['model'])\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=tmp_path, env={"PYTHONPATH": str(root), "PATH": ""}, timeout=60)
    assert res.returncode == 0, res.stderr
    path, model = res.stdout.split()
    assert Path(path) == root / "configs" / "train.yaml" and model == "inception_resnet_v2"
