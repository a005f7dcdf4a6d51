"""ONNX export of the text tower, per docs/bundle.md (`models.encoder`).

The graph takes `input_ids` and `attention_mask` (int64 [B, T]) and returns `text_embedding`
[B, dims.text] and `item_vector` [B, dims.item]: pooling, normalisation and the projection are inside it,
so the runtime needs nothing but a tokenizer and ONNX Runtime. The tower is exported with merged LoRA
and eager attention, then fused by the ONNX Runtime BERT optimiser.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from recengine.errors import ExportError

from ..onnx_tools import (
    BertOptimization,
    Int8Config,
    OnnxModelSpec,
    ParityConfig,
    TensorSpec,
    VariantReport,
    export_variants,
)
from .tokenizer import TokenizerInfo, tokenize_batch
from .tower import TextTower, prepare_for_export

if TYPE_CHECKING:
    from tokenizers import Tokenizer

ENCODER_NAME = "encoder"


def _example_factory(vocab_size: int, pad_id: int):
    def make(sizes: Mapping[str, int], seed: int) -> dict[str, torch.Tensor]:
        b, t = int(sizes["B"]), int(sizes["T"])
        g = torch.Generator().manual_seed(seed)
        low = min(5, vocab_size - 1)  # skip the usual special-token ids
        ids = torch.randint(low, vocab_size, (b, t), generator=g, dtype=torch.int64)
        lengths = torch.randint(2, t + 1, (b,), generator=g)
        lengths[0] = t  # one row fills the batch, as with real padded batches
        mask = (torch.arange(t).unsqueeze(0) < lengths.unsqueeze(1)).to(torch.int64)
        ids = torch.where(mask.bool(), ids, torch.full_like(ids, pad_id))
        return {"input_ids": ids, "attention_mask": mask}

    return make


def encoder_onnx_spec(
    tower: TextTower,
    pad_id: int = 0,
    parity: ParityConfig | None = None,
    optimize: bool = True,
    int8: Int8Config | None = None,
) -> OnnxModelSpec:
    """The declarative export spec of the text tower (names, dtypes, dynamic B/T, BERT fusion)."""
    config = tower.backbone.config
    heads = getattr(config, "num_attention_heads", None) or config.n_heads
    return OnnxModelSpec(
        name=ENCODER_NAME,
        inputs=(
            TensorSpec("input_ids", "int64", ("B", "T")),
            TensorSpec("attention_mask", "int64", ("B", "T")),
        ),
        outputs=(
            TensorSpec("text_embedding", "float32", ("B", tower.text_dim)),
            TensorSpec("item_vector", "float32", ("B", tower.item_dim)),
        ),
        example_inputs=_example_factory(int(config.vocab_size), pad_id),
        trace_sizes={"B": 2, "T": 16},
        parity_sizes=({"B": 1, "T": 5}, {"B": 4, "T": 23}, {"B": 7, "T": 40}),
        parity=parity or ParityConfig(),
        optimization=BertOptimization(num_heads=int(heads), hidden_size=tower.text_dim) if optimize else None,
        int8=int8 or Int8Config(),
    )


def text_batches(
    tokenizer: Tokenizer, texts: Sequence[str], batch_size: int = 32, pad_id: int = 0
) -> list[dict[str, torch.Tensor]]:
    """Real-text parity batches: tokenised like the runtime does (no padding beyond each batch)."""
    batches = []
    for start in range(0, len(texts), batch_size):
        ids, mask = tokenize_batch(tokenizer, texts[start : start + batch_size], pad_id=pad_id)
        batches.append({"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask)})
    return batches


def export_encoder(
    tower: TextTower,
    out_dir: str | Path,
    tokenizer: Tokenizer | None = None,
    tokenizer_info: TokenizerInfo | None = None,
    parity_texts: Sequence[str] | None = None,
    *,
    parity: ParityConfig | None = None,
    device: str = "cpu",
    optimize: bool = True,
    int8: Int8Config | None = None,
) -> VariantReport:
    """Export the (trained) tower to `out_dir/encoder.{fp32,int8,fp16}.onnx` and check parity.

    LoRA is merged and attention switched to eager on a copy (the trained tower is untouched). With
    `parity_texts` (e.g. 64-256 catalogue texts) parity runs on real tokenised text, plus the random
    spec batches; otherwise on the random batches only. The report's `parity` dict goes to
    `metrics.parity.encoder`, `manifest_entry()` to `models.encoder`.
    """
    if parity_texts is not None and tokenizer is None:
        raise ExportError("export_encoder: parity_texts need the tokenizer")
    pad_id = tokenizer_info.pad_id if tokenizer_info is not None else 0
    exported = prepare_for_export(tower)
    spec = encoder_onnx_spec(exported, pad_id=pad_id, parity=parity, optimize=optimize, int8=int8)
    batches = spec.parity_inputs()
    if parity_texts:
        batches = text_batches(tokenizer, list(parity_texts), pad_id=pad_id) + batches
    return export_variants(spec, exported, out_dir, parity_inputs=batches, device=device)


__all__ = ["ENCODER_NAME", "encoder_onnx_spec", "export_encoder", "text_batches"]
