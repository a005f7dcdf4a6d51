"""Gated item vectors: v_i = s * t_i + gate_i * g_i, with t_i the text tower's vector and g_i a graph/ID vector.

gate_i = sigmoid(w . [log1p(pop_i), 1]) is learned, so popular items lean on their collaborative vector and
long-tail items on their text. Items with no training interactions have no g_i: v_i = t_i, which is also
what a cold or newly added item gets at serving time. DropoutNet-style item dropout (replace v_i by t_i for a
random share of items in each batch) keeps text-only vectors usable in the same space.

s is one learned scale of the text part. Since g_i is free for every warm item, s changes what warm items can
express not at all; what it sets is how a text-only vector (a cold item, or a warm one dropped out) scores
against full vectors, trained through item dropout. Measured on ML-small: validation NDCG@10 0.0492 -> 0.0571
with it; it did not, however, lift cold items into users' top 20 (cold Recall@20 stayed 0: text-only scores
remain about 10x below warm ones: `recengine.export.cold_start` now gives cold items their vectors). After
training it is folded into the text tower's projection (`fold_text_scale`), so the exported encoder's
`item_vector` is s * t and the bundle needs no extra field.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

WARM_MEDIA = False
"""Whether `fit` gives warm items a learned projection of the data set's media vectors (`media` below).
Off: measured and not kept (`python -m tests.export.media_measure`, quick profile, tiny encoder, seeds
0-2, retrieval NDCG@10 without fusion; docs/export.md "Multimodal item vectors"): validation mean no/yes
0.4003/0.3940 on the toy whose media vectors encode the item's kind (warm items' graph vectors already
know it), 0.0355/0.0357 on ml_tiny with noise vectors and 0.0396/0.0463 with genre vectors, whose test
NDCG@10 then fell 0.0395 -> 0.0258 (the validation gain did not hold). Media vectors reach cold and
newly added items through the cold generator (export/cold_start.py), where the text alone falls short."""


class ItemVectors(nn.Module):
    def __init__(self, text_vectors: np.ndarray, graph_init: np.ndarray, popularity: np.ndarray,
                 media: np.ndarray | None = None) -> None:
        """`media`: the data set's `item_vectors.npy` (float [n, d_media]) or None. Given, every item vector
        gains P m~ (m~ standardised per dimension, P learned, zero at the start), in the content part that
        item dropout keeps."""
        super().__init__()
        # copies: the module must never write through to the caller's arrays
        t = torch.from_numpy(np.array(text_vectors, dtype=np.float32, copy=True))
        g = torch.from_numpy(np.array(graph_init, dtype=np.float32, copy=True))
        has_graph = torch.from_numpy(popularity > 0)
        # bring the graph vectors to the text vectors' scale so neither part dominates at the start
        t_norm = t.norm(dim=1).mean().clamp_min(1e-6)
        g_norm = g[has_graph].norm(dim=1).mean().clamp_min(1e-6) if bool(has_graph.any()) else t_norm
        self.register_buffer("text", t)
        self.register_buffer("has_graph", has_graph.float())
        self.register_buffer("log_pop", torch.from_numpy(np.log1p(popularity).astype(np.float32)))
        self.graph = nn.Parameter(g * (t_norm / g_norm) * has_graph.float().unsqueeze(1))
        self.gate_w = nn.Parameter(torch.tensor([0.5, 0.0]))
        self.log_text_scale = nn.Parameter(torch.zeros(()))
        self.media_proj: nn.Linear | None = None
        if media is not None:
            m = np.asarray(media, dtype=np.float64)
            std = m.std(axis=0)
            m = (m - m.mean(axis=0)) / np.where(std > 1e-6, std, 1.0)
            self.register_buffer("media", torch.from_numpy(m.astype(np.float32)))
            self.media_proj = nn.Linear(m.shape[1], t.shape[1], bias=False)
            nn.init.zeros_(self.media_proj.weight)

    def text_scale(self) -> float:
        return float(self.log_text_scale.detach().exp())

    def gate(self) -> torch.Tensor:
        """Per-item weight of the graph part (0 for items without training interactions)."""
        return torch.sigmoid(self.gate_w[0] * self.log_pop + self.gate_w[1]) * self.has_graph

    def forward(self, item_dropout: float = 0.0, generator: torch.Generator | None = None) -> torch.Tensor:
        """All item vectors [n, d]; with `item_dropout` > 0 a random share of them is text-only."""
        gate = self.gate()
        keep = self.dropout_keep(item_dropout, generator)
        if keep is not None:
            gate = gate * keep
        return self.content() + self.graph * gate.unsqueeze(1)

    def dropout_keep(self, item_dropout: float, generator: torch.Generator | None = None) -> torch.Tensor | None:
        """Item dropout's mask for one batch: float [n], 0 where the item is text-only (None when
        `item_dropout` is 0). One draw of n uniforms from `generator`, the draw `forward` makes."""
        if item_dropout <= 0:
            return None
        return (torch.rand(self.log_pop.shape, generator=generator) >= item_dropout).to(self.log_pop)

    def rows(self, index: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        """The vectors of the items at `index` (int64, any shape) -> [*index.shape, d]; `keep` is a
        `dropout_keep` mask (None: no dropout). Equal to `forward()[index]` with that mask, at the cost of the
        rows asked for instead of the whole catalogue (the sampled-softmax user tower needs a batch's history
        items, targets and negatives only; computing every row per batch made its cost items x batches)."""
        gate = torch.sigmoid(self.gate_w[0] * self.log_pop[index] + self.gate_w[1]) * self.has_graph[index]
        if keep is not None:
            gate = gate * keep[index]
        out = self.text[index] * self.log_text_scale.exp()
        if self.media_proj is not None:
            out = out + self.media_proj(self.media[index])
        return out + self.graph[index] * gate.unsqueeze(-1)

    def content(self) -> torch.Tensor:
        """The part every item has without interactions: s * t (+ P m~ with media)."""
        out = self.text * self.log_text_scale.exp()
        if self.media_proj is not None:
            out = out + self.media_proj(self.media)
        return out

    def export_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(vectors, graph part, gate) as numpy float32, in eval form (no dropout)."""
        with torch.no_grad():
            gate = self.gate()
            vectors = self.content() + self.graph * gate.unsqueeze(1)
        return (vectors.cpu().numpy().astype(np.float32), (self.graph * self.has_graph.unsqueeze(1)).detach().cpu()
                .numpy().astype(np.float32), gate.cpu().numpy().astype(np.float32))
