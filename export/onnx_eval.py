"""Evaluate a written bundle's ONNX pipeline (fp32 / int8 / fp16) on a split, through ONNX Runtime only.

As served, a variant ranks the catalogue with the bundle's stored item vectors (the runtime encodes only items
added after export and text queries), user vectors from the variant's user tower and candidate scores from the
variant's fusion head: that is `metrics.validation.<variant>`. With `reencode`, item text vectors are
recomputed with the variant's encoder and the item vectors become v_i = t_i(variant) + (v_i - t_i(fp32)) (the
graph part is data, not a model): what every item would get had it been added through that encoder at serving
time (`metrics.validation_reencoded.<variant>`), the worst case of what quantising the encoder costs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from recengine.bundle import BundleReader, open_bundle
from recengine.data.schema import Dataset
from recengine.errors import BundleError, ExportError
from recengine.split import Split

from .evaluation import evaluate_queries, histories, left_padded, make_queries
from .features import Vocab
from .fusion import rerank_scores, top_candidates
from .onnx_tools import make_session, run_session


def vocab_from_manifest(spec: dict[str, Any]) -> Vocab:
    return Vocab(columns=tuple(spec.get("columns", [])), values=dict(spec.get("values", {})),
                 numeric_edges=dict(spec.get("numeric_edges", {})))


def encode_texts_onnx(session: Any, tokenizer: Any, texts: list[str], pad_id: int = 0,
                      batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """(text_embedding, item_vector) of `texts` with an ONNX encoder session (batches sorted by length)."""
    from .encoder import tokenize_batch

    lengths = np.array([len(e.ids) for e in tokenizer.encode_batch(list(texts))])
    order = np.argsort(-lengths, kind="stable")
    text_out: np.ndarray | None = None
    item_out: np.ndarray | None = None
    for start in range(0, len(texts), batch_size):
        rows = order[start:start + batch_size]
        ids, mask = tokenize_batch(tokenizer, [texts[i] for i in rows], pad_id=pad_id)
        text, item = run_session(session, {"input_ids": ids, "attention_mask": mask})
        if text_out is None:
            text_out = np.zeros((len(texts), text.shape[1]), np.float32)
            item_out = np.zeros((len(texts), item.shape[1]), np.float32)
        text_out[rows] = text
        item_out[rows] = item  # type: ignore[index]
    assert text_out is not None and item_out is not None
    return text_out, item_out


@dataclass
class BundleModels:
    """ONNX Runtime sessions of one variant plus the bundle arrays they need."""

    reader: BundleReader
    variant: str
    encoder: Any
    user_tower: Any
    fusion: Any

    @classmethod
    def load(cls, bundle: str | Path | BundleReader, variant: str, threads: int = 1) -> "BundleModels":
        reader = bundle if hasattr(bundle, "section") else open_bundle(bundle)  # reader or DirView
        models = reader.section("models")
        sessions = {}
        for name in ("encoder", "user_tower", "fusion"):
            variants = models.get(name, {}).get("variants", {})
            if variant not in variants:
                raise BundleError(f"{reader.root}: model {name} has no {variant!r} variant")
            sessions[name] = make_session(reader.path(variants[variant]["path"]), threads=threads)
        return cls(reader, variant, sessions["encoder"], sessions["user_tower"], sessions["fusion"])

    def tokenizer(self) -> tuple[Any, int]:
        from tokenizers import Tokenizer

        spec = self.reader.section("tokenizer")
        tok = Tokenizer.from_file(str(self.reader.path(spec["path"])))
        tok.enable_truncation(max_length=int(spec["max_length"]))
        tok.no_padding()
        pad = tok.token_to_id("[PAD]")
        return tok, int(spec.get("pad_id", pad if pad is not None else 0))

    def item_vectors(self, reencode: bool | np.ndarray) -> np.ndarray:
        """Retrieval vectors of this variant: the stored ones, with the texts of every item (`reencode=True`)
        or of the items at the given rows (an index array) re-encoded with this variant's encoder."""
        vectors = self.reader.load_npy(self.reader.section("items", "vectors"))
        if isinstance(reencode, (bool, np.bool_)):
            rows = np.arange(len(vectors)) if reencode else np.zeros(0, np.int64)
        else:
            rows = np.asarray(reencode, np.int64)
        if len(rows) == 0:
            return vectors
        text_fp32 = self.reader.load_npy(self.reader.section("items", "text_vectors"))
        texts = self.reader.load_json(self.reader.section("items", "texts"))
        tok, pad = self.tokenizer()
        _, text_var = encode_texts_onnx(self.encoder, tok, [texts[i] for i in rows], pad_id=pad)
        out = vectors.copy()
        out[rows] = text_var + (vectors[rows] - text_fp32[rows])
        return out.astype(np.float32)

    def user_vectors(self, item_vecs: np.ndarray, hist_rows: np.ndarray, scene: np.ndarray, profile: np.ndarray,
                     batch_size: int = 256) -> np.ndarray:
        """Run the user tower on left-padded history rows (-1 = padding)."""
        out = []
        for start in range(0, len(hist_rows), batch_size):
            rows = hist_rows[start:start + batch_size]
            mask = (rows >= 0).astype(np.float32)
            hist = item_vecs[np.maximum(rows, 0)] * mask[..., None]
            (u,) = run_session(self.user_tower, {"history": hist.astype(np.float32), "history_mask": mask,
                                                 "scene": scene[start:start + batch_size],
                                                 "profile": profile[start:start + batch_size]})
            out.append(u)
        return np.concatenate(out) if out else np.zeros((0, item_vecs.shape[1]), np.float32)

    def fuse(self, user: np.ndarray, cands: np.ndarray, item_vecs: np.ndarray, item_feats: np.ndarray,
             pop_bucket: np.ndarray, scene: np.ndarray, profile: np.ndarray) -> np.ndarray:
        (scores,) = run_session(self.fusion, {"user": user.astype(np.float32), "items": item_vecs[cands],
                                              "item_feats": item_feats[cands], "pop_bucket": pop_bucket[cands],
                                              "scene": scene, "profile": profile})
        return scores


