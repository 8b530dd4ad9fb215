"""Every option and argument of every command is documented, and ``--help`` shows flags as flags.

The walk goes through click's command tree (groups and their sub-commands), so a new command
or option is checked without being listed here.
"""

from __future__ import annotations

import re

import pytest
import typer
from typer.testing import CliRunner

from mltk.cli import app

# Options of `mltk train`, `evaluate` and `predict` (mltk/cli/train.py, which has its own owner)
# that may lack help text for now, as "COMMAND --option" strings. Keep it explicit and short:
# an entry that gains help text, or disappears, fails test_help_gap_allow_list_is_current, so
# the list only ever shrinks.
TRAIN_HELP_GAPS: frozenset[str] = frozenset()
TRAIN_COMMANDS = {"train", "evaluate", "predict"}

# Labels Typer would print for types (rather than values) in the --help value column.
ODD_METAVARS = re.compile(r"<bool>|<list\[|range>")


def _walk() -> list[tuple[list[str], object, typer.Context]]:
    """(path, click command, context) for the root, every group and every sub-command."""
    root = typer.main.get_command(app)
    found = []

    def visit(cmd, path, parent):
        ctx = typer.Context(cmd, info_name=path[-1] if path else "mltk", parent=parent)
        found.append((path, cmd, ctx))
        for name, sub in sorted(getattr(cmd, "commands", {}).items()):
            visit(sub, [*path, name], ctx)

    visit(root, [], None)
    return found


COMMANDS = _walk()


def _param_id(path: list[str], param) -> str:
    name = max(param.opts, key=len) if param.param_type_name == "option" else param.name
    return " ".join([*path, name])


def _ids(commands=COMMANDS) -> list[str]:
    return [" ".join(["mltk", *path]) for path, _, _ in commands]


def test_the_walk_reaches_nested_commands():
    paths = {" ".join(p) for p, _, _ in COMMANDS}
    assert {"", "recommend", "recommend rules", "tfrecord build", "train"} <= paths


@pytest.mark.parametrize(("path", "cmd", "ctx"), COMMANDS, ids=_ids())
def test_every_option_and_argument_has_help(path, cmd, ctx):
    missing = [
        _param_id(path, p) for p in cmd.get_params(ctx)
        if not p.hidden and "--help" not in p.opts and not (getattr(p, "help", "") or "").strip()
    ]
    missing = [m for m in missing if m not in TRAIN_HELP_GAPS]
    assert not missing, f"no help text: {missing}"


@pytest.mark.parametrize(("path", "cmd", "ctx"), COMMANDS, ids=_ids())
def test_flags_show_no_metavar(path, cmd, ctx):
    shown = {
        _param_id(path, p): p.display_type_rich(ctx)
        for p in cmd.get_params(ctx) if getattr(p, "is_flag", False)
    }
    assert {k: v for k, v in shown.items() if v} == {}


@pytest.mark.parametrize("path", [p for p, _, _ in COMMANDS], ids=_ids())
def test_rendered_help_has_no_odd_metavars(path):
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert not ODD_METAVARS.findall(result.output), result.output


def test_help_shows_value_types_and_bounds():
    result = CliRunner().invoke(app, ["tfrecord", "build", "--help"], env={"COLUMNS": "200"})
    lines = {line.split()[1]: line for line in result.output.splitlines()
             if line.startswith("│ --")}
    assert re.search(r"--shards\s+<int> \[x>=1\]", lines["--shards"])
    assert re.search(r"--resume\s+Keep complete shards", lines["--resume"])
    assert "<table|json|ndjson|csv>" in lines["--format"]


def test_help_gap_allow_list_is_current():
    """Only train.py's commands may have gaps, and each listed gap still exists."""
    gaps = set()
    for path, cmd, ctx in COMMANDS:
        for p in cmd.get_params(ctx):
            if "--help" not in p.opts and not (getattr(p, "help", "") or "").strip():
                gaps.add(_param_id(path, p))
    for entry in TRAIN_HELP_GAPS:
        assert entry.split()[0] in TRAIN_COMMANDS, f"{entry}: only train.py may have gaps"
        assert entry in gaps, f"{entry} has help text now (or is gone): drop it from the list"


def test_command_lists_show_each_summary_on_one_line():
    """A summary that spans lines in a docstring is one paragraph in the list of commands
    (Rich kept the line breaks, which broke rows in the middle of a sentence)."""
    for path, cmd, _ in COMMANDS:
        for name, sub in getattr(cmd, "commands", {}).items():
            # what Typer's Rich help prints in the list: short_help, else help's first paragraph
            summary = sub.short_help or (sub.help or "").strip().split("\n\n")[0]
            assert "\n" not in summary, f"mltk {' '.join([*path, name])}: {summary!r}"
