"""`recengine.hnsw_file`: real hnswlib files pass, every lie in a header or link list is a BundleError.

The checks never call hnswlib, so damaged files are safe to test in-process here; loading them through
hnswlib (what used to kill the interpreter) is tested in a subprocess in test_hostile_bundles.py.
"""

from __future__ import annotations

import re
import struct
from pathlib import Path

import numpy as np
import pytest

from recengine.errors import BundleError
from recengine.hnsw_file import HEADER, HEADER_SIZE, check_hnsw_file, read_header
from recengine.retrieval import HnswBackend

FIELDS = ("offset_level0", "max_elements", "count", "size_data_per_element", "label_offset", "offset_data",
          "max_level", "entry_point", "max_m", "max_m0", "m", "mult", "ef_construction")


def build(path: Path, n: int, dim: int, M: int = 8, augment: bool = False, seed: int = 0) -> Path:
    vectors = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    HnswBackend.build(vectors, np.arange(n), M=M, ef_construction=40, augment=augment).index.save_index(str(path))
    return path


def patch(path: Path, **fields: object) -> None:
    raw = bytearray(path.read_bytes())
    header = dict(zip(FIELDS, HEADER.unpack(bytes(raw[:HEADER_SIZE]))))
    header.update(fields)
    raw[:HEADER_SIZE] = HEADER.pack(*(header[f] for f in FIELDS))
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize("n, dim, M", [(0, 8, 16), (1, 8, 16), (60, 5, 2), (700, 17, 12)])
def test_real_indexes_pass_and_report_their_header(tmp_path: Path, n: int, dim: int, M: int) -> None:
    path = build(tmp_path / "x.hnsw", n, dim, M)
    header = check_hnsw_file(path, dim=dim, count=n, M=M)
    assert (header.count, header.m, header.dim) == (n, M, dim)
    assert header.max_elements >= n


def test_grown_index_passes_deleted_marks_do_not(tmp_path: Path) -> None:
    """What `Engine.save` stores as served (nothing removed): an index resized by live adds. An index with
    deletion marks is never stored (save rebuilds then): such an item would never be retrieved."""
    vectors = np.random.default_rng(1).standard_normal((300, 8)).astype(np.float32)
    backend = HnswBackend.build(vectors[:200], np.arange(200), M=8)
    backend.refresh(vectors, np.ones(300, bool), np.arange(200, 300), None)
    backend.index.save_index(str(tmp_path / "g.hnsw"))
    assert check_hnsw_file(tmp_path / "g.hnsw", dim=8, count=300).count == 300
    backend.refresh(vectors, np.ones(300, bool), None, np.arange(5))
    backend.index.save_index(str(tmp_path / "d.hnsw"))
    with pytest.raises(BundleError, match="element 0 is marked deleted"):
        check_hnsw_file(tmp_path / "d.hnsw", dim=8)


def test_augmented_index_has_one_more_column(tmp_path: Path) -> None:
    path = build(tmp_path / "a.hnsw", 50, 6, augment=True)
    assert check_hnsw_file(path, dim=7).dim == 7
    with pytest.raises(BundleError, match="vectors are 7 floats wide, expected 6"):
        check_hnsw_file(path, dim=6)


def test_expectations_from_the_manifest(tmp_path: Path) -> None:
    path = build(tmp_path / "x.hnsw", 100, 8, M=8)
    with pytest.raises(BundleError, match="holds 100 elements, the manifest says 99"):
        check_hnsw_file(path, dim=8, count=99)
    with pytest.raises(BundleError, match="M is 8, the manifest says 16"):
        check_hnsw_file(path, dim=8, M=16)