def _check_same_data(reader: BundleReader, dataset: Dataset) -> None:
    ids = reader.load_json(reader.section("items", "ids"))
    users = reader.load_json(reader.section("users", "ids"))
    if len(ids) != dataset.n_items or len(users) != dataset.n_users or \
            any(a != b for a, b in zip(ids, map(str, dataset.items.ids))) or \
            any(a != b for a, b in zip(users, map(str, dataset.user_ids))):
        raise ExportError(f"{reader.root}: the bundle was not exported from this data set (item/user ids differ)")


def evaluate_bundle(bundle: str | Path | BundleReader, dataset: Dataset, split: Split, variant: str = "fp32",
                    stage: str = "valid", use_fusion: bool | None = None, reencode: bool = False,
                    threads: int = 1, item_vectors: np.ndarray | None = None) -> dict[str, float]:
    """Full-ranking metrics of the bundle's `variant` pipeline on `stage` of `split` (ONNX Runtime only).

    `use_fusion` None = the manifest's `models.fusion.use_by_default`. `reencode` = re-encode every item text
    with the variant's encoder instead of serving the stored vectors (see the module docstring). `dataset` must
    be the data the bundle was exported from (same item and user ids).
    """
    models = BundleModels.load(bundle, variant, threads)
    reader = models.reader
    _check_same_data(reader, dataset)
    if use_fusion is None:
        use_fusion = bool(reader.manifest.get("models", {}).get("fusion", {}).get("use_by_default", False))
    if item_vectors is None:
        item_vectors = models.item_vectors(reencode)
    scene_vocab = vocab_from_manifest(reader.section("vocab", "scene"))
    profile = reader.load_npy(reader.section("users", "profile"))
    q = make_queries(split, stage)
    held = split.valid if stage == "valid" else split.test
    scene = scene_vocab.encode(held.context, len(held))[q.scene_rows]
    indptr, indices = histories(split, stage)
    max_len = int(reader.section("dims", "max_history"))
    hist = left_padded(indptr, indices, q.users, max_len)
    u = models.user_vectors(item_vectors, hist, scene, profile[q.users])
    v = item_vectors
    if not use_fusion:
        return evaluate_queries(lambda rows: u[rows] @ v.T, q).metrics
    feats = reader.load_npy(reader.section("items", "item_feats"))
    pops = reader.load_npy(reader.section("items", "pop_bucket"))
    n_cand = int(reader.section("models", "fusion").get("n_candidates", 50))

    def score(rows: np.ndarray) -> np.ndarray:
        base = u[rows] @ v.T
        excl = [q.exclude_indices[q.exclude_indptr[i]:q.exclude_indptr[i + 1]] for i in rows]
        if q.exclude_extra is not None:
            excl = [np.concatenate([e, [x[i] for x in q.exclude_extra if x[i] >= 0]]).astype(np.int64)
                    for e, i in zip(excl, rows)]
        cands = top_candidates(u[rows], v, excl, n_cand)
        fused = models.fuse(u[rows], cands, v, feats, pops, scene[rows], profile[q.users[rows]])
        return rerank_scores(base, cands, fused)

    return evaluate_queries(score, q).metrics
