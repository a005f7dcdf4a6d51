"""Multimodal item vectors (`item_vectors.npy`) end to end: they carry what the text cannot.

A toy catalogue of two kinds of item whose texts are drawn from ONE shared vocabulary (the text says
nothing about the kind) and two groups of users, each interacting only with its kind. The media vector of
an item encodes its kind (plus noise). One item of each kind has no interactions. Exported twice (quick
profile, tiny encoder): with `item_vectors.npy` the cold item of a kind must enter the top-k of that kind's
users and not the other group's; without it (same data, no vectors) it cannot, which the same check shows.
Items added live with a `vector` behave the same; bad vectors are refused; `Engine.save` keeps the
projection.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from recengine.export.cold_start import ColdGenerator
from tests.fixtures.toy_groups import write_group_interactions

WORDS = "space robots laser galaxy starship garden flowers cooking recipes kitchen".split()
KINDS = ("a", "b")
PER_KIND, N_COLD, USERS_PER_KIND, K, D_MEDIA = 30, 4, 24, 10, 8
SIGNAL = 3.0


def media_vector(kind: str, rng: np.random.Generator) -> np.ndarray:
    """The kind on the first two dimensions (+-SIGNAL), noise (sd 1) everywhere."""
    v = rng.normal(size=D_MEDIA)
    v[0] += SIGNAL if kind == "a" else -SIGNAL
    v[1] += -SIGNAL if kind == "a" else SIGNAL
    return v.astype(np.float32)


def toy(root: Path, with_vectors: bool) -> Path:
    rng = np.random.default_rng(0)
    root.mkdir(parents=True)
    vectors = []
    with (root / "items.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["item_id", "title"])
        for kind in KINDS:
            for i in range(PER_KIND + N_COLD):  # the last N_COLD of each kind stay cold
                w.writerow([f"{kind}{i}", " ".join(rng.choice(WORDS, size=4, replace=False)) + f" {i}"])
                vectors.append(media_vector(kind, rng))
    if with_vectors:
        np.save(root / "item_vectors.npy", np.stack(vectors))
    write_group_interactions(root, KINDS, USERS_PER_KIND, PER_KIND, rng)
    return root


def export(tmp: pytest.TempPathFactory, encoder: Path, with_vectors: bool) -> Path:
    from recengine.export import ExportConfig, run_export

    name = "media" if with_vectors else "nomedia"
    data = toy(tmp.mktemp(name) / "data", with_vectors)
    cfg = ExportConfig.from_profile("quick").override({"encoder.path": str(encoder), "quiet": True,
                                                       "ablations": "", "encoder.epochs": 4})
    return run_export(data, tmp.mktemp(f"{name}_bundle") / "bundle", cfg)


@pytest.fixture(scope="module")
def media_bundle(tmp_path_factory: pytest.TempPathFactory, tiny_encoder_dir: Path) -> Path:
    return export(tmp_path_factory, tiny_encoder_dir, with_vectors=True)


@pytest.fixture(scope="module")
def plain_bundle(tmp_path_factory: pytest.TempPathFactory, tiny_encoder_dir: Path) -> Path:
    return export(tmp_path_factory, tiny_encoder_dir, with_vectors=False)


def open_engine(bundle: Path):
    from recengine import Engine

    return Engine.open(bundle, device="cpu", variant="fp32", retrieval="exact")


def in_top_k(engine, item: str, group: str) -> float:
    """Share of `group`'s users whose top K holds `item`."""
    hits = [item in {r.item_id for r in engine.recommend(user_id=f"{group}-user{u}", k=K)}
            for u in range(USERS_PER_KIND)]
    return float(np.mean(hits))


def reach(engine, items_of: dict[str, list[str]]) -> dict[str, float]:
    """own: mean share of a kind's users holding one of its cold items in their top K (over the items);
    other: the same for the other group's users."""
    own = [in_top_k(engine, i, k) for k in KINDS for i in items_of[k]]
    other = [in_top_k(engine, i, o) for k, o in zip(KINDS, reversed(KINDS)) for i in items_of[k]]
    return {"own": round(float(np.mean(own)), 3), "other": round(float(np.mean(other)), 3)}


def reaches_its_group(r: dict[str, float]) -> bool:
    return r["own"] >= 0.75 and r["other"] <= 0.25


