"""The exported text tower split in two: the untouched encoder for search, an item head for item vectors.

Why: fine-tuning pulls the encoder towards the interaction graph, which is what places a cold item near
the items its likely users interacted with, but it moves `text_embedding` (the search space) with it: on
plot descriptions the fine-tuned space found the film meant 2 times in 10 against the untouched
all-MiniLM-L6-v2's 8 (bench/results/2026-11-30-search-descriptive-cpu-2core). LoRA (and `finetune="full"`)
changes only the last layers, so the layers below them are the pre-trained model's exactly. The split:

- **search encoder** (`models.encoder`): the pre-trained encoder, untouched. Outputs `text_embedding` (mean
  pooling + L2 norm of its last layer: the sentence-transformers embedding) and `item_states`, the hidden
  states entering the first fine-tuned layer, which the graph computes anyway.
- **item head** (`models.item_head`): the fine-tuned layers from there on + pooling + normalisation + the item
  projection: `(item_states, attention_mask) -> item_vector`.

A search query runs the search encoder only, so it costs what an unsplit encoder costs; an item to be stored
runs both, i.e. the fine-tuned layers twice (MiniLM, LoRA on the last 2 of 6 layers: ~1.3x the encoder's
work). The item head's `item_vector` equals the fine-tuned tower's exactly (same weights, same inputs), so
recommendation is unchanged; only the search space moves back to the pre-trained model's.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn import functional as F

from recengine.errors import ExportError

from .tower import TextTower, _layer_list, mean_pool


class _StatesIn(nn.Module):
    """Stands in for the item head's embedding layer: passes the given hidden states through, so the
    backbone's own forward builds the attention mask exactly as the full model does."""

    def forward(self, *args: object, **kwargs: object) -> torch.Tensor:
        for value in (*kwargs.values(), *args):
            if isinstance(value, torch.Tensor) and value.is_floating_point():
                return value
        raise ExportError("item head: no hidden states reached the embedding stand-in")


class SearchEncoder(nn.Module):
    """The pre-trained encoder: `(input_ids, attention_mask) -> (text_embedding, item_states)`."""

    def __init__(self, backbone: nn.Module, start: int, model_type: str) -> None:
        super().__init__()
        self.backbone = backbone
        self.start = start
        self._token_types = model_type != "distilbert"

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        kwargs = {"input_ids": input_ids, "attention_mask": attention_mask, "output_hidden_states": True}
        if self._token_types:
            kwargs["token_type_ids"] = torch.zeros_like(input_ids)
        out = self.backbone(**kwargs)
        text = F.normalize(mean_pool(out.last_hidden_state, attention_mask), p=2.0, dim=-1)
        return text, out.hidden_states[self.start]


