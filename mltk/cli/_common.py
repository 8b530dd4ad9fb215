"""Pieces shared by every command module: option types, the output object, the error boundary.

Every command is registered through :func:`command`, which wraps it in the one error boundary:
an exception from the core becomes the single line ``Error: ...`` on stderr and exit code 1
(with the traceback when ``--debug`` or ``MLTK_DEBUG=1``). Usage errors stay Typer's: exit 2.
Commands and groups use :class:`MltkCommand` / :class:`MltkGroup`, which render the value column
of ``--help`` the same way everywhere (flags show none; see :func:`help_metavar`).
"""

from __future__ import annotations

import functools
import inspect
import os
import re
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar, get_args

import typer
import typer.core

from mltk._output import Format, Output
from mltk.errors import describe  # noqa: F401 (the CLI's name for it, kept)

F = TypeVar("F", bound=Callable[..., Any])

FormatOption = Annotated[
    Format,
    typer.Option("--format", "-f", envvar="MLTK_FORMAT", case_sensitive=False,
                 help="Result format on stdout (env MLTK_FORMAT)."),
]
SeedOption = Annotated[
    int | None, typer.Option("--seed", help="Random seed: the same seed gives the same result.")
]
ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", help="YAML file of settings (below command-line options and "
                 "MLTK_* environment variables, above the defaults in configs/)."),
]


def help_metavar(param: Any, ctx: Any) -> str | None:
    """The value column of ``--help`` for one option or argument.

    Typer's own label treats a boolean flag as taking a value (``--quiet <bool>``) and spells
    out types (``<list[str]>``, ``<int range>``). Here a flag shows nothing, a repeated or
    variadic value shows its element type (``<str>``; arguments already end in ``...``) and a
    bounded number its type (the bounds follow it, e.g. ``[x>=1]``).
    """
    if isinstance(param, typer.core.TyperOption) and param.metavar is not None:
        return param.metavar
    if getattr(param, "is_flag", False) or getattr(param, "count", False):
        return ""
    desc = param.type_descriptor
    if desc.is_ranged:
        return f"<{desc.ranged_type_name}>"
    if desc.is_list and not desc.is_choice:
        (element,) = get_args(desc.annotation)
        return f"<{param._bare_type(element)}>"
    label = param.display_type(ctx)
    if desc.is_choice and desc.is_list:
        label = label.replace("<list[", "<", 1).replace("]>", ">")
    return label


class _Option(typer.core.TyperOption):
    def display_type_rich(self, ctx: Any) -> str | None:
        return help_metavar(self, ctx)


class _Argument(typer.core.TyperArgument):
    def display_type_rich(self, ctx: Any) -> str | None:
        return help_metavar(self, ctx)


def _with_mltk_help(params: list[Any]) -> list[Any]:
    # Typer builds its parameters itself (no hook for their class), so they are given the
    # subclass above, which only changes how --help shows them.
    for param in params:
        if type(param) is typer.core.TyperOption:
            param.__class__ = _Option
        elif type(param) is typer.core.TyperArgument:
            param.__class__ = _Argument
    return params


class MltkCommand(typer.core.TyperCommand):
    """A Typer command whose ``--help`` shows flags as flags (see :func:`help_metavar`)."""

    def get_params(self, ctx: Any) -> list[Any]:
        return _with_mltk_help(super().get_params(ctx))


class MltkGroup(typer.core.TyperGroup):
    """A Typer group whose ``--help`` shows flags as flags (see :func:`help_metavar`)."""

    def get_params(self, ctx: Any) -> list[Any]:
        return _with_mltk_help(super().get_params(ctx))


def env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no")


def get_output(ctx: typer.Context | None = None) -> Output:
    """The Output of the current invocation (set up by the root callback)."""
    obj = ctx.find_root().obj if ctx is not None else None
    if isinstance(obj, Output):
        return obj
    return Output(debug=env_flag("MLTK_DEBUG"))


_QUIET = inspect.Parameter(
    "mltk_quiet", inspect.Parameter.KEYWORD_ONLY, default=False,
    annotation=Annotated[bool, typer.Option("--quiet", "-q", help="Only errors on stderr.")])
_VERBOSE = inspect.Parameter(
    "mltk_verbose", inspect.Parameter.KEYWORD_ONLY, default=False,
    annotation=Annotated[bool, typer.Option("--verbose", "-v", help="Debug messages too.")])
#: The context, for commands that do not take it themselves (Typer fills it in by its type).
_CTX = inspect.Parameter("mltk_ctx", inspect.Parameter.KEYWORD_ONLY, default=None,
                         annotation=typer.Context)


