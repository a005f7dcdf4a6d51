"""Text alignment: fine-tune the text tower so an item's text lands next to its graph embedding.

A symmetric InfoNCE loss (in-batch negatives) pulls the projected text vector P(enc(text_i)) towards the
LightGCN embedding g_i of the same item. After this stage an item with no interactions still gets a vector
in the collaborative space from its text alone. With `finetune="none"` the encoder is frozen, its
embeddings are computed once and only the projection trains (the `frozen_text` ablation).
"""

from __future__ import annotations

import copy
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from recengine.errors import ExportError
from recengine.progress import Progress

from .config import EncoderConfig


@dataclass
class TextResult:
    """The trained text tower and the catalogue encoded with it."""

    tower: Any
    tokenizer: Any
    tokenizer_info: Any
    source: Any
    text_embeddings: np.ndarray
    text_vectors: np.ndarray
    align_loss: float
    """InfoNCE of the last alignment batch."""
    anchor_drift: float = float("nan")
    """Cosine distance of the last batch's text embeddings from the untouched encoder's (with `anchor` > 0)."""
    search_embeddings: np.ndarray | None = None
    """The catalogue in the search space (`items.text_embeddings`): the pre-trained encoder's embeddings where
    fine-tuning moved the encoder (`encoder.split`), else None (= `text_embeddings`, which are then the
    pre-trained ones or, unsplit, the fine-tuned ones). `text_embeddings` stay the fine-tuned tower's: the
    cold-item generator reads them."""

    @property
    def search_space(self) -> np.ndarray:
        """What `search` ranks items by: `search_embeddings`, else `text_embeddings`."""
        return self.text_embeddings if self.search_embeddings is None else self.search_embeddings


def resolve_source(cfg: EncoderConfig, workdir: Path | None, seed: int) -> Any:
    """The encoder directory: the tiny test BERT (built in `workdir`), `cfg.path`, or packaged MiniLM."""
    from .encoder import resolve_encoder

    if cfg.tiny and cfg.path is None:
        from .tiny_encoder import build_tiny_encoder

        base = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="recengine-tiny-"))
        return resolve_encoder(build_tiny_encoder(base / "tiny-bert", seed=0))
    return resolve_encoder(cfg.path)


def lora_targets(source: Any, last_layers: int) -> tuple[str, ...] | None:
    """LoRA target module names restricted to the last `last_layers` layers (None = the tower's default:
    every layer). Names are matched by suffix, e.g. `layer.5.attention.self.query`."""
    if last_layers <= 0 or last_layers >= source.num_layers:
        return None
    layers = range(source.num_layers - last_layers, source.num_layers)
    if source.model_type == "distilbert":
        return tuple(f"layer.{i}.attention.{k}" for i in layers for k in ("q_lin", "k_lin", "v_lin"))
    return tuple(f"layer.{i}.attention.self.{k}" for i in layers for k in ("query", "key", "value"))


def info_nce(a: torch.Tensor, b: torch.Tensor, temperature: float) -> torch.Tensor:
    """Symmetric InfoNCE between matching rows of `a` and `b` (cosine similarity / temperature)."""
    logits = F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T / temperature
    labels = torch.arange(len(a), device=a.device)
    return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels))


ENCODE_CHUNK = 8192
"""Catalogue texts tokenised and encoded per chunk by `encode_catalogue`."""


