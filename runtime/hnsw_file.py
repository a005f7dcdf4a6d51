"""Check an hnswlib 0.8 `save_index` file before hnswlib reads it.

Why: `hnswlib.Index.load_index` trusts the file. A header with a wrong element size, count or M, a link
list that points past the end, an entry point outside the index or a neighbour id outside the index makes
the interpreter die with SIGFPE or SIGSEGV (at load, or later at the first search) instead of raising.
Anyone who can write a bundle can also fix up its checksums, and `verify=False` skips them, so the
index file itself is checked here, with numpy only, against what the caller expects (`dim`, and the
manifest's `count` and `M` when known). Every problem is a `BundleError` naming it.

The layout (hnswlib 0.8 `HierarchicalNSW::saveIndex`, little-endian, no padding):

    header (96 bytes):  offsetLevel0_ u64, max_elements_ u64, cur_element_count u64,
                        size_data_per_element_ u64, label_offset_ u64, offsetData_ u64,
                        maxlevel_ i32, enterpoint_node_ u32, maxM_ u64, maxM0_ u64, M_ u64,
                        mult_ f64, ef_construction_ u64
    level 0:            cur_element_count elements of size_data_per_element_ bytes each:
                        [u32 link count (low 16 bits; byte 2 = deleted mark)] [maxM0_ x u32 neighbour ids]
                        [dim x f32 vector] [u64 label]
    upper levels:       per element, u32 byte size of its upper link lists (0 = level 0 only), then
                        `level` blocks of (maxM_ * 4 + 4) bytes: [u32 link count] [maxM_ x u32 ids]

What is checked: the header fields against each other and against `dim`/`count`/`M` (hnswlib 0.8 sets
maxM_ = M_, maxM0_ = 2 M_, mult_ = 1 / ln M_), the file size against the element count and the link-list
sizes, the entry point (inside the index, on the top level), every neighbour id (inside the index, and on
an upper level only pointing at elements that reach that level), every link count (within maxM_/maxM0_),
the labels (each row 0..count-1 exactly once: labels are catalogue rows), no deletion marks (a bundle's
index holds its live rows only) and the vectors (finite).
Cost: one pass over the file, vectorised with numpy, in bounded chunks.
"""

from __future__ import annotations

import math
import struct
import sys
from bisect import bisect_left
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import BundleError

HEADER = struct.Struct("<QQQQQQiIQQQdQ")
"""The 96-byte header of an hnswlib 0.8 index file (field order of `saveIndex`)."""
HEADER_SIZE = HEADER.size
MAX_M = 10_000
"""hnswlib caps M at 10,000."""
MAX_LEVEL = 128
"""Levels are floor(-ln(u) * mult_) with u a double in (0, 1): at most ~37 * mult_, far below this for M >= 2."""
MAX_EF_CONSTRUCTION = 1_000_000
EMPTY_ENTRY_POINT = 0xFFFFFFFF
"""`enterpoint_node_` of an index with no element (hnswlib stores tableint(-1))."""
_CHUNK_BYTES = 32 << 20


@dataclass(frozen=True)
class HnswHeader:
    """The header fields of an hnswlib index file (names as in hnswlib's `HierarchicalNSW`)."""

    offset_level0: int
    max_elements: int
    count: int
    size_data_per_element: int
    label_offset: int
    offset_data: int
    max_level: int
    entry_point: int
    max_m: int
    max_m0: int
    m: int
    mult: float
    ef_construction: int

    @property
    def dim(self) -> int:
        """Vector width implied by the element layout (float32 vectors)."""
        return (self.label_offset - self.offset_data) // 4

    @property
    def size_links_level0(self) -> int:
        return self.max_m0 * 4 + 4

    @property
    def size_links_per_element(self) -> int:
        return self.max_m * 4 + 4


def read_header(path: str | Path) -> HnswHeader:
    """The header of an index file (only its first 96 bytes are read); BundleError if it is shorter."""
    try:
        with Path(path).open("rb") as handle:
            raw = handle.read(HEADER_SIZE)
    except OSError as exc:
        raise BundleError(f"{path}: cannot read the HNSW index ({exc.strerror or exc})") from None
    if len(raw) < HEADER_SIZE:
        raise BundleError(f"{path}: HNSW index truncated ({len(raw)} bytes, the header alone is {HEADER_SIZE})")
    return HnswHeader(*HEADER.unpack(raw))