@pytest.mark.parametrize(
    "fields, fragment",
    [
        ({"offset_level0": 8}, "offsetLevel0 is 8"),
        ({"m": 1}, "M is 1"),
        ({"max_m0": 8}, "maxM 8 / maxM0 8"),
        ({"max_m": (1 << 62) - 1}, "do not match M"),  # size_links_per_element overflows to 0: SIGFPE
        ({"mult": float("nan")}, "level multiplier nan"),
        ({"mult": 0.0}, "level multiplier 0.0"),
        ({"ef_construction": 0}, "ef_construction is 0"),
        ({"offset_data": 64}, "offsetData is 64"),
        ({"size_data_per_element": 1 << 40}, "element size"),
        ({"max_elements": 10}, "has room for 10"),
        ({"max_elements": 1 << 50}, "out of proportion"),
        ({"entry_point": 100}, "entry point 100 is outside"),
        ({"max_level": -1}, "top level is -1"),
        ({"max_level": 129}, "top level is 129"),
    ],
)
def test_header_lies_are_refused(tmp_path: Path, fields: dict, fragment: str) -> None:
    path = build(tmp_path / "x.hnsw", 100, 8)
    patch(path, **fields)
    with pytest.raises(BundleError, match=re.escape(fragment)) as caught:
        check_hnsw_file(path, dim=8)
    assert "malformed HNSW index header" in str(caught.value)


def test_entry_point_must_be_on_the_top_level(tmp_path: Path) -> None:
    path = build(tmp_path / "x.hnsw", 300, 8)
    header = read_header(path)
    levels_zero = next(i for i in range(header.count) if i != header.entry_point)
    patch(path, entry_point=levels_zero)
    with pytest.raises(BundleError, match="not on the top level"):
        check_hnsw_file(path, dim=8)


def test_empty_index_fields(tmp_path: Path) -> None:
    path = build(tmp_path / "e.hnsw", 0, 8)
    patch(path, entry_point=0)
    with pytest.raises(BundleError, match="empty index"):
        check_hnsw_file(path, dim=8)
    path = build(tmp_path / "e2.hnsw", 0, 8)
    path.write_bytes(path.read_bytes() + b"\x00" * 4)
    with pytest.raises(BundleError, match="after an empty index's header"):
        check_hnsw_file(path, dim=8)


def _word(path: Path, at: int, value: int) -> None:
    raw = bytearray(path.read_bytes())
    raw[at : at + 4] = struct.pack("<I", value)
    path.write_bytes(bytes(raw))


def test_structure_lies_are_refused(tmp_path: Path) -> None:
    def fresh() -> tuple[Path, object]:
        path = build(tmp_path / "s.hnsw", 300, 8)
        return path, read_header(path)

    path, h = fresh()
    _word(path, HEADER_SIZE + 4, 300)  # element 0's first level-0 neighbour: one past the end
    with pytest.raises(BundleError, match="level-0 link points outside"):
        check_hnsw_file(path, dim=8)

    path, h = fresh()
    _word(path, HEADER_SIZE + h.offset_data, 0x7FC00000)  # NaN in element 0's vector
    with pytest.raises(BundleError, match="non-finite"):
        check_hnsw_file(path, dim=8)

    path, h = fresh()
    tail = HEADER_SIZE + h.count * h.size_data_per_element
    _word(path, tail, 7)  # element 0's upper link-list size: not a multiple of a level's size
    with pytest.raises(BundleError, match="upper link list of 7 bytes"):
        check_hnsw_file(path, dim=8)

    path, h = fresh()
    path.write_bytes(path.read_bytes() + b"\x00\x00\x00\x00")
    with pytest.raises(BundleError, match="4 unexpected bytes after the link lists"):
        check_hnsw_file(path, dim=8)

    path, h = fresh()
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(BundleError, match="truncated|unexpected|stray bytes"):
        check_hnsw_file(path, dim=8)


def test_upper_level_link_to_an_element_below_that_level(tmp_path: Path) -> None:
    """A level-L link to an element that has no level L makes hnswlib read past that element's lists."""
    path = build(tmp_path / "u.hnsw", 400, 8)
    h = read_header(path)
    raw = path.read_bytes()
    pos = HEADER_SIZE + h.count * h.size_data_per_element
    levels, first_block = [], None
    for _ in range(h.count):
        size = struct.unpack_from("<I", raw, pos)[0]
        if size and first_block is None:
            first_block = pos + 4
        levels.append(size // h.size_links_per_element)
        pos += 4 + size
    ground = levels.index(0)
    assert first_block is not None
    data = bytearray(raw)
    struct.pack_into("<II", data, first_block, 1, ground)  # one link, to an element with no upper level
    path.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="does not reach that level"):
        check_hnsw_file(path, dim=8)


