"""`recengine recommend|similar|search BUNDLE ...`: serve one request from the command line.

Each command opens the bundle (verifying checksums), answers, and prints a table or, with --json, one
JSON object. The engine is imported inside the commands so `recengine --help` stays instant.
"""

from __future__ import annotations

import json
import unicodedata
from typing import Any

import click

from ..errors import RequestError
from .pairs import parse_pairs

_DEVICE = click.Choice(["auto", "cpu", "cuda"])


def _text(value: str | None, option: str) -> str | None:
    """`value` if it is valid Unicode. Arguments that are not valid UTF-8 reach Python as lone surrogates
    (`surrogateescape`), which no tokenizer, JSON writer or terminal accepts: say so in one line."""
    if value is None:
        return None
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise RequestError(f"{option} is not valid UTF-8 text (undecodable byte at character {exc.start})") from None
    return value


def _printable(text: str) -> str:
    """`text` with anything the output cannot encode (lone surrogates from a bundle's ids) escaped."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _open(bundle: str, device: str, variant: str | None) -> Any:
    from ..engine import Engine

    return Engine.open(bundle, device=device, variant=variant)


def _width(text: str) -> int:
    """Terminal columns `text` takes: East Asian wide and full-width characters take two."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def _emit(engine: Any, results: Any, as_json: bool, header: dict[str, Any]) -> None:
    if as_json:
        payload = {
            **header,
            "provider": engine.provider,
            "source": getattr(results, "source", None),
            "skipped": list(getattr(results, "skipped", ())),
            "results": [{"item_id": r.item_id, "score": r.score, **({"reason": r.reason} if r.reason else {})}
                        for r in results],
        }
        click.echo(_printable(json.dumps(payload, ensure_ascii=False)))
        return
    width = max([12] + [_width(r.item_id) for r in results])
    for rank, r in enumerate(results, 1):
        title = engine.item_title(r.item_id)
        line = f"{rank:>3}. {r.item_id}{' ' * (width - _width(r.item_id))} {r.score:>9.4f}  {title}"
        if r.reason:
            line += f"  [{r.reason}]"
        click.echo(_printable(line))
    if not results:
        click.echo("(no results)")


def _common(fn: Any) -> Any:
    fn = click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table.")(fn)
    fn = click.option("--variant", type=click.Choice(["fp32", "int8", "fp16"]), default=None,
                      help="Model variant (default: int8 on CPU, fp16 on GPU).")(fn)
    fn = click.option("--device", type=_DEVICE, default="auto", show_default=True,
                      help="Execution device; cuda fails if CUDA is not really active.")(fn)
    fn = click.option("--k", "k", type=int, default=10, show_default=True, help="Number of results.")(fn)
    return fn


@click.command("recommend")
@click.argument("bundle", type=click.Path())
@click.option("--user", "user_id", default=None, help="User id (stored in the bundle).")
@click.option("--history", "history", multiple=True,
              help="Item id of a history event (repeat; oldest first). With --user it replaces the stored history "
                   "for this request; the user's profile and seen items still apply.")
@click.option("--scene", "scene", multiple=True, help="Request context KEY=VALUE (repeat), e.g. daypart=evening.")
@click.option("--profile", "profile", multiple=True, help="User attribute KEY=VALUE (repeat).")
@click.option("--long-tail", type=float, default=0.0, show_default=True, help="Popularity penalty (>= 0).")
@click.option("--diversity", type=float, default=0.0, show_default=True, help="MMR trade-off in [0, 1].")
@click.option("--explain", is_flag=True, help="Say which history item supports each result.")
@click.option("--include-seen", is_flag=True, help="Do not drop items the user already interacted with.")
@_common
def recommend_command(bundle: str, user_id: str | None, history: tuple[str, ...], scene: tuple[str, ...],
                      profile: tuple[str, ...], long_tail: float, diversity: float, explain: bool,
                      include_seen: bool, k: int, device: str, variant: str | None, as_json: bool) -> None:
    """Recommend items for a user (--user), a history (--history ...), or a cold request."""
    _text(user_id, "--user")
    for option, values in (("--history", history), ("--scene", scene), ("--profile", profile)):
        for value in values:
            _text(value, option)
    engine = _open(bundle, device, variant)
    if user_id is not None:
        try:
            engine.history(user_id)
        except RequestError:
            # Not an error (a new user gets cold recommendations), but a mistyped id must not pass silently.
            click.echo(f"warning: unknown user {_printable(repr(user_id))}: the results are for a new user "
                       "(no stored history)", err=True)
    results = engine.recommend(
        user_id=user_id, history=list(history) if history else None,
        scene=parse_pairs(scene, "--scene") or None, profile=parse_pairs(profile, "--profile") or None,
        k=k, exclude_seen=not include_seen, long_tail=long_tail, diversity=diversity, explain=explain,
    )
    skipped = list(getattr(results, "skipped", ()))
    if skipped and not as_json:  # --json lists them under "skipped"
        shown = ", ".join(_printable(repr(x)) for x in skipped[:5]) + (" ..." if len(skipped) > 5 else "")
        click.echo(f"warning: {len(skipped)} --history item(s) not in the catalogue, skipped: {shown}", err=True)
    _emit(engine, results, as_json, {"command": "recommend", "user_id": user_id})


@click.command("similar")
@click.argument("bundle", type=click.Path())
@click.option("--item", "item_id", required=True, help="Item id to find neighbours of.")
@_common
def similar_command(bundle: str, item_id: str, k: int, device: str, variant: str | None, as_json: bool) -> None:
    """Items similar to --item in the retrieval space."""
    _text(item_id, "--item")
    engine = _open(bundle, device, variant)
    _emit(engine, engine.similar_items(item_id, k=k), as_json, {"command": "similar", "item_id": item_id})


@click.command("search")
@click.argument("bundle", type=click.Path())
@click.argument("text")
@_common
def search_command(bundle: str, text: str, k: int, device: str, variant: str | None, as_json: bool) -> None:
    """Items whose text best matches TEXT (encoded by the bundle's ONNX encoder)."""
    _text(text, "TEXT")
    engine = _open(bundle, device, variant)
    _emit(engine, engine.search(text, k=k), as_json, {"command": "search", "text": text})
