"""The text tower of recengine: load a BERT-family encoder (default all-MiniLM-L6-v2), fine-tune it
(LoRA / last layers / none), encode item texts, and export it to ONNX with pooling, normalisation and
the item projection inside the graph.

Public API (stable; the pipeline builds on it):
- `resolve_encoder(dir|None) -> EncoderSource`: validated local HF directory (None = packaged MiniLM).
- `load_tokenizer(source, max_length) -> (Tokenizer, TokenizerInfo)`; `save_tokenizer`; `tokenize_batch`.
- `TextTowerConfig`, `build_text_tower(source, config, device) -> TextTower`;
  `tower.trainable_parameters()`, `tower.param_groups(encoder_lr, head_lr)`; `prepare_for_export(tower)`.
- `encode_texts(tower, tokenizer, texts, batch_size, device) -> (text_emb, item_vec)`.
- `encoder_onnx_spec(...)`, `export_encoder(...) -> EncoderExport` (the encoder's and, split, the item head's
  `VariantReport`; see `onnx_export.py` and `split.py`).
"""

from .encode import encode_texts, tokenize_to_tensors
from .onnx_export import ENCODER_NAME, encoder_onnx_spec, export_encoder, text_batches
from .source import BERT_FAMILY, EncoderSource, default_encoder_dir, read_model_card_licence, resolve_encoder
from .tokenizer import TokenizerInfo, load_tokenizer, save_tokenizer, tokenize_batch
from .tower import (
    FINETUNE_MODES,
    FinetuneMode,
    TextTower,
    TextTowerConfig,
    build_text_tower,
    mean_pool,
    prepare_for_export,
    resolve_device,
)

__all__ = [
    "ENCODER_NAME",
    "encoder_onnx_spec",
    "export_encoder",
    "text_batches",
    "BERT_FAMILY",
    "EncoderSource",
    "FINETUNE_MODES",
    "FinetuneMode",
    "TextTower",
    "TextTowerConfig",
    "TokenizerInfo",
    "build_text_tower",
    "default_encoder_dir",
    "encode_texts",
    "load_tokenizer",
    "mean_pool",
    "prepare_for_export",
    "read_model_card_licence",
    "resolve_device",
    "resolve_encoder",
    "save_tokenizer",
    "tokenize_batch",
    "tokenize_to_tensors",
]
