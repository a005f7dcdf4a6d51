"""Progress bars and stage messages for the long commands (export, bench), silenced by `--quiet`.

Everything goes to stderr, so JSON on stdout stays clean. tqdm (export and bench extras) draws the bars;
without it only messages are printed.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import Any


class _Plain:
    """A bar that only iterates (quiet mode, or no tqdm): the same interface as a tqdm bar."""

    def __init__(self, iterable: Iterable[Any]) -> None:
        self._it = iterable

    def __iter__(self) -> Iterator[Any]:
        return iter(self._it)

    def set_postfix(self, *args: Any, **kwargs: Any) -> None:
        pass

    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


class Progress:
    """`bar(iterable, desc)` (iterate it; `.set_postfix(...)` shows losses and metrics) and `message(text)`."""

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet
        try:
            from tqdm.auto import tqdm
        except ImportError:
            tqdm = None
        self._tqdm: Any = tqdm

    def bar(self, iterable: Iterable[Any], desc: str, total: int | None = None) -> Any:
        if self.quiet or self._tqdm is None:
            return _Plain(iterable)
        notebook = str(getattr(self._tqdm, "__module__", "")).startswith("tqdm.notebook")  # a widget, not text
        if notebook or _is_terminal(sys.stderr):
            return self._tqdm(iterable, desc=desc, total=total, leave=True, dynamic_ncols=True, file=sys.stderr)
        # redirected to a file (a CI log, `> export.log`): a line every 30 s, not a carriage-return redraw at
        # every step and every postfix change (~50 KB of them per export); `maxinterval` too, or tqdm's monitor
        # thread redraws every 10 s anyway
        bar = self._tqdm(iterable, desc=desc, total=total, leave=True, file=sys.stderr, mininterval=30.0,
                         maxinterval=30.0)
        plain_postfix = bar.set_postfix
        bar.set_postfix = lambda *args, **kwargs: plain_postfix(*args, **{**kwargs, "refresh": False})
        return bar

    def warn(self, text: str) -> None:
        """A line the user must see (a data problem the command worked around), `--quiet` or not."""
        if self._tqdm is not None and not self.quiet:
            self._tqdm.write(f"warning: {text}", file=sys.stderr)
        else:
            print(f"warning: {text}", file=sys.stderr, flush=True)

    def message(self, text: str) -> None:
        if self.quiet:
            return
        if self._tqdm is not None:
            self._tqdm.write(text, file=sys.stderr)
        else:
            print(text, file=sys.stderr, flush=True)


def _is_terminal(stream: Any) -> bool:
    """Whether `stream` is a terminal (False for a file, a pipe, or no stream at all: pythonw's None)."""
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # None, or a closed stream
        return False


__all__ = ["Progress"]