CATALOGUE_COLD = {k: [f"{k}{PER_KIND + j}" for j in range(N_COLD)] for k in KINDS}


# ---------------------------------------------------------------------- export


def test_the_projection_is_written_only_when_the_data_has_vectors(media_bundle: Path, plain_bundle: Path):
    from recengine.bundle.format import MEDIA_FILES

    with_m = json.loads((media_bundle / "manifest.json").read_text())
    without = json.loads((plain_bundle / "manifest.json").read_text())
    for key, rel in MEDIA_FILES.items():
        assert with_m["items"][key] == rel
        assert rel in with_m["files"]
        assert key not in without["items"]
        assert rel not in without["files"]
        assert not (plain_bundle / rel).exists()
    proj = np.load(media_bundle / MEDIA_FILES["media_projection"])
    assert proj.shape == (with_m["dims"]["item"], D_MEDIA)
    assert np.load(media_bundle / MEDIA_FILES["media_scale"]).shape == (D_MEDIA,)
    # cold catalogue items: vectors = the encoder's item_vector + the media part (kept in the difference)
    from recengine.bundle import open_bundle

    vectors = open_bundle(media_bundle).load_npy(with_m["items"]["vectors"])  # format 2: held by index/items.hnsw
    text_vectors = np.load(media_bundle / "items/text_vectors.npy")
    ids = json.loads((media_bundle / "items/ids.json").read_text())
    cold = [ids.index(i) for k in KINDS for i in CATALOGUE_COLD[k]]
    assert np.linalg.norm(vectors[cold] - text_vectors[cold], axis=1).min() > 1e-3


def test_cold_items_reach_their_group_only_with_the_media_vectors(media_bundle: Path, plain_bundle: Path):
    with_m = reach(open_engine(media_bundle), CATALOGUE_COLD)
    without = reach(open_engine(plain_bundle), CATALOGUE_COLD)
    print(f"catalogue cold items, share of users with it in their top {K}: with media {with_m}, without {without}")
    assert reaches_its_group(with_m), with_m
    assert not reaches_its_group(without), without  # the text alone cannot tell the kinds apart


# ---------------------------------------------------------------------- add_items


def new_items(rng_seed: int = 7) -> list[dict]:
    rng = np.random.default_rng(rng_seed)
    return [{"item_id": f"new-{k}{j}", "title": " ".join(rng.choice(WORDS, size=4, replace=False)),
             "vector": media_vector(k, rng).tolist()} for k in KINDS for j in range(N_COLD)]


ADDED = {k: [f"new-{k}{j}" for j in range(N_COLD)] for k in KINDS}


def replace_the_cold_items(engine, items: list[dict]) -> None:
    """The catalogue's cold items removed, `items` added live in their place (a user's own-kind candidates
    stay 6 unseen warm items + N_COLD new ones: all fit in the top K)."""
    engine.remove_items([i for k in KINDS for i in CATALOGUE_COLD[k]])
    engine.add_items(items)


def test_items_added_with_a_vector_reach_their_group(media_bundle: Path):
    engine = open_engine(media_bundle)
    replace_the_cold_items(engine, new_items())
    r = reach(engine, ADDED)
    print(f"items added live with a vector: {r}")
    assert reaches_its_group(r), r
    # the same items without their vectors: text alone, nothing to tell the kinds apart
    engine.add_items([{k: v for k, v in item.items() if k != "vector"} for item in new_items()])
    without = reach(engine, ADDED)
    print(f"the same items added without their vector: {without}")
    assert not reaches_its_group(without), without


