"""The text tower: BERT-family encoder -> mean pooling -> L2 norm -> linear item projection.

`text_embedding` (unit length) serves text search; `item_vector` places an item in the retrieval space
from its text alone, which is what lets a cold or newly added item be recommended. The pipeline trains
the tower (LoRA by default, so only ~1% of the weights move and the pretrained semantics survive), then
`prepare_for_export` merges LoRA into plain weights and switches to eager attention, the form the ONNX
exporter and the ONNX Runtime BERT optimiser understand.
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn
from torch.nn import functional as F

from recengine.errors import DeviceError, ExportError

from .source import EncoderSource, quiet_transformers

FinetuneMode = Literal["lora", "full", "none"]
FINETUNE_MODES: tuple[str, ...] = ("lora", "full", "none")

# LoRA target modules per architecture (attention projections: where LoRA helps most per parameter).
_LORA_TARGETS = {
    "distilbert": ("q_lin", "k_lin", "v_lin"),
}
_DEFAULT_LORA_TARGETS = ("query", "key", "value")


@dataclass(frozen=True)
class TextTowerConfig:
    """How the tower is built and which of its weights train.

    finetune: "lora" (peft adapters on the attention projections + the projection), "full" (the last
    `full_last_layers` transformer layers + the projection), "none" (frozen encoder, projection only).
    """

    item_dim: int = 64
    finetune: FinetuneMode = "lora"
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    lora_targets: tuple[str, ...] | None = None  # None: per-architecture default
    full_last_layers: int = 2
    normalize_item_vector: bool = False
    seed: int = 0

    def validate(self) -> None:
        if self.finetune not in FINETUNE_MODES:
            raise ExportError(f"finetune must be one of {', '.join(FINETUNE_MODES)}, got {self.finetune!r}")
        if self.item_dim <= 0:
            raise ExportError(f"item_dim must be positive, got {self.item_dim}")
        if self.finetune == "lora" and (self.lora_r <= 0 or self.lora_alpha <= 0):
            raise ExportError(f"lora_r and lora_alpha must be positive, got {self.lora_r}, {self.lora_alpha}")
        if not 0.0 <= self.lora_dropout < 1.0:
            raise ExportError(f"lora_dropout must be in [0, 1), got {self.lora_dropout}")
        if self.finetune == "full" and self.full_last_layers <= 0:
            raise ExportError(f"full_last_layers must be positive, got {self.full_last_layers}")


def resolve_device(device: str | torch.device) -> torch.device:
    """A torch device, refusing CUDA when it is not really available (no silent CPU fallback)."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise DeviceError(f"unknown device {device!r}: use 'cpu' or 'cuda'") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError(f"device {device!r} requested but torch sees no CUDA GPU")
    if dev.type not in {"cpu", "cuda"}:
        raise DeviceError(f"unsupported device {device!r}: use 'cpu' or 'cuda'")
    return dev


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Average of the token states where the mask is 1 (padding ignored)."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    summed = (hidden * mask).sum(dim=1)
    count = mask.sum(dim=1).clamp(min=1e-9)
    return summed / count


