"""The ``janus-deploy`` command. Each sub-module registers its commands on ``app``."""

from __future__ import annotations

import functools
import importlib
from typing import Any

import typer

from janus_deploy import JanusError, __version__, missing_extra_hint

app = typer.Typer(
    name="janus-deploy",
    help="Deploy Vision Transformers across an edge device and a cloud server (Janus: token "
    "pruning + split computing over a fluctuating uplink).",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
    add_completion=False,
)

_state = {"debug": False}


def _version(value: bool) -> None:
    if value:
        typer.echo(f"janus-deploy {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors."),
) -> None:
    _state["debug"] = debug


# Command modules, in pipeline order. Each defines ``register(app)``.
_COMMAND_MODULES = [
    "janus_deploy.cli.plan_cmds",
    "janus_deploy.cli.profile_cmds",
    "janus_deploy.cli.calibrate_cmds",
    "janus_deploy.cli.traces_cmds",
    "janus_deploy.cli.schedule_cmds",
    "janus_deploy.cli.table_cmds",
    "janus_deploy.cli.runtime_cmds",
    "janus_deploy.cli.triton_cmds",
    "janus_deploy.cli.demo_cmds",
    "janus_deploy.cli.testbed_cmds",
]
for _name in _COMMAND_MODULES:
    importlib.import_module(_name).register(app)


def _friendly(fn, name: str = "this command"):
    """Print user errors (JanusError, and a missing optional dependency: which extra to install)
    in one red line and exit 2; --debug shows the traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (JanusError, ImportError) as exc:
            message = missing_extra_hint(exc, f"`janus-deploy {name}`") if isinstance(exc, ImportError) else str(exc)
            if _state["debug"] or message is None:
                raise
            from rich.console import Console
            from rich.markup import escape

            # soft_wrap: a message is never hard-wrapped at the terminal width (greppable, testable)
            Console(stderr=True, soft_wrap=True).print(f"[bold red]error:[/] {escape(message)}")
            raise typer.Exit(2) from None

    return wrapper


for _cmd in app.registered_commands:
    if _cmd.callback is not None:
        _cmd.callback = _friendly(_cmd.callback, _cmd.name or _cmd.callback.__name__.replace("_", "-"))


def main(argv: list[str] | None = None) -> None:
    """Entry point. ``--debug`` is accepted anywhere on the command line, not only before the
    subcommand (it is a global switch, so its position should not matter)."""
    import sys

    args = list(sys.argv[1:] if argv is None else argv)
    if "--debug" in args:
        args = [a for a in args if a != "--debug"]
        _state["debug"] = True
        args.insert(0, "--debug")
    if not args:  # no_args_is_help: typer prints the help
        app(args=args, prog_name="janus-deploy")
        return
    try:
        code = app(args=args, prog_name="janus-deploy", standalone_mode=False)
    except Exception as caught:  # click's exceptions (typer may vendor click: matched by class name)
        exc: Any = caught  # click's exception classes, known here by name only
        kinds = {c.__name__ for c in type(exc).__mro__}
        if "UsageError" in kinds:  # unknown option, missing or malformed value
            from rich.console import Console
            from rich.markup import escape

            ctx = getattr(exc, "ctx", None)
            where = ctx.command_path if ctx is not None else "janus-deploy"
            # one line, as for every other mistake (typer would draw a box, hard-wrapped at the width)
            Console(stderr=True, soft_wrap=True).print(
                f"[bold red]error:[/] {escape(' '.join(exc.format_message().split()))} (see `{escape(where)} -h`)")
            sys.exit(exc.exit_code)
        if "ClickException" in kinds:
            exc.show()
            sys.exit(exc.exit_code)
        if "Abort" in kinds:
            print("Aborted!", file=sys.stderr)
            sys.exit(1)
        raise
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
