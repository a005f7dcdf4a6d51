"""The `recengine` command line.

Each stage contributes its commands from its own module (listed in `_COMMANDS`); the modules must import
without torch so `recengine --help` works on a lean runtime install, and import heavy libraries inside the
command body. A `RecengineError` becomes one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import click

from .._version import __version__
from ..errors import RecengineError

# (module, attribute) of each command or group; a module that does not exist yet is simply not listed.
_COMMANDS: tuple[tuple[str, str], ...] = (
    ("recengine.export.cli", "export_command"),
    ("recengine.cli.serve", "recommend_command"),
    ("recengine.cli.serve", "similar_command"),
    ("recengine.cli.serve", "search_command"),
    ("recengine.cli.info", "info_command"),
    ("recengine.cli.http", "serve_command"),
    ("recengine.bench.cli", "bench_group"),
)


def fail(message: str) -> "click.exceptions.Exit":
    """Print one clear line on stderr and return the exit-2 exception to raise."""
    click.echo(f"error: {message}", err=True)
    return click.exceptions.Exit(2)


class RecengineGroup(click.Group):
    """A click group that turns `RecengineError` into exit code 2 with a one-line message."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except RecengineError as exc:
            raise fail(str(exc)) from None
        except KeyboardInterrupt:
            raise fail("interrupted") from None

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)


def _load_commands(group: click.Group) -> None:
    for module_name, attr in _COMMANDS:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and module_name.startswith(exc.name):
                continue  # that stage is not part of this installation
            raise
        group.add_command(getattr(module, attr))


@click.group(cls=RecengineGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="recengine")
def cli() -> None:
    """recengine: LM-text + graph + sequence recommendations, exported to ONNX and served in-process."""


_load_commands(cli)


def main(argv: list[str] | None = None) -> int:
    """Console entry point."""
    try:
        cli.main(args=argv, prog_name="recengine", standalone_mode=True)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