def test_truncated_header(tmp_path: Path) -> None:
    (tmp_path / "t.hnsw").write_bytes(b"\x00" * 50)
    with pytest.raises(BundleError, match="truncated"):
        check_hnsw_file(tmp_path / "t.hnsw", dim=8)


def test_load_checks_before_hnswlib(tmp_path: Path) -> None:
    """`HnswBackend.load` refuses the file itself (SIGSEGV in hnswlib otherwise: tested in a subprocess in
    test_hostile_bundles.py; here the check fires first, so this is safe in-process)."""
    path = build(tmp_path / "x.hnsw", 100, 8)
    patch(path, entry_point=10**6)
    with pytest.raises(BundleError, match="entry point 1000000 is outside"):
        HnswBackend.load(str(path), 8, 10, 100)
    good = build(tmp_path / "y.hnsw", 100, 8)
    loaded = HnswBackend.load(str(good), 8, 10, 100, count=100, M=8)
    assert loaded.index.get_current_count() == 100


def test_walk_agrees_with_a_byte_by_byte_reading(tmp_path: Path) -> None:
    """The skip-the-zeros walk of the upper link lists finds every element's level (compared with a plain
    sequential reading of the sizes) - on an index with many upper levels (M=2)."""
    from recengine.hnsw_file import _upper_levels

    path = build(tmp_path / "m2.hnsw", 500, 4, M=2, seed=3)
    h = read_header(path)
    raw = path.read_bytes()
    pos, expected = HEADER_SIZE + h.count * h.size_data_per_element, []
    for _ in range(h.count):
        size = struct.unpack_from("<I", raw, pos)[0]
        expected.append(size // h.size_links_per_element)
        pos += 4 + size
    levels, blocks = _upper_levels(path, h, HEADER_SIZE + h.count * h.size_data_per_element, len(raw))
    assert levels.tolist() == expected and max(expected) == h.max_level >= 3
    assert blocks.shape == (sum(expected), 2) and sorted(set(blocks[:, 1].tolist())) == list(range(1, h.max_level + 1))


_FUZZ_CHILD = r"""
import sys
import numpy as np
from recengine.errors import BundleError
from recengine.retrieval import HnswBackend

src, out, n, dim, count = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
original = open(src, "rb").read()
rng = np.random.default_rng(0)
queries = rng.standard_normal((8, dim)).astype(np.float32)
extra = rng.standard_normal((count + 4, dim)).astype(np.float32)
refused = served = 0
for case in range(n):
    data = bytearray(original)
    at = int(rng.integers(0, len(data)))
    for _ in range(int(rng.integers(1, 4))):
        data[min(at, len(data) - 1)] = int(rng.integers(0, 256))
        at += int(rng.integers(1, 5))
    open(out, "wb").write(bytes(data))
    print("case", case, flush=True)
    try:
        backend = HnswBackend.load(out, dim, 20, count)
    except BundleError:
        refused += 1
        continue
    backend.search(queries, 10)
    backend.refresh(extra, np.ones(count + 4, bool), np.arange(count, count + 4), np.arange(2))
    backend.search(queries, 10)
    served += 1
print("refused", refused, "served", served)
"""


@pytest.mark.timeout(300)
def test_random_damage_never_kills_the_interpreter(tmp_path: Path) -> None:
    """300 random byte changes anywhere in a real index file: each is refused, or loads and serves (the
    change was harmless, e.g. inside a vector) - in a subprocess, which must not die of a signal."""
    import subprocess
    import sys

    path = build(tmp_path / "f.hnsw", 200, 8, M=4)
    proc = subprocess.run([sys.executable, "-c", _FUZZ_CHILD, str(path), str(tmp_path / "fz.hnsw"), "300", "8", "200"],
                          capture_output=True, text=True, timeout=280)
    last = proc.stdout.strip().splitlines()[-1:] if proc.stdout else []
    assert proc.returncode == 0, f"exit {proc.returncode} after {last}: {proc.stderr[-1500:]}"
    refused = int(last[0].split()[1])
    assert refused > 100  # most damage is caught, not just survived
