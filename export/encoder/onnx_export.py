"""ONNX export of the text tower, per docs/bundle.md (`models.encoder`, `models.item_head`).

A fine-tuned tower is exported split (`split.py`): the search encoder takes `input_ids` and `attention_mask`
(int64 [B, T]) and returns `text_embedding` [B, dims.text] (the pre-trained model's) and `item_states`
[B, T, dims.text]; the item head takes `item_states` and `attention_mask` and returns `item_vector`
[B, dims.item]. A tower whose encoder did not train (`finetune="none"`) is one graph returning
`text_embedding` and `item_vector`. Pooling, normalisation and the projection are inside the graphs, so
the runtime needs nothing but a tokenizer and ONNX Runtime. Towers are exported with merged LoRA and eager
attention, then fused by the ONNX Runtime BERT optimiser.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
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
from .split import SplitTextTower, split_tower
from .tokenizer import TokenizerInfo, tokenize_batch
from .tower import TextTower, prepare_for_export

if TYPE_CHECKING:
    from tokenizers import Tokenizer

ENCODER_NAME = "encoder"
ITEM_HEAD_NAME = "item_head"


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


def _heads(backbone) -> int:
    config = backbone.config
    return int(getattr(config, "num_attention_heads", None) or config.n_heads)


def encoder_onnx_spec(
    tower: TextTower | SplitTextTower,
    pad_id: int = 0,
    parity: ParityConfig | None = None,
    optimize: bool = True,
    int8: Int8Config | None = None,
) -> OnnxModelSpec:
    """The declarative export spec of the text tower, or of a split tower's search encoder (names, dtypes,
    dynamic B/T, BERT fusion)."""
    backbone = tower.search.backbone if isinstance(tower, SplitTextTower) else tower.backbone
    config = backbone.config
    second = (TensorSpec("item_states", "float32", ("B", "T", tower.text_dim)) if isinstance(tower, SplitTextTower)
              else TensorSpec("item_vector", "float32", ("B", tower.item_dim)))
    return OnnxModelSpec(
        name=ENCODER_NAME,
        inputs=(
            TensorSpec("input_ids", "int64", ("B", "T")),
            TensorSpec("attention_mask", "int64", ("B", "T")),
        ),
        outputs=(
            TensorSpec("text_embedding", "float32", ("B", tower.text_dim)),
            second,
        ),
        example_inputs=_example_factory(int(config.vocab_size), pad_id),
        trace_sizes={"B": 2, "T": 16},
        parity_sizes=({"B": 1, "T": 5}, {"B": 4, "T": 23}, {"B": 7, "T": 40}),
        parity=parity or ParityConfig(),
        optimization=BertOptimization(num_heads=_heads(backbone), hidden_size=tower.text_dim) if optimize else None,
        int8=int8 or Int8Config(),
    )


def _states_factory(search, vocab_size: int, pad_id: int):
    """Item-head example inputs: the search encoder's `item_states` of random token ids (real hidden
    states, so tracing and parity see the value ranges the head gets)."""
    tokens = _example_factory(vocab_size, pad_id)

    def make(sizes: Mapping[str, int], seed: int) -> dict[str, torch.Tensor]:
        batch = tokens(sizes, seed)
        device = next(search.parameters()).device
        with torch.no_grad():
            _, states = search(batch["input_ids"].to(device), batch["attention_mask"].to(device))
        return {"item_states": states.cpu(), "attention_mask": batch["attention_mask"]}

    return make


def item_head_onnx_spec(
    tower: SplitTextTower,
    pad_id: int = 0,
    parity: ParityConfig | None = None,
    optimize: bool = True,
    int8: Int8Config | None = None,
) -> OnnxModelSpec:
    """The declarative export spec of a split tower's item head (`models.item_head`)."""
    backbone = tower.search.backbone
    return OnnxModelSpec(
        name=ITEM_HEAD_NAME,
        inputs=(
            TensorSpec("item_states", "float32", ("B", "T", tower.text_dim)),
            TensorSpec("attention_mask", "int64", ("B", "T")),
        ),
        outputs=(TensorSpec("item_vector", "float32", ("B", tower.item_dim)),),
        example_inputs=_states_factory(tower.search, int(backbone.config.vocab_size), pad_id),
        trace_sizes={"B": 2, "T": 16},
        parity_sizes=({"B": 1, "T": 5}, {"B": 4, "T": 23}, {"B": 7, "T": 40}),
        parity=parity or ParityConfig(),
        optimization=BertOptimization(num_heads=_heads(backbone), hidden_size=tower.text_dim) if optimize else None,
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


@dataclass
class EncoderExport:
    """What `export_encoder` wrote: the encoder's report and, for a split tower, the item head's."""

    encoder: VariantReport
    item_head: VariantReport | None = None

    @property
    def reports(self) -> dict[str, VariantReport]:
        """Model name -> report, for every model written (`models.<name>` of the manifest)."""
        out = {ENCODER_NAME: self.encoder}
        if self.item_head is not None:
            out[ITEM_HEAD_NAME] = self.item_head
        return out


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
    split: bool = True,
) -> EncoderExport:
    """Export the (trained) tower to `out_dir/encoder.{fp32,int8,fp16}.onnx` (and, split,
    `item_head.{...}.onnx`) and check parity.

    `split` (default): a tower whose encoder weights trained is exported as the pre-trained search encoder
    plus the fine-tuned item head (`split.py`); False exports it as one graph whose `text_embedding` is the
    fine-tuned one (the pre-split form). LoRA is merged and attention switched to eager on copies (the trained
    tower is untouched). With `parity_texts` (e.g. 64-256 catalogue texts) parity runs on real tokenised
    text, plus the random spec batches; otherwise on the random batches only. Each report's `parity` dict
    goes to `metrics.parity.<model>`, `manifest_entry()` to `models.<model>`.
    """
    if parity_texts is not None and tokenizer is None:
        raise ExportError("export_encoder: parity_texts need the tokenizer")
    pad_id = tokenizer_info.pad_id if tokenizer_info is not None else 0
    two = split_tower(tower) if split else None
    exported: TextTower | SplitTextTower = two if two is not None else prepare_for_export(tower)
    spec = encoder_onnx_spec(exported, pad_id=pad_id, parity=parity, optimize=optimize, int8=int8)
    batches = spec.parity_inputs()
    if parity_texts:
        batches = text_batches(tokenizer, list(parity_texts), pad_id=pad_id) + batches
    if two is None:
        return EncoderExport(export_variants(spec, exported, out_dir, parity_inputs=batches, device=device))
    encoder = export_variants(spec, two.search, out_dir, parity_inputs=batches, device=device)
    head_spec = item_head_onnx_spec(two, pad_id=pad_id, parity=parity, optimize=optimize, int8=int8)
    head_batches = []
    on = next(two.search.parameters()).device
    with torch.no_grad():
        for batch in batches:
            _, states = two.search(batch["input_ids"].to(on), batch["attention_mask"].to(on))
            head_batches.append({"item_states": states.cpu(), "attention_mask": batch["attention_mask"]})
    head = export_variants(head_spec, two.head, out_dir, parity_inputs=head_batches, device=device)
    return EncoderExport(encoder, head)


__all__ = ["ENCODER_NAME", "ITEM_HEAD_NAME", "EncoderExport", "encoder_onnx_spec", "export_encoder",
           "item_head_onnx_spec", "text_batches"]
