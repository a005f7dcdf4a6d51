"""The `recengine` command line.

Each stage contributes its commands from its own module (listed in `_COMMANDS`); the modules must import
without torch so `recengine --help` works on a lean runtime install, and import heavy libraries inside the
command body. A `RecengineError` becomes one line on stderr and exit code 2, never a traceback; so does an
`OSError` from the host (a full disk, standard output on `/dev/full`, an unreadable file): it is the
environment's problem, not a bug, and the user needs its one-line reason.

SIGTERM (the ordinary service stop) is handled like Ctrl-C: it raises `Terminated` (a `KeyboardInterrupt`)
in the main thread, so every `with` block unwinds - the export's and `Engine.save`'s temporary directories
are removed - and the command exits with code 2 and one line.
"""

from __future__ import annotations

import errno
import importlib
import os
import signal
import stat
import sys
from types import FrameType
from typing import Any

import click

from .._version import __version__
from ..errors import RecengineError

# (module, attribute) of each command or group; a module that does not exist yet is simply not listed.
_COMMANDS: tuple[tuple[str, str], ...] = (
    ("recengine.export.cli", "export_command"),
    ("recengine.cli.validate", "validate_command"),
    ("recengine.cli.serve", "recommend_command"),
    ("recengine.cli.serve", "similar_command"),
    ("recengine.cli.serve", "search_command"),
    ("recengine.cli.info", "info_command"),
    ("recengine.cli.http", "serve_command"),
    ("recengine.bench.cli", "bench_group"),
)


def fail(message: str) -> click.exceptions.Exit:
    """Print one clear line on stderr and return the exit-2 exception to raise."""
    click.echo(f"error: {message}", err=True)
    return click.exceptions.Exit(2)


class Terminated(KeyboardInterrupt):
    """Raised in the main thread when the process receives SIGTERM (see the module docstring)."""


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise Terminated()


def _silence_stdout() -> None:
    """Point fd 1 at /dev/null so the interpreter's final flush of undeliverable output cannot print a
    second error (or turn the exit code into 120)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


def describe_os_error(exc: OSError) -> str:
    """One line for an OSError: what failed and on which file."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO) and exc.filename is None:
        return f"cannot write the output ({reason})"
    return f"{reason}: {exc.filename}" if exc.filename is not None else reason


def stdout_problem() -> str | None:
    """Why standard output cannot take the command's output, when that is known before any work: it is
    `/dev/full`, or a file on a file system with no free block. (Other failures are caught when writing.)
    Checked first so an export or benchmark does not run for minutes only to fail printing its result."""
    try:
        fd = sys.stdout.fileno()
        info = os.fstat(fd)
    except (AttributeError, ValueError, OSError):
        return None  # not a real file (captured by a test runner, closed)
    if stat.S_ISCHR(info.st_mode) and (os.major(info.st_rdev), os.minor(info.st_rdev)) == (1, 7):
        return "standard output is /dev/full (No space left on device)"
    if stat.S_ISREG(info.st_mode):
        try:
            fs = os.fstatvfs(fd)
        except OSError:
            return None
        free = fs.f_bfree if os.geteuid() == 0 else fs.f_bavail  # root may use the reserved blocks
        if free == 0:
            return "standard output's file system is full (No space left on device)"
    return None


class RecengineGroup(click.Group):
    """A click group that turns `RecengineError` (and host `OSError`s) into exit code 2 with a one-line
    message, and SIGTERM into the same clean exit as Ctrl-C."""

    def invoke(self, ctx: click.Context) -> Any:
        previous = None
        try:
            previous = signal.signal(signal.SIGTERM, _on_sigterm)
        except ValueError:
            pass  # not the main thread (an embedding application): its own handler stays
        try:
            problem = stdout_problem()
            if problem is not None:
                _silence_stdout()
                raise fail(f"cannot write the output: {problem}")
            return super().invoke(ctx)
        except RecengineError as exc:
            raise fail(str(exc)) from None
        except Terminated:
            raise fail("terminated (SIGTERM)") from None
        except KeyboardInterrupt:
            raise fail("interrupted") from None
        except OSError as exc:
            if exc.errno == errno.EPIPE:
                raise  # the reader went away (`| head`): click exits quietly
            if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO):
                _silence_stdout()
            raise fail(describe_os_error(exc)) from None
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)

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
    code = 0
    try:
        cli.main(args=argv, prog_name="recengine", standalone_mode=True)
    except SystemExit as exc:
        code = int(exc.code or 0)
    try:
        sys.stdout.flush()  # output still buffered must reach its destination before we report success
    except OSError as exc:
        if exc.errno != errno.EPIPE:
            click.echo(f"error: {describe_os_error(exc)}", err=True)
            code = code or 2
        _silence_stdout()
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
