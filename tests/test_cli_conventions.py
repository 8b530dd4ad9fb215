"""The conventions every command follows, tested once, centrally."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys

import pytest
import typer

from mltk import __version__
from mltk.cli import app

HEAVY = ("tensorflow", "keras", "xgboost", "sklearn", "cv2", "skimage", "matplotlib")


def all_command_paths():
    """Every command and group path in the app, e.g. ['datasets', 'make']."""
    root = typer.main.get_command(app)
    paths = []

    def walk(cmd, prefix):
        for name, sub in getattr(cmd, "commands", {}).items():
            paths.append(prefix + [name])
            walk(sub, prefix + [name])

    walk(root, [])
    return paths


def test_version(cli, mltk_proc):
    assert cli("--version").stdout.strip() == f"mltk {__version__}"
    proc = subprocess.run([sys.executable, "-m", "mltk", "--version"], capture_output=True,
                          text=True)
    assert proc.returncode == 0 and proc.stdout.strip() == f"mltk {__version__}"
    assert mltk_proc("--version").stdout.strip() == f"mltk {__version__}"


def test_every_command_has_help_text():
    root = typer.main.get_command(app)
    for path in all_command_paths():
        cmd = root
        for part in path:
            cmd = cmd.commands[part]
        assert (cmd.help or "").strip(), f"mltk {' '.join(path)} has no help text"


def test_help_imports_nothing_heavy():
    """`mltk --help` and every `mltk COMMAND --help` in a fresh interpreter load no heavy lib."""
    paths = [[]] + all_command_paths()
    script = (
        "import sys, json\n"
        "from typer.testing import CliRunner\n"
        "from mltk.cli import app\n"
        f"paths = {paths!r}\n"
        "bad = {}\n"
        "for p in paths:\n"
        "    r = CliRunner().invoke(app, p + ['--help'])\n"
        "    assert r.exit_code == 0, (p, r.output)\n"
        f"    loaded = [m for m in {HEAVY!r} if m in sys.modules]\n"
        "    if loaded: bad[' '.join(p)] = loaded\n"
        "print(json.dumps(bad))\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {}


def test_usage_error_exits_2(cli):
    result = cli("datasets", "make")  # missing NAME and --out
    assert result.exit_code == 2
    result = cli("no-such-command")
    assert result.exit_code == 2
    result = cli("datasets", "list", "--format", "yaml")
    assert result.exit_code == 2


def test_runtime_error_is_one_line_exit_1(cli, tmp_path):
    result = cli("datasets", "make", "no-such-set", "--out", tmp_path)
    assert result.exit_code == 1
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert lines == ["Error: unknown dataset 'no-such-set'; choose from "
                     + ", ".join(__import__("mltk.datasets").datasets.GENERATORS)]


def test_debug_shows_traceback(cli, tmp_path):
    result = cli("--debug", "datasets", "make", "no-such-set", "--out", tmp_path)
    assert result.exit_code == 1
    assert "Traceback" in result.stderr and result.stderr.strip().endswith(
        "choose from " + ", ".join(__import__("mltk.datasets").datasets.GENERATORS))
    result = cli("datasets", "make", "no-such-set", "--out", tmp_path, env={"MLTK_DEBUG": "1"})
    assert "Traceback" in result.stderr


def test_installed_command_error_and_streams(mltk_proc, tmp_path):
    proc = mltk_proc("datasets", "make", "nope", "--out", tmp_path)
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert proc.stderr.startswith("Error: unknown dataset 'nope'")
    assert len(proc.stderr.strip().splitlines()) == 1
    proc = mltk_proc("datasets", "make", "labelled-images", "--out", tmp_path / "d", "--n", "3",
                     "--format", "json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)[0]["n"] == 3  # stdout is pure data
    assert "wrote 3 samples" in proc.stderr  # the summary goes to stderr
    assert "\x1b[" not in proc.stderr  # no colour codes when stderr is not a terminal


@pytest.mark.parametrize("fmt", ["json", "ndjson", "csv", "table"])
def test_formats_have_stable_keys(cli, fmt):
    result = cli("datasets", "list", "--format", fmt)
    assert result.exit_code == 0, result.output
    out = result.stdout
    if fmt == "json":
        rows = json.loads(out)
    elif fmt == "ndjson":
        rows = [json.loads(line) for line in out.splitlines()]
    elif fmt == "csv":
        rows = list(csv.DictReader(io.StringIO(out)))
    else:
        assert "labelled-images" in out and "default_n" in out
        return
    assert rows and list(rows[0]) == ["name", "default_n", "description"]
    assert rows[0]["name"] == "labelled-images"


def test_format_from_environment(cli):
    result = cli("datasets", "list", env={"MLTK_FORMAT": "ndjson"})
    assert json.loads(result.stdout.splitlines()[0])["name"] == "labelled-images"
    # the command line wins over the environment
    result = cli("datasets", "list", "--format", "csv", env={"MLTK_FORMAT": "ndjson"})
    assert result.stdout.startswith("name,default_n,description")


def test_quiet_silences_info(cli, tmp_path):
    result = cli("-q", "datasets", "make", "labelled-images", "--out", tmp_path, "--n", "2",
                 "-f", "json")
    assert result.exit_code == 0
    assert result.stderr == ""
    assert json.loads(result.stdout)[0]["n"] == 2


def test_quiet_and_verbose_also_after_the_subcommand(cli, tmp_path):
    result = cli("datasets", "make", "labelled-images", "--out", tmp_path, "--n", "2", "-q",
                 "-f", "json")
    assert result.exit_code == 0 and result.stderr == ""
    result = cli("datasets", "make", "labelled-images", "--out", tmp_path / "b", "--n", "2",
                 "--verbose", "-f", "json")
    assert result.exit_code == 0 and "wrote 2 samples" in result.stderr


def test_core_messages_name_settings_and_the_cli_names_its_options(tmp_path, cli):
    """The core says `resume`; the command that has it as an option says --resume."""
    from mltk.datasets import make
    from mltk.errors import MltkError
    from mltk.tfrecords import BuildOptions, build

    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "x").write_text("x")
    make("labelled-images", tmp_path / "src", n=10, seed=0)
    with pytest.raises(MltkError, match="use `resume` to finish .* or `overwrite`"):
        build(tmp_path / "src", tmp_path / "out", BuildOptions())
    result = cli("tfrecord", "build", str(tmp_path / "src"), str(tmp_path / "out"))
    assert result.exit_code == 1
    assert "use --resume to finish an interrupted build or --overwrite" in result.stderr
