"""Batch encoding of item texts with the torch tower (catalogue encoding during export/training)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

from recengine.errors import ExportError

from .tokenizer import tokenize_batch
from .tower import TextTower, resolve_device

if TYPE_CHECKING:
    from tokenizers import Tokenizer


def tokenize_to_tensors(
    tokenizer: Tokenizer, texts: Sequence[str], pad_id: int = 0, device: str | torch.device = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """`(input_ids, attention_mask)` int64 tensors on `device`, padded to the batch's longest text.
    What a training loop feeds to `tower(input_ids, attention_mask)`."""
    ids, mask = tokenize_batch(tokenizer, texts, pad_id=pad_id)
    dev = resolve_device(device)
    return torch.from_numpy(ids).to(dev), torch.from_numpy(mask).to(dev)


def encode_texts(
    tower: TextTower,
    tokenizer: Tokenizer,
    texts: Sequence[str],
    batch_size: int = 64,
    device: str | torch.device = "cpu",
    pad_id: int = 0,
) -> tuple[torch.Tensor, ...]:
    """Encode texts without gradients: `(text_embedding [n, H], item_vector [n, d])` float32 on CPU, in
    the order of `texts` (a module with other outputs: each of them, [n, width]).

    Texts are batched in order of token length so each batch pads to a similar length (MovieLens texts
    range from ~10 to the max_length; sorting roughly halves the padded work). The tower's train/eval
    mode is restored afterwards.
    """
    if isinstance(texts, str):
        raise ExportError("encode_texts expects a sequence of texts, got a single string")
    if batch_size <= 0:
        raise ExportError(f"batch_size must be positive, got {batch_size}")
    dev = resolve_device(device)
    n = len(texts)
    if n == 0:
        return torch.zeros(0, tower.text_dim), torch.zeros(0, tower.item_dim)
    lengths = np.array([len(e.ids) for e in tokenizer.encode_batch(list(texts))])
    order = np.argsort(-lengths, kind="stable")
    outs: list[torch.Tensor] = []
    was_training = tower.training
    tower.eval()
    try:
        with torch.no_grad():
            for start in range(0, n, batch_size):
                rows = order[start : start + batch_size]
                ids, mask = tokenize_to_tensors(tokenizer, [texts[i] for i in rows], pad_id, dev)
                parts = tower(ids, mask)
                if not outs:
                    outs = [torch.empty(n, p.shape[1]) for p in parts]
                index = torch.from_numpy(rows)
                for out, part in zip(outs, parts):
                    out[index] = part.float().cpu()
    finally:
        tower.train(was_training)
    return tuple(outs)


__all__ = ["encode_texts", "tokenize_to_tensors"]