def encode_catalogue(tower: Any, tokenizer: Any, texts: list[str], batch_size: int, device: torch.device,
                     pad_id: int, progress: Progress, chunk: int = ENCODE_CHUNK) -> tuple[np.ndarray, ...]:
    """Every catalogue text through the tower in chunks of `chunk` texts, with a progress bar: each of the
    tower's outputs as float32 [n, width] in the order of `texts` (the text tower: text embeddings [n, H] and
    item vectors [n, d]; `SplitCatalogue`: search embeddings, fine-tuned embeddings, item vectors).

    Why chunks: `encode_texts` tokenises all its texts at once to batch them by length, and those tokenizer
    encodings take about 12 KiB per text (measured: 50k texts of 56 tokens, MiniLM tokenizer), 12 GB for a 1M
    catalogue; per chunk only the outputs, which the bundle stores anyway, grow with the catalogue. Within a
    chunk, texts are still batched by length.
    """
    from .encoder import encode_texts

    n = len(texts)
    outs: list[np.ndarray] = []
    bar = progress.bar(range(0, n, chunk), "encode catalogue", total=(n + chunk - 1) // chunk)
    for start in bar:
        parts = encode_texts(tower, tokenizer, texts[start:start + chunk], batch_size=batch_size, device=device,
                             pad_id=pad_id)
        if not outs:
            outs = [np.empty((n, p.shape[1]), np.float32) for p in parts]
        for out, part in zip(outs, parts):
            out[start:start + len(part)] = part.numpy()
        bar.set_postfix(texts=min(n, start + chunk))
    if not outs:
        widths = getattr(tower, "output_dims", (tower.text_dim, tower.item_dim))
        return tuple(np.zeros((0, w), np.float32) for w in widths)
    return tuple(outs)


class SplitCatalogue(torch.nn.Module):
    """A split tower (`encoder.split`) as one module with the three outputs the catalogue needs: the search
    embedding, the fine-tuned text embedding (the cold generator's input) and the item vector, in one pass
    (the fine-tuned layers run on the search encoder's hidden states)."""

    def __init__(self, split: Any) -> None:
        super().__init__()
        self.split = split
        self.text_dim, self.item_dim = split.text_dim, split.item_dim
        self.output_dims = (split.text_dim, split.text_dim, split.item_dim)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.split.encode_all(input_ids, attention_mask)


def anchor_distance(text: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Mean cosine distance between matching rows of two L2-normalised embedding batches (the anchor term)."""
    return (1.0 - (text * reference).sum(dim=-1)).mean()


def train_text_tower(texts: list[str], graph_items: np.ndarray, popularity: np.ndarray, item_dim: int,
                     cfg: EncoderConfig, finetune: str, seed: int, device: torch.device, progress: Progress,
                     workdir: Path | None = None, source: Any = None) -> TextResult:
    """Build the tower, align it to `graph_items` with InfoNCE, and encode every item text."""
    from .encoder import TextTowerConfig, build_text_tower, load_tokenizer, tokenize_to_tensors

    source = source or resolve_source(cfg, workdir, seed)
    tokenizer, tok_info = load_tokenizer(source, max_length=cfg.max_length)
    tower = build_text_tower(source, TextTowerConfig(item_dim=item_dim, finetune=finetune, lora_r=cfg.lora_r,
                                                     lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                                                     lora_targets=lora_targets(source, cfg.lora_layers),
                                                     full_last_layers=cfg.full_layers, seed=seed), device)
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    candidates = np.flatnonzero(popularity > 0)
    if len(candidates) < 2:
        raise ExportError(f"text alignment needs at least 2 items with training interactions, got {len(candidates)}")
    targets = torch.from_numpy(graph_items.astype(np.float32)).to(device)
    weights = np.sqrt(popularity[candidates].astype(np.float64))
    weights /= weights.sum()
    per_epoch = min(len(candidates), cfg.max_align_items)
    last_loss = last_drift = float("nan")

    if finetune == "none":
        # frozen encoder: encode once, then train the projection on the cached embeddings (cheap)
        text_emb, _ = encode_catalogue(tower, tokenizer, texts, cfg.encode_batch_size, device, tok_info.pad_id,
                                       progress)[:2]
        cached = torch.from_numpy(text_emb).to(device)
        opt = torch.optim.AdamW(tower.projection.parameters(), lr=cfg.lr)
        steps = max(1, cfg.epochs) * 10  # a linear head on cached inputs: many cheap passes
        bar = progress.bar(range(steps), "text align (frozen)")
        for _ in bar:
            order = rng.choice(candidates, size=per_epoch, replace=False, p=weights)
            for start in range(0, len(order), cfg.batch_size):
                rows = torch.from_numpy(order[start:start + cfg.batch_size]).to(device)
                if len(rows) < 2:
                    continue
                loss = info_nce(tower.projection(cached[rows]), targets[rows], cfg.temperature)
                opt.zero_grad()
                loss.backward()
                opt.step()
                last_loss = float(loss.detach())
            bar.set_postfix(infonce=f"{last_loss:.4f}")
    else:
        # the untouched encoder, for the anchor: a copy taken before any step (LoRA's B starts at zero, so the
        # copy's output is the pre-trained model's); it never trains and runs without autograd
        reference = copy.deepcopy(tower).eval() if cfg.anchor > 0 else None
        groups = tower.param_groups(encoder_lr=cfg.lr if finetune == "lora" else cfg.encoder_lr, head_lr=cfg.lr)
        opt = torch.optim.AdamW(groups)
        tower.train()
        for epoch in range(max(0, cfg.epochs)):
            order = rng.choice(candidates, size=per_epoch, replace=False, p=weights)
            n_batches = (len(order) + cfg.batch_size - 1) // cfg.batch_size
            bar = progress.bar(range(n_batches), f"text align {epoch + 1}/{cfg.epochs} ({finetune})")
            for b in bar:
                rows = order[b * cfg.batch_size:(b + 1) * cfg.batch_size]
                if len(rows) < 2:
                    continue
                ids, mask = tokenize_to_tensors(tokenizer, [texts[i] for i in rows], tok_info.pad_id, device)
                text, item = tower(ids, mask)
                loss = info_nce(item, targets[torch.from_numpy(rows).to(device)], cfg.temperature)
                last_loss = float(loss.detach())
                if reference is not None:
                    with torch.no_grad():
                        frozen, _ = reference(ids, mask)
                    drift = anchor_distance(text, frozen)
                    last_drift = float(drift.detach())
                    loss = loss + cfg.anchor * drift
                opt.zero_grad()
                loss.backward()
                opt.step()
                shown = {"infonce": f"{last_loss:.4f}"}
                if reference is not None:  # no anchor: no drift to show (it would read nan)
                    shown["drift"] = f"{last_drift:.4f}"
                bar.set_postfix(**shown)
    reference = None
    tower.eval()
    from .encoder.split import split_tower

    split = split_tower(tower, eager=False) if cfg.split else None
    search_emb = None
    if split is None:
        text_emb, item_vec = encode_catalogue(tower, tokenizer, texts, cfg.encode_batch_size, device,
                                              tok_info.pad_id, progress)
    else:
        search_emb, text_emb, item_vec = encode_catalogue(SplitCatalogue(split), tokenizer, texts,
                                                          cfg.encode_batch_size, device, tok_info.pad_id, progress)
    return TextResult(tower=tower, tokenizer=tokenizer, tokenizer_info=tok_info, source=source,
                      text_embeddings=text_emb, text_vectors=item_vec, align_loss=last_loss,
                      anchor_drift=last_drift, search_embeddings=search_emb)
