"""`recengine export [DATA] --out BUNDLE`: the command line of the export stage.

Imports nothing heavy at module level (torch is imported inside the command) so `recengine --help` stays
fast on a lean runtime install. Errors are `RecengineError`s: the CLI group prints them as one line and
exits with code 2.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from recengine.cli.pairs import parse_pairs


@click.command("export")
@click.argument("data", required=False, type=click.Path(path_type=Path))
@click.option("--out", "out", required=True, type=click.Path(path_type=Path), help="Bundle directory to write.")
@click.option("--profile", type=click.Choice(["standard", "quick"]), default=None,
              help="standard (default: real MiniLM, tuned epochs) or quick (tiny models, < 60 s).")
@click.option("--config", "config_path", type=click.Path(path_type=Path), default=None,
              help="TOML file with top-level keys and [encoder], [graph], [user], [fusion], [index], [parity].")
@click.option("--encoder", "encoder_dir", type=click.Path(path_type=Path), default=None,
              help="Local Hugging Face BERT-family directory (default: the packaged all-MiniLM-L6-v2).")
@click.option("--finetune", type=click.Choice(["lora", "full", "none"]), default=None,
              help="How the text tower is fine-tuned (default lora).")
@click.option("--device", type=click.Choice(["cpu", "cuda", "auto"]), default=None, help="Training device.")
@click.option("--dim", "item_dim", type=int, default=None, help="Retrieval space width (default 64).")
@click.option("--epochs", type=int, default=None, help="Max epochs of the user tower (early stopping decides).")
@click.option("--graph-epochs", type=int, default=None, help="Max epochs of LightGCN.")
@click.option("--align-epochs", type=int, default=None, help="Epochs of the text alignment (InfoNCE).")
@click.option("--max-history", type=int, default=None, help="History length the user tower reads.")
@click.option("--seed", type=int, default=None, help="Random seed (exports are reproducible per seed).")
@click.option("--threads", type=int, default=None, help="torch CPU threads (0 = torch default).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Any config key, e.g. --set user.dropout=0.3 --set fusion.n_candidates=100 (repeatable).")
@click.option("--target", type=str, default=None, metavar="[cpu|gpu|all]",
              help="Host the bundle is for: cpu keeps only the int8 models, gpu only fp16, all (default) every "
                   "variant. fp32 is still built and measured during the export (parity, validation).")
@click.option("--no-adapt", "no_adapt", is_flag=True,
              help="Keep the profile's values as they are (by default the export fits token length, history length, "
                   "loss, epoch caps and graph batch size to the data; options and --set keys are never changed).")
@click.option("--force", is_flag=True, help="Replace an existing bundle at --out.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def export_command(data: Path | None, out: Path, profile: str | None, config_path: Path | None,
                   encoder_dir: Path | None, finetune: str | None, device: str | None, item_dim: int | None,
                   epochs: int | None, graph_epochs: int | None, align_epochs: int | None, max_history: int | None,
                   seed: int | None, threads: int | None, sets: tuple[str, ...], target: str | None, no_adapt: bool,
                   force: bool, quiet: bool) -> None:
    """Train the models on DATA (default: the embedded MovieLens) and write a bundle to --out.

    Every option and --set key (and every key of --config) is recorded as explicit (`ExportConfig.explicit`):
    the data-driven defaults of `recengine.export.adapt` never change them."""
    from recengine.cli.paths import check_bundle_out
    from recengine.errors import ExportError

    check_bundle_out(out, "--out", force)  # before any training: a bad --out fails in a second, not at the end

    from .config import ExportConfig

    if config_path is not None:
        cfg = ExportConfig.from_toml(config_path, profile=profile)
    else:
        cfg = ExportConfig.from_profile(profile or "standard")
    overrides: dict[str, Any] = {}
    if encoder_dir is not None:
        if not encoder_dir.exists():
            raise ExportError(f"--encoder {encoder_dir}: no such directory")
        overrides["encoder.path"] = str(encoder_dir.resolve())
        overrides["encoder.tiny"] = False
    for key, value in (("encoder.finetune", finetune), ("device", device), ("item_dim", item_dim),
                       ("user.epochs", epochs), ("graph.epochs", graph_epochs), ("encoder.epochs", align_epochs),
                       ("user.max_history", max_history), ("seed", seed), ("threads", threads),
                       ("target", target)):
        if value is not None:
            overrides[key] = value
    if quiet:
        overrides["quiet"] = True
    if no_adapt:
        overrides["adapt"] = False
    overrides.update(parse_pairs(sets, "--set", "user.epochs=50"))
    cfg = cfg.override(overrides, source="command line")

    from .pipeline import run_export

    path = run_export(data, out, cfg, force=force)
    click.echo(str(path))