class TextTower(nn.Module):
    """Encoder + pooling + normalisation + projection; `forward(input_ids, attention_mask)` returns
    `(text_embedding [B, H], item_vector [B, item_dim])`, exactly the ONNX encoder's outputs."""

    def __init__(
        self,
        backbone: nn.Module,
        text_dim: int,
        item_dim: int,
        *,
        model_type: str = "bert",
        normalize_item_vector: bool = False,
        finetune: str = "none",
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.projection = nn.Linear(text_dim, item_dim, bias=False)
        self.text_dim = text_dim
        self.item_dim = item_dim
        self.model_type = model_type
        self.normalize_item_vector = normalize_item_vector
        self.finetune = finetune
        self.pretrained_layers: nn.ModuleList | None = None
        """`finetune="full"`: frozen copies of the layers that train, as loaded (the split export's search
        encoder needs the pre-trained weights; LoRA keeps them under its adapters)."""
        # DistilBERT has no token types; every other BERT-family model gets explicit zeros so the exported
        # graph has the EmbedLayerNormalization pattern the ORT optimiser fuses.
        self._token_types = model_type != "distilbert"

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if self._token_types:
            kwargs["token_type_ids"] = torch.zeros_like(input_ids)
        hidden = self.backbone(**kwargs).last_hidden_state
        text = F.normalize(mean_pool(hidden, attention_mask), p=2.0, dim=-1)
        item = self.projection(text)
        if self.normalize_item_vector:
            item = F.normalize(item, p=2.0, dim=-1)
        return text, item

    @property
    def is_lora(self) -> bool:
        """Whether the backbone still carries unmerged peft LoRA adapters."""
        return hasattr(self.backbone, "merge_and_unload")

    def trainable_parameters(self) -> list[nn.Parameter]:
        """The parameters the configured finetune mode trains (projection always included)."""
        return [p for p in self.parameters() if p.requires_grad]

    def param_groups(self, encoder_lr: float, head_lr: float) -> list[dict[str, object]]:
        """Optimizer parameter groups: encoder weights (LoRA or last layers) and the projection head,
        so the pretrained encoder can move more slowly than the freshly initialised projection."""
        head = [p for p in self.projection.parameters() if p.requires_grad]
        head_ids = {id(p) for p in head}
        encoder = [p for p in self.parameters() if p.requires_grad and id(p) not in head_ids]
        groups: list[dict[str, object]] = [{"params": head, "lr": head_lr, "name": "projection"}]
        if encoder:
            groups.insert(0, {"params": encoder, "lr": encoder_lr, "name": "encoder"})
        return groups


def _layer_list(backbone: nn.Module) -> nn.ModuleList:
    for path in ("encoder.layer", "transformer.layer"):
        node: object = backbone
        for part in path.split("."):
            node = getattr(node, part, None)
            if node is None:
                break
        if isinstance(node, nn.ModuleList):
            return node
    raise ExportError(f"cannot find the transformer layers of {type(backbone).__name__} for finetune='full'")


def build_text_tower(
    source: EncoderSource, config: TextTowerConfig | None = None, device: str | torch.device = "cpu"
) -> TextTower:
    """Load the encoder from its local directory (never the hub) and wrap it for the finetune mode.

    Training uses SDPA attention (fast); `prepare_for_export` switches to eager attention for ONNX.
    The projection (and LoRA adapters) are initialised from `config.seed`.
    """
    from transformers import AutoModel

    cfg = config or TextTowerConfig()
    cfg.validate()
    dev = resolve_device(device)
    try:
        with quiet_transformers():
            backbone = AutoModel.from_pretrained(
                str(source.path), local_files_only=True, attn_implementation="sdpa"
            )
    except Exception as exc:  # transformers raises many types for a broken directory
        raise ExportError(f"cannot load encoder weights from {source.path}: {exc}") from exc
    backbone.config.use_cache = False

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        tower = TextTower(
            backbone,
            text_dim=source.hidden_size,
            item_dim=cfg.item_dim,
            model_type=source.model_type,
            normalize_item_vector=cfg.normalize_item_vector,
            finetune=cfg.finetune,
        )
        generator = torch.Generator().manual_seed(cfg.seed)
        nn.init.orthogonal_(tower.projection.weight, generator=generator)
        _apply_finetune_mode(tower, cfg, source.model_type)
    return tower.to(dev)


def _apply_finetune_mode(tower: TextTower, cfg: TextTowerConfig, model_type: str) -> None:
    backbone = tower.backbone
    for p in backbone.parameters():
        p.requires_grad_(False)
    if cfg.finetune == "lora":
        from peft import LoraConfig, get_peft_model

        targets = cfg.lora_targets or _LORA_TARGETS.get(model_type, _DEFAULT_LORA_TARGETS)
        lora = LoraConfig(
            r=cfg.lora_r,
            lora_alpha=cfg.lora_alpha,
            lora_dropout=cfg.lora_dropout,
            target_modules=list(targets),
            bias="none",
        )
        try:
            with warnings.catch_warnings():
                # peft probes a deprecated transformers attribute; nothing the user can act on.
                warnings.simplefilter("ignore", FutureWarning)
                tower.backbone = get_peft_model(backbone, lora)
        except ValueError as exc:
            raise ExportError(f"LoRA targets {list(targets)} do not match modules of the encoder: {exc}") from exc
    elif cfg.finetune == "full":
        layers = _layer_list(backbone)
        n = min(cfg.full_last_layers, len(layers))
        tower.pretrained_layers = nn.ModuleList(copy.deepcopy(layer) for layer in list(layers)[-n:])
        for layer in list(layers)[-n:]:
            for p in layer.parameters():
                p.requires_grad_(True)
    for p in tower.projection.parameters():
        p.requires_grad_(True)


def prepare_for_export(tower: TextTower) -> TextTower:
    """A copy of the tower ready for ONNX: LoRA merged into plain weights, eager attention, eval mode,
    on the CPU-or-GPU device it was on. The trained tower is left untouched."""
    exported = copy.deepcopy(tower)
    if exported.is_lora:
        exported.backbone = exported.backbone.merge_and_unload()
    exported.backbone.set_attn_implementation("eager")
    exported.finetune = "merged" if tower.is_lora else tower.finetune
    exported.eval()
    for p in exported.parameters():
        p.requires_grad_(False)
    return exported


__all__ = [
    "FINETUNE_MODES",
    "FinetuneMode",
    "TextTower",
    "TextTowerConfig",
    "build_text_tower",
    "mean_pool",
    "prepare_for_export",
    "resolve_device",
]
