"""The bundle format in code (documented in docs/bundle.md): names, typed sections and the shared rules.

A bundle is a directory with `manifest.json` at its root. The manifest lists every other file with its
sha256 and size under `files`; readers verify them and refuse anything not listed.

Everything both sides of the contract must agree on lives here, once: the default file paths of the
item/user arrays (`ITEM_FILES`, `USER_FILES`), each model's inputs and outputs (`MODEL_IO`, checked
against every ONNX session at `Engine.open`), the index section (`IndexSpec`, with the rule that picks
the stored index form) and the history padding the user tower expects (`left_pad`). Writers (the export,
`Engine.save`) and readers (the engine, the latency bench) import them from here instead of spelling
strings and loops of their own. Popularity buckets live in `recengine.catalogue.pop_buckets` and the
scene/profile encoding in `recengine.vocab.SlotVocab`: both are used by export and runtime alike.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import BundleError

FORMAT_NAME = "recengine-bundle"
FORMAT_VERSION = "2.0"
"""major.minor: readers refuse a major version they do not know; a minor bump only adds optional fields.
2.0: `items.vectors` / `items.text_embeddings` may name the index file that holds those rows
(`INDEX_SOURCE`, docs/bundle.md "Item arrays held by an index"), so the rows are stored once."""
READABLE_MAJORS = (1, 2)
"""Major versions this runtime reads: 1.x bundles store every item array as a `.npy` file."""
MANIFEST_NAME = "manifest.json"

REQUIRED_KEYS = ("format", "format_version", "recengine_version", "created_at", "files")

ITEM_FILES: dict[str, str] = {
    "ids": "items/ids.json",
    "texts": "items/texts.json",
    "attrs": "items/attrs.json",
    "vectors": "items/vectors.npy",
    "text_vectors": "items/text_vectors.npy",
    "text_embeddings": "items/text_embeddings.npy",
    "popularity": "items/popularity.npy",
    "pop_bucket": "items/pop_bucket.npy",
    "item_feats": "items/item_feats.npy",
}
"""`manifest.items.<key>` -> default path. Row i of every array is the item `ids[i]`."""

ITEM_ARRAYS: dict[str, str] = {
    "vectors": "float32", "text_vectors": "float32", "text_embeddings": "float32",
    "popularity": "int64", "pop_bucket": "int64", "item_feats": "float32",
}
"""The `.npy` item arrays and the dtype they are served in."""

ITEM_STORED: dict[str, str] = {"text_embeddings": "float16"}
"""Item arrays written to `.npy` in a narrower dtype than they are served in (readers cast to `ITEM_ARRAYS`),
when no index is built over them. The text embeddings are unit vectors that `search` ranks by cosine: float16
keeps each component to 2^-11 relative and halves the largest array of a bundle whose catalogue is small
enough to be scanned without a text index (`recengine.retrieval.text_index_wanted`; 7.5 instead of 15 MB for
MovieLens with MiniLM). Beside an index (a 1.x bundle stores both) they stay float32, so the scanned rows and
the indexed ones are the same numbers."""


def stored_item_array(key: str, array: np.ndarray, indexed: bool = False) -> np.ndarray:
    """`array` in the dtype the item array `key` is written in, one rule for every writer (the export,
    `Engine.save`, the synthetic bench bundle): `ITEM_STORED` unless an index is built over the same rows
    (`indexed`) or a value would not fit (a row beyond float16's range, possible in a hand-made bundle: it
    would be written as inf and the bundle refused at open), else the served dtype (`ITEM_ARRAYS`)."""
    served = np.dtype(ITEM_ARRAYS[key])
    narrow = None if indexed else ITEM_STORED.get(key)
    if narrow is not None:
        limit = float(np.finfo(np.dtype(narrow)).max)
        if array.size == 0 or float(np.abs(array).max()) <= limit:
            return np.ascontiguousarray(array, dtype=narrow)
    return np.ascontiguousarray(array, dtype=served)


MEDIA_FILES: dict[str, str] = {
    "media_projection": "models/media_projection.npy",
    "media_mean": "models/media_mean.npy",
    "media_scale": "models/media_scale.npy",
}
"""Optional `manifest.items.<key>` -> default path, written only when the data set had `item_vectors.npy`
(image/audio vectors made elsewhere): `media_projection` float32 [dims.item, d_media] maps a standardised
media vector `(m - media_mean) / media_scale` (both float32 [d_media]) into the item space; an item's vector
is the encoder's `item_vector` plus that projection (docs/bundle.md). Not in `ITEM_FILES`: those are
required per-item arrays (row i = item i) that `Engine.save` rewrites for the live rows; these are model
parameters, kept under `models/` and copied byte for byte like the ONNX files."""

USER_FILES: dict[str, str] = {
    "ids": "users/ids.json",
    "vectors": "users/vectors.npy",
    "profile": "users/profile.npy",
    "history_indptr": "users/history_indptr.npy",
    "history_items": "users/history_items.npy",
}
"""`manifest.users.<key>` -> default path (histories are CSR over item rows, oldest first)."""

INDEX_FILES: dict[str, str] = {"item": "index/items.hnsw", "text": "index/text.hnsw"}
"""`manifest.index.<space>.path` defaults: `item` indexes `items/vectors`, `text` `items/text_embeddings`."""

INDEX_SOURCE: dict[str, str] = {"item": "vectors", "text": "text_embeddings"}


def held_item_paths(spaces: Sequence[str]) -> dict[str, str]:
    """`manifest.items` entries of the arrays the indexes of `spaces` hold (format 2): `items.vectors` ->
    `index/items.hnsw` when the item space is indexed, and so on; the other arrays keep their `.npy`."""
    return {INDEX_SOURCE[space]: INDEX_FILES[space] for space in spaces}


def index_holding(manifest: Mapping[str, Any], rel: str) -> str | None:
    """The index space whose file holds the item array at `rel` (format 2: `items.<key>` names the same
    path as `index.<space>.path`, with `key` the array that index is built over, `INDEX_SOURCE`); None for
    an ordinary file. Readers take those rows from the index (`recengine.hnsw_file.read_vectors`),
    writers skip the `.npy`."""
    items, index = manifest.get("items"), manifest.get("index")
    if not isinstance(items, Mapping) or not isinstance(index, Mapping):
        return None
    for space, key in INDEX_SOURCE.items():
        node = index.get(space)
        if items.get(key) == rel and isinstance(node, Mapping) and node.get("path") == rel:
            return space
    return None


def major(version: str) -> int:
    """The major part of a "major.minor" version string (ValueError if malformed)."""
    return int(str(version).split(".")[0])


# ---------------------------------------------------------------------------------------------- models
TENSOR_DTYPES = frozenset({"float32", "int64"})
"""Element types of model inputs and outputs (fp16 variants keep fp32/int64 at their edges)."""


@dataclass(frozen=True)
class TensorSpec:
    """One graph input or output: name, dtype (`float32`/`int64`) and shape, where a string is a
    symbolic axis: "B", "T", "L", "C" are dynamic, "dims.<key>" is fixed by the manifest's `dims`."""

    name: str
    dtype: str
    shape: tuple[str | int, ...]

    def __post_init__(self) -> None:
        if self.dtype not in TENSOR_DTYPES:
            raise BundleError(f"tensor {self.name!r}: dtype must be one of {sorted(TENSOR_DTYPES)}, got {self.dtype!r}")

    def manifest(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape)}


