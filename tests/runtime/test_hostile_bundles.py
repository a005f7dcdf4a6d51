"""Hostile bundles (tests/fixtures/hostile_bundles.py) are refused with a BundleError naming the problem.

Every case has its checksums fixed up, so what is tested is the content checks. Cases that used to kill
the interpreter inside hnswlib (SIGFPE/SIGSEGV/SIGABRT) run in a fresh interpreter: the test asserts it
exits normally (not by a signal) after reporting the BundleError, with and without verification, at
`Engine.open` and at a hot `reload()` - which must keep serving the old bundle.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from recengine.errors import BundleError
from tests.fixtures.hostile_bundles import BY_NAME, CASES, make_case

REPO = Path(__file__).resolve().parents[2]
SAFE = [c.name for c in CASES if not c.crashes]
CRASHING = [c.name for c in CASES if c.crashes]

_PROBE = r"""
import json, sys
from pathlib import Path
from recengine import Engine
from recengine.errors import BundleError

good, bad = sys.argv[1], sys.argv[2]
out = {}
for verify in (True, False):
    try:
        Engine.open(bad, device="cpu", retrieval="hnsw", verify=verify)
        out[f"open_verify_{verify}"] = "opened"
    except BundleError as exc:
        out[f"open_verify_{verify}"] = str(exc)
engine = Engine.open(good, device="cpu", retrieval="hnsw")
user = engine.user_ids()[0]
before = [(r.item_id, round(r.score, 5)) for r in engine.recommend(user_id=user, k=5)]
try:
    engine.reload(bad)
    out["reload"] = "reloaded"
except BundleError as exc:
    out["reload"] = str(exc)
after = [(r.item_id, round(r.score, 5)) for r in engine.recommend(user_id=user, k=5)]
out["still_serving_the_old_bundle"] = before == after and Path(engine.bundle_path) == Path(good).resolve()
print("RESULT " + json.dumps(out))
"""


@pytest.mark.parametrize("name", SAFE)
def test_hostile_bundle_is_a_bundle_error(lean_bundle: Path, tmp_path: Path, name: str) -> None:
    from recengine import Engine

    case = BY_NAME[name]
    bundle = make_case(lean_bundle, tmp_path, case)
    with pytest.raises(BundleError) as caught:
        Engine.open(bundle, device="cpu")
    assert case.fragment in str(caught.value)


@pytest.mark.parametrize("name", CRASHING)
def test_hostile_index_never_kills_the_interpreter(lean_bundle: Path, tmp_path: Path, name: str) -> None:
    case = BY_NAME[name]
    bundle = make_case(lean_bundle, tmp_path, case)
    proc = subprocess.run([sys.executable, "-c", _PROBE, str(lean_bundle), str(bundle)], cwd=REPO,
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode >= 0, f"killed by signal {-proc.returncode}: {proc.stderr[-2000:]}"
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.split("RESULT ", 1)[1])
    for key in ("open_verify_True", "open_verify_False", "reload"):
        assert case.fragment in result[key], (key, result[key])
    assert result["still_serving_the_old_bundle"] is True


def test_unverified_damage_is_caught_by_the_content_checks(lean_bundle: Path, tmp_path: Path) -> None:
    """With verify=False nothing compares checksums: the .npy header and finiteness checks still hold."""
    from recengine import Engine

    bundle = make_case(lean_bundle, tmp_path, BY_NAME["npy_all_nan_vectors"])
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["files"]["items/vectors.npy"]["sha256"] = "0" * 64  # stale checksum: verify=True catches it
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="sha256 mismatch"):
        Engine.open(bundle, device="cpu")
    with pytest.raises(BundleError, match="non-finite"):
        Engine.open(bundle, device="cpu", verify=False)


def test_the_corpus_is_not_trivially_refused(lean_bundle: Path, tmp_path: Path) -> None:
    """The copy-and-refresh-checksums machinery itself leaves a servable bundle: a no-op damage opens."""
    from recengine import Engine
    from tests.fixtures.hostile_bundles import copy_bundle, refresh_checksum

    bundle = copy_bundle(lean_bundle, tmp_path / "same")
    refresh_checksum(bundle, "items/vectors.npy")
    engine = Engine.open(bundle, device="cpu", retrieval="hnsw")
    assert len(engine.recommend(user_id=engine.user_ids()[0], k=3)) == 3


_SKIP_TOP = ("metrics", "config", "timings", "files", "created_at", "recengine_version", "saved_from")
_WRONG = [None, "x", -1, 1.5, [], {}, True, 10**12]


def _leaves(node: object, path: tuple = ()) -> list[tuple]:
    out: list[tuple] = []
    items = node.items() if isinstance(node, dict) else enumerate(node[:2]) if isinstance(node, list) else []
    for key, value in items:
        if path == () and key in _SKIP_TOP:
            continue
        out.append(path + (key,))
        out.extend(_leaves(value, path + (key,)))
    return out


@pytest.mark.timeout(600)
def test_wrong_types_anywhere_in_the_manifest(lean_bundle: Path, tmp_path: Path) -> None:
    """Every manifest field the runtime reads, set to values of other types (two per field, rotating through
    `_WRONG`): opening and serving either works or raises a BundleError - never another exception."""
    import copy
    import shutil

    from recengine import Engine

    base = json.loads((lean_bundle / "manifest.json").read_text())
    bundle = tmp_path / "b"
    shutil.copytree(lean_bundle, bundle)
    failures = []
    for i, path in enumerate(_leaves(base)):
        for bad in (_WRONG[i % len(_WRONG)], _WRONG[(i + 3) % len(_WRONG)]):
            manifest = copy.deepcopy(base)
            node = manifest
            for key in path[:-1]:
                node = node[key]
            node[path[-1]] = bad
            (bundle / "manifest.json").write_text(json.dumps(manifest))
            try:
                engine = Engine.open(bundle, device="cpu", verify=False)
                engine.recommend(user_id=engine.user_ids()[0], k=3)
                engine.search("a", k=2)
            except BundleError:
                pass
            except Exception as exc:  # noqa: BLE001 - the point is to catch anything else
                failures.append((".".join(map(str, path)), bad, f"{type(exc).__name__}: {exc}"))
    assert failures == []