class ItemHead(nn.Module):
    """The fine-tuned layers from `start` on, pooling, normalisation and the item projection:
    `(item_states, attention_mask) -> item_vector`. `embed` gives the fine-tuned text embedding itself
    (what the cold-item generator reads)."""

    def __init__(self, tail: nn.Module, projection: nn.Module, normalize_item_vector: bool) -> None:
        super().__init__()
        self.tail = tail
        self.projection = projection
        self.normalize_item_vector = normalize_item_vector

    def embed(self, item_states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.tail(inputs_embeds=item_states, attention_mask=attention_mask).last_hidden_state
        return F.normalize(mean_pool(hidden, attention_mask), p=2.0, dim=-1)

    def forward(self, item_states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        item = self.projection(self.embed(item_states, attention_mask))
        if self.normalize_item_vector:
            item = F.normalize(item, p=2.0, dim=-1)
        return item


class SplitTextTower(nn.Module):
    """Search encoder + item head; `forward` gives the exported pair `(text_embedding, item_vector)`, with
    `text_embedding` from the pre-trained encoder."""

    def __init__(self, search: SearchEncoder, head: ItemHead, text_dim: int, item_dim: int) -> None:
        super().__init__()
        self.search = search
        self.head = head
        self.text_dim = text_dim
        self.item_dim = item_dim

    @property
    def start(self) -> int:
        """Index of the first fine-tuned layer (where the item head takes over)."""
        return self.search.start

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        text, states = self.search(input_ids, attention_mask)
        return text, self.head(states, attention_mask)

    def encode_all(self, input_ids: torch.Tensor, attention_mask: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(search text embedding, fine-tuned text embedding, item vector) in one pass."""
        text, states = self.search(input_ids, attention_mask)
        tuned = self.head.embed(states, attention_mask)
        item = self.head.projection(tuned)
        if self.head.normalize_item_vector:
            item = F.normalize(item, p=2.0, dim=-1)
        return text, tuned, item


def _pretrained_backbone(tower: TextTower) -> nn.Module:
    """A copy of the tower's backbone with the pre-trained weights (LoRA adapters removed unmerged; the
    layers `finetune="full"` trained swapped back for the copies kept at build time)."""
    backbone = copy.deepcopy(tower.backbone)
    if tower.is_lora:
        return backbone.unload()
    if tower.pretrained_layers is not None:
        layers = _layer_list(backbone)
        first = len(layers) - len(tower.pretrained_layers)
        for i, layer in enumerate(tower.pretrained_layers):
            # weights only: the modules keep the backbone's config (its attention implementation included)
            layers[first + i].load_state_dict(layer.state_dict())
    return backbone


def first_changed_layer(pretrained: nn.Module, tuned: nn.Module) -> int | None:
    """Index of the first transformer layer whose weights differ between the two backbones (None: none do).
    The layers below it, and the embeddings, must be equal: they are shared."""
    a, b = _layer_list(pretrained), _layer_list(tuned)
    if len(a) != len(b):
        raise ExportError(f"split encoder: {len(a)} pre-trained layers against {len(b)} fine-tuned ones")
    for i, (la, lb) in enumerate(zip(a, b)):
        sa, sb = la.state_dict(), lb.state_dict()
        if sa.keys() != sb.keys() or any(not torch.equal(sa[k], sb[k]) for k in sa):
            return i
    return None


def encoder_moved(tower: TextTower) -> bool:
    """Whether fine-tuning changed any encoder weight (so an unsplit `text_embedding` is not the pre-trained one)."""
    if tower.finetune in ("none", "merged"):
        return False
    from .tower import prepare_for_export

    return first_changed_layer(_pretrained_backbone(tower), prepare_for_export(tower).backbone) is not None


def _embeddings_equal(pretrained: nn.Module, tuned: nn.Module) -> bool:
    ea, eb = pretrained.embeddings.state_dict(), tuned.embeddings.state_dict()
    return ea.keys() == eb.keys() and all(torch.equal(ea[k], eb[k]) for k in ea)


def split_tower(tower: TextTower, *, eager: bool = True) -> SplitTextTower | None:
    """The split form of a trained tower (module docstring), on the tower's device, in eval mode, without
    gradients. None when fine-tuning changed no encoder weight (`finetune="none"`, or no step taken), where
    the tower's own `text_embedding` is the pre-trained one already, and None when it changed the first layer
    (`encoder.lora_layers=0`, or at least as many as the encoder has): nothing would be shared, and the
    embedding layer's output as a graph output stops ONNX Runtime's BERT fusions, which would slow every
    query; that tower is exported unsplit. The tower is left untouched.

    `eager`: eager attention (the form the ONNX exporter and the BERT fusions understand); False keeps the
    tower's attention (faster in torch, for encoding the catalogue)."""
    from .tower import prepare_for_export

    if tower.finetune in ("none", "merged"):
        return None
    tuned = prepare_for_export(tower).backbone if eager else copy.deepcopy(tower.backbone)
    if not eager and tower.is_lora:
        tuned = tuned.merge_and_unload()
    pretrained = _pretrained_backbone(tower)
    start = first_changed_layer(pretrained, tuned)
    if start is None or start == 0:
        return None
    if not _embeddings_equal(pretrained, tuned):
        raise ExportError("split encoder: fine-tuning changed the embedding layer, which the split shares")
    if eager:
        pretrained.set_attn_implementation("eager")
    tuned.embeddings = _StatesIn()
    layers = _layer_list(tuned)
    del layers[:start]
    head = ItemHead(tuned, copy.deepcopy(tower.projection), tower.normalize_item_vector)
    out = SplitTextTower(SearchEncoder(pretrained, start, tower.model_type), head, tower.text_dim, tower.item_dim)
    out.eval()
    for p in out.parameters():
        p.requires_grad_(False)
    return out.to(next(tower.parameters()).device)


__all__ = ["ItemHead", "SearchEncoder", "SplitTextTower", "encoder_moved", "first_changed_layer", "split_tower"]