MODEL_NAMES = ("encoder", "user_tower", "fusion")

MODEL_IO: dict[str, tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]] = {
    "encoder": (
        (TensorSpec("input_ids", "int64", ("B", "T")), TensorSpec("attention_mask", "int64", ("B", "T"))),
        (TensorSpec("text_embedding", "float32", ("B", "dims.text")),
         TensorSpec("item_vector", "float32", ("B", "dims.item"))),
    ),
    "user_tower": (
        (TensorSpec("history", "float32", ("B", "L", "dims.item")), TensorSpec("history_mask", "float32", ("B", "L")),
         TensorSpec("scene", "int64", ("B", "dims.scene_slots")),
         TensorSpec("profile", "int64", ("B", "dims.profile_slots"))),
        (TensorSpec("user_vector", "float32", ("B", "dims.item")),),
    ),
    "fusion": (
        (TensorSpec("user", "float32", ("B", "dims.item")), TensorSpec("items", "float32", ("B", "C", "dims.item")),
         TensorSpec("item_feats", "float32", ("B", "C", "dims.item_feats")),
         TensorSpec("pop_bucket", "int64", ("B", "C")),
         TensorSpec("scene", "int64", ("B", "dims.scene_slots")),
         TensorSpec("profile", "int64", ("B", "dims.profile_slots"))),
        (TensorSpec("scores", "float32", ("B", "C")),),
    ),
}
"""What the runtime feeds each model and reads back (docs/bundle.md "Models")."""

