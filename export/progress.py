"""Progress reporting (tqdm bars with loss and validation metrics) that `--quiet` can silence."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any


class _Silent:
    """A do-nothing stand-in for a tqdm bar (quiet mode)."""

    def __init__(self, iterable: Iterable[Any]) -> None:
        self._it = iterable

    def __iter__(self):
        return iter(self._it)

    def set_postfix(self, *args: Any, **kwargs: Any) -> None:
        pass

    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


class Progress:
    """Factory of progress bars and stage messages; quiet = nothing printed."""

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet

    def bar(self, iterable: Iterable[Any], desc: str, total: int | None = None) -> Any:
        if self.quiet:
            return _Silent(iterable)
        from tqdm.auto import tqdm

        return tqdm(iterable, desc=desc, total=total, leave=True, dynamic_ncols=True, file=sys.stderr)

    def message(self, text: str) -> None:
        if not self.quiet:
            print(text, file=sys.stderr, flush=True)
