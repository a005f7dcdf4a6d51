"""The bundle tokenizer: `tokenizer.json` with truncation at `max_length` and no padding.

Hugging Face's all-MiniLM tokenizer.json pads every text to 128 tokens; MovieLens item texts are ~30
tokens, so fixed padding makes the encoder ~4x slower. The bundle's tokenizer therefore never pads: the
caller pads a batch to its longest text (`tokenize_batch` here, the runtime's own code at serve time).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from recengine.errors import ExportError

from .source import EncoderSource

if TYPE_CHECKING:
    from tokenizers import Tokenizer


@dataclass(frozen=True)
class TokenizerInfo:
    """What the manifest's `tokenizer` section records."""

    max_length: int
    lowercase: bool
    pad_id: int

    def manifest(self, path: str = "tokenizer.json") -> dict[str, object]:
        return {"path": path, "max_length": self.max_length, "lowercase": self.lowercase}


def load_tokenizer(source: EncoderSource, max_length: int = 64) -> tuple[Tokenizer, TokenizerInfo]:
    """The encoder's fast tokenizer, set to truncate at `max_length` and never pad.

    `max_length` is capped by the model's `max_position_embeddings`. A directory with only vocab.txt gets
    a standard BERT WordPiece tokenizer built from it.
    """
    from tokenizers import Tokenizer

    if max_length < 2:
        raise ExportError(f"tokenizer max_length must be >= 2 ([CLS] and [SEP]), got {max_length}")
    max_length = min(int(max_length), source.max_position_embeddings)
    if source.tokenizer_json is not None:
        try:
            tokenizer = Tokenizer.from_file(str(source.tokenizer_json))
        except Exception as exc:  # tokenizers raises a bare Exception on a bad file
            raise ExportError(f"cannot load {source.tokenizer_json}: {exc}") from exc
    else:
        from tokenizers import BertWordPieceTokenizer

        assert source.vocab_txt is not None
        tokenizer = BertWordPieceTokenizer(str(source.vocab_txt), lowercase=source.lowercase)._tokenizer
    tokenizer.enable_truncation(max_length=max_length)
    tokenizer.no_padding()
    pad_id = _pad_id(tokenizer)
    return tokenizer, TokenizerInfo(max_length=max_length, lowercase=source.lowercase, pad_id=pad_id)


def _pad_id(tokenizer: Tokenizer) -> int:
    for token in ("[PAD]", "<pad>"):
        token_id = tokenizer.token_to_id(token)
        if token_id is not None:
            return int(token_id)
    return 0


def save_tokenizer(tokenizer: Tokenizer, path: str | Path) -> Path:
    """Write the (truncating, non-padding) tokenizer as tokenizer.json for the bundle."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(out))
    return out


def tokenize_batch(
    tokenizer: Tokenizer, texts: Sequence[str], pad_id: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """`input_ids` and `attention_mask` (int64 [B, T]) padded to the batch's longest text."""
    if isinstance(texts, str):
        raise ExportError("tokenize_batch expects a sequence of texts, got a single string")
    encodings = tokenizer.encode_batch(list(texts))
    width = max((len(e.ids) for e in encodings), default=0)
    ids = np.full((len(encodings), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(encodings), width), dtype=np.int64)
    for row, enc in enumerate(encodings):
        n = len(enc.ids)
        ids[row, :n] = enc.ids
        mask[row, :n] = 1
    return ids, mask


__all__ = ["TokenizerInfo", "load_tokenizer", "save_tokenizer", "tokenize_batch"]