ITEM_HEAD = "item_head"
"""The optional model of a split encoder (docs/bundle.md "Split encoder"): with `models.item_head` in the
manifest the encoder returns `item_states` instead of `item_vector`, and the item head turns them into
`item_vector`. Search runs the encoder alone; items to be stored run both."""

SPLIT_IO: dict[str, tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]] = {
    "encoder": (
        MODEL_IO["encoder"][0],
        (TensorSpec("text_embedding", "float32", ("B", "dims.text")),
         TensorSpec("item_states", "float32", ("B", "T", "dims.text"))),
    ),
    ITEM_HEAD: (
        (TensorSpec("item_states", "float32", ("B", "T", "dims.text")),
         TensorSpec("attention_mask", "int64", ("B", "T"))),
        (TensorSpec("item_vector", "float32", ("B", "dims.item")),),
    ),
}
"""`MODEL_IO` of the models that differ in a split bundle (the user tower and fusion are the same)."""


def model_io(model: str, split: bool = False) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
    """The inputs and outputs of `model` in a bundle with (`split`) or without an item head."""
    if split and model in SPLIT_IO:
        return SPLIT_IO[model]
    if model not in MODEL_IO:
        raise BundleError(f"unknown model {model!r}")
    return MODEL_IO[model]

_ORT_TYPES = {"tensor(float)": "float32", "tensor(int64)": "int64", "tensor(float16)": "float16",
              "tensor(int32)": "int32", "tensor(double)": "float64"}


def resolve_shape(shape: Sequence[str | int], dims: Mapping[str, Any]) -> tuple[str | int, ...]:
    """Replace "dims.<key>" axes by the manifest's numbers (dynamic axes stay symbolic)."""
    out: list[str | int] = []
    for axis in shape:
        if isinstance(axis, str) and axis.startswith("dims."):
            key = axis[5:]
            if key == "item_feats" and key not in dims:
                out.append("F")  # older bundles do not record it: any width
                continue
            out.append(int(dims[key]))
        else:
            out.append(axis)
    return tuple(out)


def check_session_io(model: str, variant: str, inputs: Sequence[Any], outputs: Sequence[Any],
                     dims: Mapping[str, Any], split: bool = False) -> None:
    """Check an ONNX session's `get_inputs()`/`get_outputs()` against `model_io(model, split)` (BundleError
    naming the first mismatch): every name the runtime feeds or reads, its element type, rank and fixed sizes.

    A model that takes other inputs or lacks an output would otherwise fail on the first request (or,
    worse, with an int8 model in the fusion slot, return numbers for the wrong question)."""
    want_in, want_out = model_io(model, split)
    for kind, want, got in (("input", want_in, inputs), ("output", want_out, outputs)):
        by_name = {g.name: g for g in got}
        if kind == "input" and set(by_name) != {w.name for w in want}:
            raise BundleError(f"model {model} ({variant}) has inputs {sorted(by_name)}, the format needs "
                              f"{[w.name for w in want]}")
        for spec in want:
            node = by_name.get(spec.name)
            if node is None:
                raise BundleError(f"model {model} ({variant}) lacks the {kind} {spec.name!r} "
                                  f"(it has {sorted(by_name)})")
            dtype = _ORT_TYPES.get(str(node.type), str(node.type))
            if dtype != spec.dtype:
                raise BundleError(f"model {model} ({variant}) {kind} {spec.name!r} is {dtype}, the format "
                                  f"needs {spec.dtype}")
            expected = resolve_shape(spec.shape, dims)
            shape = list(node.shape or [])
            if len(shape) != len(expected):
                raise BundleError(f"model {model} ({variant}) {kind} {spec.name!r} has rank {len(shape)}, the "
                                  f"format needs {len(expected)} ({list(expected)})")
            for axis, (have, need) in enumerate(zip(shape, expected)):
                if isinstance(need, int) and isinstance(have, int) and have != need:
                    raise BundleError(f"model {model} ({variant}) {kind} {spec.name!r} axis {axis} is {have}, "
                                      f"the manifest's dims say {need}")


# ---------------------------------------------------------------------------------------------- history
def left_pad(histories: Sequence[np.ndarray], max_len: int, fixed: bool = False) -> np.ndarray:
    """int64 [B, L] item rows of each history's last `L` items, left-padded with -1 (docs/bundle.md:
    the most recent item sits at position L-1). L is the batch's longest history capped at `max_len`
    (at least 1): the tower counts positions from the end and masks padding, so a shorter L gives the
    same vector for less work. `fixed`: L = `max_len` (training batches of one shape)."""
    L = int(max_len) if fixed else max(1, min(int(max_len), max((len(h) for h in histories), default=1)))
    out = np.full((len(histories), L), -1, dtype=np.int64)
    for b, rows in enumerate(histories):
        rows = np.asarray(rows, dtype=np.int64)[-L:]
        if rows.size:
            out[b, L - rows.size:] = rows
    return out