def check_header(header: HnswHeader, path: str | Path, dim: int, count: int | None = None,
                 M: int | None = None) -> None:
    """Header fields consistent with each other and with what the caller expects (no file access)."""
    h = header

    def bad(what: str) -> BundleError:
        return BundleError(f"{path}: malformed HNSW index header: {what}")

    if h.offset_level0 != 0:
        raise bad(f"offsetLevel0 is {h.offset_level0}, not 0")
    if not 2 <= h.m <= MAX_M:
        raise bad(f"M is {h.m} (hnswlib allows 2..{MAX_M})")
    if M is not None and h.m != M:
        raise bad(f"M is {h.m}, the manifest says {M}")
    if h.max_m != h.m or h.max_m0 != 2 * h.m:
        raise bad(f"maxM {h.max_m} / maxM0 {h.max_m0} do not match M {h.m} (hnswlib uses M and 2M)")
    if not (math.isfinite(h.mult) and math.isclose(h.mult, 1.0 / math.log(h.m), rel_tol=1e-9)):
        raise bad(f"level multiplier {h.mult!r} is not 1/ln(M) for M {h.m}")
    if not 1 <= h.ef_construction <= MAX_EF_CONSTRUCTION:
        raise bad(f"ef_construction is {h.ef_construction} (1..{MAX_EF_CONSTRUCTION})")
    if h.offset_data != h.size_links_level0:
        raise bad(f"offsetData is {h.offset_data}, {h.size_links_level0} for M {h.m}")
    if h.label_offset != h.offset_data + 4 * dim:
        width = (h.label_offset - h.offset_data) / 4
        raise bad(f"vectors are {width:g} floats wide, expected {dim}")
    if h.size_data_per_element != h.label_offset + 8:
        raise bad(f"element size is {h.size_data_per_element} bytes, {h.label_offset + 8} for dim {dim} and M {h.m}")
    if count is not None and h.count != count:
        raise bad(f"holds {h.count} elements, the manifest says {count}")
    if h.count > h.max_elements:
        raise bad(f"holds {h.count} elements but has room for {h.max_elements}")
    if h.max_elements > max(4 * h.count, h.count + 1_000_000):
        raise bad(f"max_elements {h.max_elements} is out of proportion to its {h.count} elements")
    if h.count == 0:
        if h.max_level != -1 or h.entry_point != EMPTY_ENTRY_POINT:
            raise bad(f"empty index with top level {h.max_level} and entry point {h.entry_point}")
        return
    if not 0 <= h.max_level <= MAX_LEVEL:
        raise bad(f"top level is {h.max_level} (0..{MAX_LEVEL})")
    if h.entry_point >= h.count:
        raise bad(f"entry point {h.entry_point} is outside the index ({h.count} elements)")


def check_hnsw_file(path: str | Path, dim: int, count: int | None = None, M: int | None = None) -> HnswHeader:
    """Check the whole file (see the module docstring); returns its header. BundleError on any problem."""
    return _check(Path(path), dim, count, M, None)


def read_vectors(path: str | Path, dim: int, count: int | None = None, M: int | None = None) -> np.ndarray:
    """The vectors an index stores, float32 [count, dim] in label order (row i = the element labelled i),
    read in the same pass that checks the whole file (`check_hnsw_file`).

    Why: a bundle's index already holds every item vector it indexes (hnswlib's `ip` space stores them as
    given, bit for bit), so format 2 bundles store those arrays once, inside the index (docs/bundle.md
    "Item arrays held by an index"). The labels being a permutation of 0..count-1 is part of the check,
    so every row is written exactly once; the array is allocated only after the header and the file size
    agree with the element count (a hostile count cannot make it allocate more than the file holds)."""
    out: list[np.ndarray] = []
    _check(Path(path), dim, count, M, out)
    return out[0]


