"""Progress bars and messages for long bench runs (tqdm when installed, silent when quiet)."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")


class Progress:
    """`bar(iterable, desc)` and `message(text)`; both print to stderr so JSON on stdout stays clean."""

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet
        try:
            from tqdm import tqdm
        except ImportError:  # tqdm is in the bench extra; without it, messages only
            tqdm = None
        self._tqdm: Any = tqdm

    def bar(self, items: Iterable[T], desc: str, total: int | None = None) -> Iterator[T]:
        if self.quiet or self._tqdm is None:
            yield from items
            return
        yield from self._tqdm(items, desc=desc, total=total, leave=False, file=sys.stderr, dynamic_ncols=True)

    def message(self, text: str) -> None:
        if self.quiet:
            return
        if self._tqdm is not None:
            self._tqdm.write(text, file=sys.stderr)
        else:
            print(text, file=sys.stderr, flush=True)
