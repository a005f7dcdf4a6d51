"""The one parser of repeated KEY=VALUE options (`--scene`, `--profile`, `--set` of export and bench)."""

from __future__ import annotations

from collections.abc import Iterable

from ..errors import RequestError


def parse_pairs(values: Iterable[str], option: str, example: str = "key=value") -> dict[str, str]:
    """`["a=1", "b = x"]` -> {"a": "1", "b": "x"}; a value may contain "="; a missing "=" or an empty
    key is a RequestError naming the option (CLI: exit 2, one line)."""
    out: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise RequestError(f"{option} expects KEY=VALUE (e.g. {example}), got {item!r}")
        out[key.strip()] = value.strip()
    return out


__all__ = ["parse_pairs"]