def _check(path: Path, dim: int, count: int | None, M: int | None, collect: list[np.ndarray] | None) -> HnswHeader:
    header = read_header(path)
    check_header(header, path, dim, count, M)
    size = path.stat().st_size
    n, spe = header.count, header.size_data_per_element
    level0_end = HEADER_SIZE + n * spe
    if size < level0_end + 4 * n:
        raise BundleError(f"{path}: HNSW index truncated ({size} bytes; {n} elements of {spe} bytes need at least "
                          f"{level0_end + 4 * n})")
    out = None
    if collect is not None:
        out = np.empty((n, dim), dtype=np.float32)
        collect.append(out)
    if n == 0:
        if size != HEADER_SIZE:
            raise BundleError(f"{path}: HNSW index has {size - HEADER_SIZE} bytes after an empty index's header")
        return header
    levels, blocks = _upper_levels(path, header, level0_end, size)
    _check_level0(path, header, dim, out)
    _check_upper_links(path, header, levels, blocks)
    return header


def _upper_levels(path: Path, h: HnswHeader, start: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Walk the per-element upper link lists: each element's level [n] and the file offsets of every
    upper-level block with its level, int64 [blocks, 2]; BundleError when a size is malformed or the
    lists do not end exactly at the end of the file.

    Most elements have no upper level (a 4-byte zero each), so the walk jumps from one non-zero word to
    the next: one Python step per element *with* upper levels (~1/M of them), not per element."""
    with path.open("rb") as handle:
        handle.seek(start)
        tail = handle.read(size - start)
    if len(tail) % 4:
        raise BundleError(f"{path}: malformed HNSW index: {len(tail) % 4} stray bytes at the end")
    words = np.frombuffer(tail, dtype="<u4")
    # the walk's steps are Python: a list and bisect (C) instead of a numpy call per step (~10x faster)
    nonzero = np.flatnonzero(words).tolist()
    values = memoryview(tail).cast("I") if sys.byteorder == "little" else words
    per_level = h.size_links_per_element
    levels = np.zeros(h.count, dtype=np.int64)
    starts: list[int] = []
    counts: list[int] = []
    pos, i, n_words, k = 0, 0, int(words.size), 0
    while i < h.count:
        k = bisect_left(nonzero, pos, k)
        q = nonzero[k] if k < len(nonzero) else n_words
        if i + (q - pos) >= h.count:  # the remaining elements all have no upper level
            pos += h.count - i
            break
        i += q - pos  # elements with a zero size
        if q >= n_words:
            raise BundleError(f"{path}: HNSW index truncated in the link lists (element {i} of {h.count})")
        nbytes = int(values[q])
        level, rest = divmod(nbytes, per_level)
        if rest or level > h.max_level:
            raise BundleError(f"{path}: malformed HNSW index: element {i} has an upper link list of {nbytes} bytes "
                              f"(a multiple of {per_level}, at most top level {h.max_level})")
        if 4 * (q + 1) + nbytes > len(tail):
            raise BundleError(f"{path}: HNSW index truncated in the link lists (element {i} runs past the end)")
        levels[i] = level
        starts.append(start + 4 * (q + 1))
        counts.append(level)
        pos = q + 1 + nbytes // 4
        i += 1
    if pos > n_words:
        raise BundleError(f"{path}: HNSW index truncated in the link lists")
    if pos != n_words:
        raise BundleError(f"{path}: malformed HNSW index: {4 * (n_words - pos)} unexpected bytes after the link lists")
    if int(levels[h.entry_point]) != h.max_level:
        raise BundleError(f"{path}: malformed HNSW index: entry point {h.entry_point} is on level "
                          f"{int(levels[h.entry_point])}, not on the top level {h.max_level}")
    reps = np.asarray(counts, dtype=np.int64)
    first = np.repeat(np.asarray(starts, dtype=np.int64), reps)
    within = np.arange(first.size, dtype=np.int64) - np.repeat(np.cumsum(reps) - reps, reps)
    blocks = np.stack([first + within * per_level, within + 1], axis=1) if first.size else np.zeros((0, 2), np.int64)
    return levels, blocks


def _check_level0(path: Path, h: HnswHeader, dim: int, out: np.ndarray | None = None) -> None:
    """Level-0 link counts and neighbour ids, labels (a permutation of 0..count-1) and finite vectors;
    with `out` [count, dim], each vector is also copied to the row its label names."""
    words_per = h.size_data_per_element // 4
    table = np.memmap(path, dtype="<u4", mode="r", offset=HEADER_SIZE, shape=(h.count, words_per))
    seen = np.zeros(h.count, dtype=bool)
    seen_count = 0
    step = max(1, _CHUNK_BYTES // h.size_data_per_element)
    data0 = h.offset_data // 4
    label0 = h.label_offset // 4
    for lo in range(0, h.count, step):
        rows = np.asarray(table[lo : lo + step])
        counts = rows[:, 0] & 0xFFFF
        if counts.max(initial=0) > h.max_m0:
            bad = lo + int(np.argmax(counts > h.max_m0))
            raise BundleError(f"{path}: malformed HNSW index: element {bad} has {int(counts[bad - lo])} level-0 "
                              f"links (at most {h.max_m0})")
        if np.any((rows[:, 0] >> 16) & 0xFF):
            bad = lo + int(np.argmax((rows[:, 0] >> 16) & 0xFF))
            raise BundleError(f"{path}: malformed HNSW index: element {bad} is marked deleted (a bundle's index "
                              "holds exactly its live rows; a deleted one would never be retrieved)")
        links = rows[:, 1 : 1 + h.max_m0]
        used = np.arange(h.max_m0)[None, :] < counts[:, None]
        if np.any(links[used] >= h.count):
            raise BundleError(f"{path}: malformed HNSW index: a level-0 link points outside the index "
                              f"({h.count} elements)")
        vectors = rows[:, data0 : data0 + dim].view("<f4")
        if not np.isfinite(vectors).all():
            raise BundleError(f"{path}: malformed HNSW index: non-finite (NaN/inf) vector values")
        labels = rows[:, label0].astype(np.uint64) | (rows[:, label0 + 1].astype(np.uint64) << np.uint64(32))
        if np.any(labels >= np.uint64(h.count)):
            raise BundleError(f"{path}: malformed HNSW index: a label is outside 0..{h.count - 1} (labels are "
                              "catalogue rows)")
        idx = labels.astype(np.int64)
        before = seen_count
        seen[idx] = True
        seen_count = int(np.count_nonzero(seen))
        if seen_count - before != idx.size:  # a label repeated within this chunk or seen in an earlier one
            raise BundleError(f"{path}: malformed HNSW index: a label appears twice")
        if out is not None:
            out[idx] = vectors
    del table


def _check_upper_links(path: Path, h: HnswHeader, levels: np.ndarray, blocks: np.ndarray) -> None:
    """Upper-level link counts within maxM_, neighbour ids inside the index and on that level."""
    if blocks.size == 0:
        return
    words = np.memmap(path, dtype="<u4", mode="r")  # every offset in the file is a multiple of 4
    width = 1 + h.max_m
    step = max(1, _CHUNK_BYTES // (4 * width))
    for lo in range(0, blocks.shape[0], step):
        part = blocks[lo : lo + step]
        rows = np.asarray(words[(part[:, 0] // 4)[:, None] + np.arange(width)[None, :]])
        counts = rows[:, 0] & 0xFFFF
        if counts.max(initial=0) > h.max_m:
            raise BundleError(f"{path}: malformed HNSW index: an upper-level link list has more than {h.max_m} links")
        used = np.arange(h.max_m)[None, :] < counts[:, None]
        links = rows[:, 1:]
        targets = links[used]
        if np.any(targets >= h.count):
            raise BundleError(f"{path}: malformed HNSW index: an upper-level link points outside the index")
        block_level = np.broadcast_to(part[:, 1][:, None], links.shape)[used]
        if np.any(levels[targets.astype(np.int64)] < block_level):
            raise BundleError(f"{path}: malformed HNSW index: an upper-level link points at an element that "
                              "does not reach that level")
    del words
