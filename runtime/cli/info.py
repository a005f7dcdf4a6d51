"""`recengine info BUNDLE`: the manifest summary (metrics, parity, timings, files)."""

from __future__ import annotations

import json
from typing import Any

import click

from ..bundle import open_bundle
from ..data.schema import WEIGHT_NOTE


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def _dict(node: Any) -> dict[str, Any]:
    """A manifest section as a dict; anything else (a hand-edited manifest) reads as empty."""
    return node if isinstance(node, dict) else {}


def summarize(manifest: dict[str, Any]) -> list[str]:
    """Human-readable lines for the manifest's main sections (sections of the wrong type are skipped)."""
    lines = [
        f"format            {manifest.get('format')} {manifest.get('format_version')}",
        f"recengine         {manifest.get('recengine_version')}",
        f"created           {manifest.get('created_at')}",
    ]
    data = _dict(manifest.get("data"))
    if data:
        lines.append(
            f"data              {data.get('name')}: {data.get('n_items')} items, {data.get('n_users')} users, "
            f"{data.get('n_interactions')} interactions (fingerprint {str(data.get('fingerprint', ''))[:12]})"
        )
        notes = data.get("warnings")
        for note in notes if isinstance(notes, list) else []:  # labelled as the export and `validate` label them
            label = "data note" if note == WEIGHT_NOTE else "data warning"
            lines.append(f"{label:<18}{note}")
    dims = _dict(manifest.get("dims"))
    if dims:
        lines.append("dims              " + ", ".join(f"{k}={v}" for k, v in dims.items()))
    models = _dict(manifest.get("models"))
    parity = _dict(_dict(manifest.get("metrics")).get("parity"))
    for name, spec in models.items():
        variants = _dict(spec.get("variants")) if isinstance(spec, dict) else {}
        dropped = set(_dict(_dict(parity.get(name)).get("dropped"))) | set(
            _dict(_dict(parity.get("pipeline")).get("dropped")))
        note = f" ({', '.join(sorted(dropped))} dropped: failed parity, serves fp32)" if dropped else ""
        space = spec.get("search_space") if isinstance(spec, dict) else None
        if space in ("pretrained", "fine-tuned"):  # what `search` ranks by (docs/bundle.md "Split encoder")
            note += f" (search space: {space})"
        lines.append(f"model {name:<12}" + ", ".join(sorted(variants)) + note)
    index = _dict(manifest.get("index"))
    for name, spec in index.items():
        if isinstance(spec, dict):
            params = ", ".join(f"{k}={spec[k]}" for k in ("space", "dim", "M", "ef_construction", "ef_search", "count")
                               if k in spec)
            lines.append(f"index {name:<12}{params}")
    if "text" not in index:  # docs/bundle.md "Text embeddings: an index only past the scan budget"
        lines.append(f"index {'text':<12}none (search scans the text embeddings exactly)")
    metrics = _dict(manifest.get("metrics"))

    def walk(prefix: str, node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(f"{prefix}.{key}" if prefix else str(key), value)
        elif isinstance(node, list) and node and all(isinstance(v, dict) for v in node):
            # a table of measured points (e.g. cooccur.grid): its size here, the points in `info --json`
            lines.append(f"metric  {prefix:<40} {len(node)} points (see --json)")
        else:
            lines.append(f"metric  {prefix:<40} {_fmt(node)}")

    walk("", metrics)
    timings = _dict(manifest.get("timings"))
    for stage, seconds in timings.items():
        lines.append(f"time    {stage:<40} {_fmt(seconds)} s")
    files = _dict(manifest.get("files"))
    total = sum(int(f.get("bytes", 0)) for f in files.values() if isinstance(f, dict))
    lines.append(f"files             {len(files)} ({total / 1e6:.1f} MB)")
    return lines


@click.command("info")
@click.argument("bundle", type=click.Path(file_okay=True, dir_okay=True))
@click.option("--json", "as_json", is_flag=True, help="Print the whole manifest as JSON.")
@click.option("--no-verify", is_flag=True, help="Skip checksum verification (faster on large bundles).")
def info_command(bundle: str, as_json: bool, no_verify: bool) -> None:
    """Print a bundle's manifest summary: data, models, index, metrics, timings."""
    # check_schema=False: info shows a manifest as it is, odd sections included (they print as empty)
    reader = open_bundle(bundle, verify=not no_verify, check_schema=False)
    if as_json:
        click.echo(json.dumps(reader.manifest, indent=2))
        return
    for line in summarize(reader.manifest):
        click.echo(line)