def history_inputs(padded: np.ndarray, item_vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The user tower's `history` float32 [B, L, d] (zeros at padding) and `history_mask` float32 [B, L]."""
    mask = padded >= 0
    hist = item_vectors[np.where(mask, padded, 0)].astype(np.float32, copy=False)
    hist = hist * mask[..., None]
    return np.ascontiguousarray(hist, dtype=np.float32), mask.astype(np.float32)


# ---------------------------------------------------------------------------------------------- index
AUGMENT_SPREAD = 1.01
"""Vector norms spread more than this (max/min): the index is stored MIPS-augmented (see `IndexSpec`)."""


def wants_augment(matrix: np.ndarray) -> bool:
    """The stored-form rule: an inner-product HNSW graph over vectors of varying norm loses recall badly
    (measured on a MovieLens-small bundle: recall@10 0.48-0.71 plain vs 0.98-1.0 augmented), so such
    vectors are indexed MIPS-augmented; unit vectors (the text space) stay plain."""
    if matrix.shape[0] == 0:
        return False
    norms = np.sqrt(np.einsum("ij,ij->i", matrix, matrix))
    return float(norms.max()) > AUGMENT_SPREAD * float(norms.min())


@dataclass(frozen=True)
class IndexSpec:
    """`manifest.index.<space>`: one stored hnswlib index and how to search it."""

    path: str
    dim: int
    """Stored width: the vectors' width, +1 with the `mips_augment` transform."""
    M: int = 16
    ef_construction: int = 200
    ef_search: int = 100
    count: int | None = None
    max_norm: float | None = None
    """Set when the index stores `[v, sqrt(max_norm^2 - |v|^2)]` (transform "mips_augment")."""
    library: str = "hnswlib"
    space: str = "ip"

    @classmethod
    def from_manifest(cls, name: str, node: Any, vector_width: int) -> IndexSpec:
        if not isinstance(node, Mapping) or not node.get("path"):
            raise BundleError(f"index.{name} must be a mapping with a path")
        transform = node.get("transform")
        max_norm = node.get("max_norm")
        if transform is not None and (transform != "mips_augment" or isinstance(max_norm, bool)
                                      or not isinstance(max_norm, (int, float))):
            raise BundleError(f"index.{name}: unknown transform {transform!r} (this runtime knows "
                              "'mips_augment' with a numeric max_norm)")
        width = vector_width + (1 if transform is not None else 0)

        def whole(key: str, default: int, low: int) -> int:
            value = node.get(key, default)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise BundleError(f"index.{name}.{key} must be an integer >= {low}, got {value!r}")
            return value

        dim = whole("dim", width, 1)
        if dim != width:
            raise BundleError(f"index.{name}.dim {dim} does not fit vectors of width {vector_width}"
                              + (" (+1 for mips_augment)" if transform is not None else ""))
        count = node.get("count")
        if count is not None:
            count = whole("count", 0, 0)
        return cls(path=str(node["path"]), dim=dim, M=whole("M", 16, 2),
                   ef_construction=whole("ef_construction", 200, 1), ef_search=whole("ef_search", 100, 1),
                   count=count, max_norm=None if transform is None else float(max_norm),
                   library=str(node.get("library", "hnswlib")), space=str(node.get("space", "ip")))

    def manifest(self) -> dict[str, Any]:
        out: dict[str, Any] = {"path": self.path, "library": self.library, "space": self.space, "dim": self.dim,
                               "M": self.M, "ef_construction": self.ef_construction, "ef_search": self.ef_search}
        if self.count is not None:
            out["count"] = self.count
        if self.max_norm is not None:
            out["transform"] = "mips_augment"
            out["max_norm"] = self.max_norm
        return out


__all__ = [
    "FORMAT_NAME", "FORMAT_VERSION", "READABLE_MAJORS", "MANIFEST_NAME", "REQUIRED_KEYS", "ITEM_FILES", "ITEM_ARRAYS",
    "MEDIA_FILES", "USER_FILES", "INDEX_FILES", "INDEX_SOURCE", "MODEL_NAMES", "MODEL_IO", "TensorSpec", "IndexSpec",
    "check_session_io", "left_pad", "history_inputs", "wants_augment", "major", "resolve_shape", "index_holding",
]