def test_the_added_vector_follows_the_documented_rule(media_bundle: Path):
    from recengine.bundle.format import MEDIA_FILES

    engine = open_engine(media_bundle)
    item = new_items()[0]
    engine.add_items([item])
    st = engine._state
    row = st.catalogue.row_of[item["item_id"]]
    _, item_vec = st.models.encode([st.catalogue.texts[row]], batch_size=1)
    proj, mean, scale = (np.load(media_bundle / MEDIA_FILES[k]) for k in ("media_projection", "media_mean",
                                                                          "media_scale"))
    expected = item_vec[0] + proj @ ((np.asarray(item["vector"], np.float32) - mean) / scale)
    np.testing.assert_allclose(st.catalogue.array("vectors")[row], expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(st.catalogue.array("text_vectors")[row], item_vec[0], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("vector, words", [
    ([0.0] * (D_MEDIA - 1), "length 7"),
    ([0.0] * (D_MEDIA + 1), "length 9"),
    ([], "length 0"),
    ([float("nan")] + [0.0] * (D_MEDIA - 1), "non-finite"),
    ([float("inf")] + [0.0] * (D_MEDIA - 1), "non-finite"),
    ([1e39] + [0.0] * (D_MEDIA - 1), "float32 range"),
    ([10**400] + [0] * (D_MEDIA - 1), "numbers"),
    ("0,0,0,0,0,0,0,0", "must be a list"),
    ({"x": 1.0}, "must be a list"),
    (3.0, "must be a list"),
    (["1"] * D_MEDIA, "numbers only"),
    ([True] * D_MEDIA, "numbers only"),
    ([[0.0] * D_MEDIA], "numbers only"),
])
def test_bad_vectors_are_refused_naming_the_problem(media_bundle: Path, vector, words):
    from recengine.errors import RequestError

    engine = open_engine(media_bundle)
    n = engine.n_items
    with pytest.raises(RequestError, match=words) as info:
        engine.add_items([{"item_id": "bad", "title": "space garden", "vector": vector}])
    assert "'bad'" in str(info.value)
    assert engine.n_items == n  # nothing added


def test_a_bundle_without_media_refuses_a_vector(plain_bundle: Path):
    from recengine.errors import RequestError

    engine = open_engine(plain_bundle)
    with pytest.raises(RequestError, match="no media projection"):
        engine.add_items([{"item_id": "x", "title": "space garden", "vector": [0.0] * D_MEDIA}])
    assert engine.add_items([{"item_id": "x", "title": "space garden", "vector": None}]) == ["x"]


def test_save_keeps_the_projection_and_reencode_keeps_the_media_part(media_bundle: Path, tmp_path: Path):
    from recengine import Engine
    from recengine.bundle.format import MEDIA_FILES

    engine = open_engine(media_bundle)
    replace_the_cold_items(engine, new_items())
    saved = engine.save(tmp_path / "saved")
    for rel in MEDIA_FILES.values():
        assert (saved / rel).read_bytes() == (media_bundle / rel).read_bytes()
    again = open_engine(saved)
    assert again._state.media is not None and again._state.media.dim == D_MEDIA
    assert reaches_its_group(reach(again, ADDED))
    # a new add on the reopened bundle still takes vectors
    again.add_items([{**new_items(11)[0], "item_id": "new-again"}])
    assert in_top_k(again, "new-again", "a") >= 0.75
    # re-encoding keeps vectors - text_vectors (the media part of an added item)
    cat = again._state.catalogue
    added = [i for k in KINDS for i in ADDED[k]]
    rows = [cat.row_of[i] for i in added]
    before = cat.array("vectors")[rows] - cat.array("text_vectors")[rows]
    assert np.linalg.norm(before, axis=1).min() > 1e-3
    again.reencode_items(added)
    cat = again._state.catalogue
    after = cat.array("vectors")[rows] - cat.array("text_vectors")[rows]
    np.testing.assert_allclose(after, before, rtol=1e-4, atol=1e-5)
    assert reaches_its_group(reach(again, ADDED))
    # reopened from a bundle without the projection's files named: refused, never silently dropped
    broken = tmp_path / "broken"
    shutil.copytree(saved, broken)
    manifest = json.loads((broken / "manifest.json").read_text())
    del manifest["items"]["media_scale"]
    (broken / "manifest.json").write_text(json.dumps(manifest))
    from recengine.errors import BundleError

    with pytest.raises(BundleError, match="media"):
        Engine.open(broken, device="cpu", variant="fp32", retrieval="exact", verify=False)


# ---------------------------------------------------------------------- units


def test_the_generator_uses_the_media_block():
    rng = np.random.default_rng(3)
    e = rng.normal(size=(300, 6))
    m = rng.normal(size=(300, 4)) * 5 + 2  # unstandardised on purpose
    v = e @ rng.normal(size=(3, 6)).T + ((m - 2) / 5) @ rng.normal(size=(3, 4)).T + 1.0
    g = ColdGenerator.fit(e, v, np.arange(300), 1e-6, media=m)
    np.testing.assert_allclose(g.vectors(e, m), v, atol=1e-3)
    text_only = ColdGenerator.fit(e, v, np.arange(300), 1e-6)
    assert np.abs(text_only.vectors(e) - v).mean() > 10 * np.abs(g.vectors(e, m) - v).mean()
    assert g.W_media is not None and g.W_media.shape == (3, 4)
    np.testing.assert_allclose(g.vectors(e, m), g.vectors(e) + g.media_vectors(m), atol=1e-5)


def test_the_loader_still_validates_item_vectors(tmp_path: Path):
    from recengine.data import load_dataset
    from recengine.errors import DataError

    data = toy(tmp_path / "data", with_vectors=True)
    assert load_dataset(data).items.vectors.shape == (2 * (PER_KIND + N_COLD), D_MEDIA)
    np.save(data / "item_vectors.npy", np.zeros((5, D_MEDIA), np.float32))
    with pytest.raises(DataError, match="rows"):
        load_dataset(data)
    bad = np.zeros((2 * (PER_KIND + N_COLD), D_MEDIA), np.float32)
    bad[3, 1] = np.nan
    np.save(data / "item_vectors.npy", bad)
    with pytest.raises(DataError, match="non-finite"):
        load_dataset(data)


def test_the_warm_media_projection_starts_at_zero_and_learns():
    import torch

    from recengine.export.item_vectors import ItemVectors

    rng = np.random.default_rng(0)
    t, g = rng.normal(size=(20, 4)), rng.normal(size=(20, 4))
    pop = np.arange(20) % 3
    m = rng.normal(size=(20, 5)) * 4 + 1
    plain, with_m = ItemVectors(t, g, pop), ItemVectors(t, g, pop, media=m)
    torch.testing.assert_close(with_m(), plain())  # zero at the start: the same model
    loss = (with_m() ** 2).sum()
    loss.backward()
    assert with_m.media_proj is not None and with_m.media_proj.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("key, array, words", [
    ("media_projection", np.zeros((3, D_MEDIA), np.float32), "expected"),
    ("media_mean", np.zeros(D_MEDIA + 1, np.float32), "expected"),
    ("media_scale", np.zeros(D_MEDIA, np.float32), "<= 0"),
    ("media_scale", np.full(D_MEDIA, np.nan, np.float32), "non-finite"),
])
def test_a_broken_media_projection_is_refused_at_open(media_bundle: Path, tmp_path: Path, key, array, words):
    from recengine import Engine
    from recengine.bundle.format import MEDIA_FILES
    from recengine.errors import BundleError

    broken = tmp_path / "broken"
    shutil.copytree(media_bundle, broken)
    np.save(broken / MEDIA_FILES[key], array)
    with pytest.raises(BundleError, match=words):
        Engine.open(broken, device="cpu", variant="fp32", retrieval="exact", verify=False)


def test_http_add_items_takes_the_vector(media_bundle: Path, plain_bundle: Path):
    """`POST /items` carries `vector` to `Engine.add_items` (the same rule; bad vectors are a 400)."""
    pytest.importorskip("starlette")
    from starlette.testclient import TestClient

    from recengine.server import ServerConfig, create_app

    item = new_items()[0]
    for bundle, ok in ((media_bundle, True), (plain_bundle, False)):
        engine = open_engine(bundle)
        with TestClient(create_app(ServerConfig(bundle=str(bundle)), engine=engine),
                        raise_server_exceptions=False) as client:
            got = client.post("/items", json={"items": [item]})
            if ok:
                assert got.status_code == 200, got.text
                direct = open_engine(bundle)
                direct.add_items([item])
                assert [r.item_id for r in engine.similar_items(item["item_id"], k=5)] == \
                    [r.item_id for r in direct.similar_items(item["item_id"], k=5)]
                bad = client.post("/items", json={"items": [{**item, "item_id": "x", "vector": item["vector"][:2]}]})
                assert bad.status_code == 400 and "vector" in bad.json()["message"]
            else:
                assert got.status_code == 400 and "vector" in got.json()["message"]
