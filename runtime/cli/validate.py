"""`recengine validate DATA`: check a data directory against the data contract without training anything.

Why: the export is the first thing that reads a newcomer's data, and it trains for minutes after loading; a
mistake in the data should cost seconds. This loads the directory exactly as `recengine export` and `recengine
bench quality` do (`recengine.data.load_dataset`, the same checks, the same one-line errors and exit code 2)
and says what was found: sizes, the text, attribute and context columns, whether there are timestamps and
weights, and what the loader worked around (the warnings the export would print and keep in the manifest).
Needs pandas (the `export` extra), like every reader of data.
"""

from __future__ import annotations

import json

import click
import numpy as np


@click.command("validate")
@click.argument("data", type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of lines.")
def validate_command(data: str, as_json: bool) -> None:
    """Check a data directory against the data contract (docs/data.md) without training: the first problem
    found, as one `error:` line on stderr (exit 2; also with --json), else what the export would read."""
    from ..data import load_dataset
    from ..data.schema import WEIGHT_NOTE, data_warnings, has_weights

    dataset = load_dataset(data)
    inter = dataset.interactions
    timestamps = inter.timestamp is not None
    summary = {
        "data": dataset.name,
        "items": dataset.n_items,
        "users": dataset.n_users,
        "interactions": len(inter),
        "text_columns": list(dataset.items.text_columns),
        "item_attr_columns": sorted(dataset.items.attrs),
        "user_attr_columns": sorted(dataset.user_attrs),
        "context_columns": sorted(inter.context),
        "timestamps": timestamps,
        "weights": has_weights(dataset),
        "items_without_interactions": int(dataset.n_items - np.unique(inter.item).size),
        "warnings": data_warnings(dataset),
    }
    if as_json:
        click.echo(json.dumps(summary, ensure_ascii=False))
        return
    click.echo(f"ok: {dataset.name}: {summary['items']} items, {summary['users']} users, "
               f"{summary['interactions']} interactions ({'with' if timestamps else 'no'} timestamps, "
               f"{'with' if summary['weights'] else 'no'} weights)")
    for key in ("text_columns", "item_attr_columns", "user_attr_columns", "context_columns"):
        click.echo(f"{key:<27} {', '.join(summary[key]) or '-'}")
    click.echo(f"{'items_without_interactions':<27} {summary['items_without_interactions']}")
    for warning in summary["warnings"]:  # labelled as the export labels them
        click.echo(f"{'note' if warning == WEIGHT_NOTE else 'warning'}: {warning}", err=True)