def command(app: typer.Typer, name: str | None = None, flags: dict[str, str] | None = None,
            **kwargs: Any) -> Callable[[F], F]:
    """Register ``func`` on ``app`` behind the error boundary; use instead of ``app.command``.

    Every command also gets ``-q/--quiet`` and ``-v/--verbose`` (as the root command has), so
    they work after the subcommand too. ``flags`` maps settings to the command's options where
    the names differ (``learning_rate`` -> ``--lr``), for the errors that name them.
    """

    def decorator(func: F) -> F:
        sig = inspect.signature(func, eval_str=True)
        # Typer passes the context by keyword to the parameter annotated typer.Context.
        ctx_param = next((p.name for p in sig.parameters.values()
                          if p.annotation is typer.Context), None)

        @functools.wraps(func)
        def wrapper(*args: Any, **kw: Any) -> Any:
            quiet, verbose = kw.pop(_QUIET.name, False), kw.pop(_VERBOSE.name, False)
            ctx = kw.get(ctx_param) if ctx_param else kw.pop(_CTX.name, None)
            out = get_output(ctx)
            if quiet:
                out.verbosity = -1
            elif verbose:
                out.verbosity = 1
            try:
                with out.capture_logs():
                    return func(*args, **kw)
            except (typer.Exit, typer.Abort, typer.TyperException):
                raise
            except KeyboardInterrupt:
                out.error("interrupted")
                raise typer.Exit(130) from None
            except BrokenPipeError:
                # The reader of stdout went away (e.g. `| head`): not an error of ours.
                _silence_stdout()
                raise typer.Exit(0) from None
            except Exception as exc:  # the one boundary: everything else is a runtime error
                from mltk.errors import MltkError

                if out.debug_mode:
                    traceback.print_exc(file=sys.stderr)
                out.error(options_named(describe(exc), ctx, flags)
                          if isinstance(exc, MltkError) else describe(exc))
                raise typer.Exit(1) from None

        params = [*sig.parameters.values(), _QUIET, _VERBOSE, *([] if ctx_param else [_CTX])]
        wrapper.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in params}
        app.command(name, **{"cls": MltkCommand, "short_help": short_help(func), **kwargs})(
            wrapper)
        return func

    return decorator


def short_help(func: Callable[..., Any]) -> str | None:
    """The docstring's first paragraph on one line, for the command list of ``--help`` (Rich
    keeps the docstring's line breaks, which wrap badly in a table cell)."""
    doc = inspect.getdoc(func)
    return " ".join(doc.split("\n\n", 1)[0].split()) if doc else None


_NAMED = re.compile(r"`([a-z][a-z0-9_]*)`")


def options_named(text: str, ctx: typer.Context | None,
                  flags: dict[str, str] | None = None) -> str:
    """The core names settings and arguments in backquotes (```resume```); on the command line
    they are options, so a name the running command has as an option becomes it (``--resume``).
    """
    return _NAMED.sub(lambda m: option_of(ctx, m.group(1), flags) or m.group(0), text)


def option_of(ctx: typer.Context | None, key: str,
              flags: dict[str, str] | None = None) -> str | None:
    """The running command's option for a setting or argument: ``flags[key]``, else the long
    option of the parameter of that name (None when the command has none)."""
    if flags and key in flags:
        return flags[key]
    for param in getattr(getattr(ctx, "command", None), "params", []):
        if param.name == key and getattr(param, "opts", None):
            return max(param.opts, key=lambda o: (o.startswith("--"), len(o)))
    return None


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


def parse_floats(text: str, n: int, name: str) -> tuple[float, ...]:
    """Parse ``"a,b,c,d"`` into ``n`` floats or raise a usage error naming the option."""
    try:
        values = tuple(float(x) for x in text.split(","))
    except ValueError:
        raise typer.BadParameter(f"expected {n} comma-separated numbers, got {text!r}",
                                 param_hint=name) from None
    if len(values) != n:
        raise typer.BadParameter(f"expected {n} comma-separated numbers, got {text!r}",
                                 param_hint=name)
    return values


def load_settings(ctx: typer.Context | None, section: str, values: dict[str, Any],
                  config: Path | None = None, flags: dict[str, str] | None = None) -> Any:
    """The typed settings of ``section`` (:func:`mltk.settings.load`) for a command.

    A bad value given on the command line is a usage error (exit 2) naming its option: the
    option is ``flags[key]``, else the command's parameter named like the setting.
    """
    from mltk import settings
    from mltk._settings import SettingError

    try:
        return settings.load(section, config, **values)
    except SettingError as exc:
        flag = option_of(ctx, exc.key, flags)
        if exc.origin == "command line" and flag:
            raise typer.BadParameter(exc.problem, param_hint=flag) from None
        raise
