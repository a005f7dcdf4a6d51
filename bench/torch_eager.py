"""Torch-eager twins of the bundle's models, the same-run baseline of `recengine bench latency`.

- encoder: the bundle's source encoder directory (`models.encoder.source.path`, e.g. the packaged
  all-MiniLM-L6-v2) loaded with transformers' AutoModel + mean pooling, tokenised by its HF tokenizer —
  what serving without recengine would run. (The fine-tuned LoRA deltas are merged into the ONNX graph; the
  architecture and so the compute are the same.)
- user_tower / fusion: recengine's own torch modules rebuilt from the manifest's export config with the
  bundle's shapes. Their weights are not in the bundle (only the ONNX graphs are), so they are randomly
  initialised: latency does not depend on weight values, and the report says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from recengine._deps import require


@dataclass
class TorchEncoder:
    """HF encoder + mean pooling; `__call__(texts)` tokenises and encodes (like the runtime's encode)."""

    model: Any

    @classmethod
    def load(cls, directory: Path, max_length: int) -> TorchEncoder:
        from .textenc import MeanPoolEncoder

        return cls(MeanPoolEncoder(directory, max_length=max_length))

    def __call__(self, texts: list[str]) -> Any:
        return self.model.forward(self.model.tokenize(texts))


def encoder_source_dir(manifest: dict[str, Any], override: Path | None) -> Path | None:
    """The HF directory the bundle's encoder was fine-tuned from, if it still exists on this machine."""
    if override is not None:
        return Path(override)
    path = manifest.get("models", {}).get("encoder", {}).get("source", {}).get("path")
    if path and (Path(path) / "config.json").is_file():
        return Path(path)
    return None


def _vocab_sizes(spec: dict[str, Any]) -> list[int]:
    columns = list(spec.get("columns", []))
    if not columns:
        return [1]
    values, edges = spec.get("values", {}), spec.get("numeric_edges", {})
    return [len(values[c]) if c in values else len(edges[c]) + 2 for c in columns]


def user_tower_module(manifest: dict[str, Any]) -> Any:
    """recengine's UserTower with the bundle's dimensions (random weights; eval mode)."""
    torch = require("torch", "The torch-eager latency baseline")
    from recengine.export.user_tower import UserTower

    cfg = manifest.get("config", {}).get("user", {})
    dims = manifest["dims"]
    tower = UserTower(int(dims["item"]), int(dims["max_history"]), int(cfg.get("layers", 2)), int(cfg.get("heads", 1)),
                      0.0, _vocab_sizes(manifest["vocab"]["scene"]), _vocab_sizes(manifest["vocab"]["profile"]))
    torch.manual_seed(0)
    return tower.eval()


def fusion_module(manifest: dict[str, Any]) -> Any:
    """recengine's FusionHead with the bundle's dimensions (random weights; eval mode)."""
    require("torch", "The torch-eager latency baseline")
    from recengine.export.fusion import FusionHead

    cfg = manifest.get("config", {}).get("fusion", {})
    dims = manifest["dims"]
    n_pop = len(manifest["vocab"].get("pop_bucket_edges", [])) + 2
    head = FusionHead(int(dims["item"]), int(dims["item_feats"]), n_pop, _vocab_sizes(manifest["vocab"]["scene"]),
                      _vocab_sizes(manifest["vocab"]["profile"]), int(cfg.get("hidden", 64)), 0.0)
    return head.eval()


def run_module(module: Any, inputs: dict[str, np.ndarray]) -> Any:
    """One eager forward under inference_mode (numpy in, tensor out)."""
    torch = require("torch", "The torch-eager latency baseline")
    with torch.inference_mode():
        return module(**{k: torch.from_numpy(v) for k, v in inputs.items()})
