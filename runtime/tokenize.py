"""Batch tokenisation for the ONNX encoder with the `tokenizers` library (no transformers).

The bundle's tokenizer.json carries no padding (padding every text to max_length would make a 30-token
title cost as much as a 256-token one); we pad each batch to its longest text, or - on the GPU, where a
CUDA graph is captured per shape - up to a fixed bucket length so the number of shapes stays small.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import BundleError, RequestError


def check_texts(texts: Sequence[object]) -> None:
    """Refuse anything the tokenizer cannot take, as a `RequestError` naming the text.

    Why: `tokenizers` raises a plain `TypeError` on a `str` that is not valid Unicode - a lone surrogate
    such as "\\ud800", which Python strings may hold (e.g. from `surrogateescape`-decoded bytes or a JSON
    `"\\ud800"` escape) but UTF-8 cannot encode. This is the one place serving-time text is tokenised, so the
    check lives here and covers `search`, `add_items` and the CLI alike.
    """
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise RequestError(f"text {i} is {type(text).__name__}, not str")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise RequestError(
                f"text {i} is not valid Unicode: {exc.reason} at character {exc.start} "
                f"({text[exc.start:exc.end].encode('utf-8', 'backslashreplace').decode('ascii')})"
            ) from None


@dataclass(frozen=True)
class TokenBatch:
    """`input_ids` and `attention_mask`, int64 [B, T], ready to feed the encoder."""

    input_ids: np.ndarray
    attention_mask: np.ndarray

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.input_ids.shape[0]), int(self.input_ids.shape[1]))


class TextTokenizer:
    """Wraps a `tokenizers.Tokenizer` with truncation at `max_length` and per-batch padding."""

    def __init__(self, path: str | Path, max_length: int, lowercase: bool = False) -> None:
        from tokenizers import Tokenizer

        try:
            tok = Tokenizer.from_file(str(path))
        except Exception as exc:  # tokenizers raises a bare Exception on malformed JSON
            raise BundleError(f"{path}: cannot load tokenizer ({exc})") from None
        if not isinstance(max_length, int) or max_length < 2:
            raise BundleError(f"tokenizer.max_length must be an integer >= 2, got {max_length!r}")
        tok.no_padding()
        tok.enable_truncation(max_length=max_length)
        self._tok = tok
        self.max_length = max_length
        self.lowercase = bool(lowercase)
        pad_id = None
        for token in ("[PAD]", "<pad>", "<PAD>"):
            pad_id = tok.token_to_id(token)
            if pad_id is not None:
                break
        self.pad_id = int(pad_id) if pad_id is not None else 0

    def encode(self, texts: Sequence[str], pad_to: int | None = None) -> TokenBatch:
        """Tokenise `texts`; pad to the longest (or to `pad_to` when given and not shorter)."""
        if isinstance(texts, str):
            raise RequestError("encode expects a list of texts, got a single string")
        if len(texts) == 0:
            raise RequestError("encode needs at least one text")
        check_texts(texts)
        # Lower-casing (manifest `lowercase`) is the tokenizer's own normaliser's job, as at export time.
        encodings = self._tok.encode_batch(list(texts))
        longest = max(len(e.ids) for e in encodings)
        width = max(longest, int(pad_to)) if pad_to else longest
        width = max(width, 1)
        ids = np.full((len(encodings), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(encodings), width), dtype=np.int64)
        for row, enc in enumerate(encodings):
            n = len(enc.ids)
            ids[row, :n] = enc.ids
            mask[row, :n] = 1
        return TokenBatch(ids, mask)

    def lengths(self, texts: Sequence[str]) -> np.ndarray:
        """Token count of each text (after truncation), for sorting texts into similar-length batches."""
        check_texts(texts)
        return np.array([len(e.ids) for e in self._tok.encode_batch(list(texts))], dtype=np.int64)
