"""Live updates (add/remove items, update users), save/reload, and concurrency of the runtime Engine."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from recengine.bundle import open_bundle
from recengine.data.text import build_item_text
from recengine.errors import BundleError, RequestError


@pytest.fixture()
def engine(lean_bundle):
    from recengine import Engine

    return Engine.open(lean_bundle, device="cpu", threads=1)


@pytest.fixture(scope="module")
def text_columns(lean_bundle):
    return open_bundle(lean_bundle).manifest["data"]["text_columns"]


NEW = {"item_id": "live-1", "title": "Galactic Robot Detectives (2031)", "genres": "Sci-Fi, Mystery"}


def test_a_field_the_bundle_has_no_column_for_is_refused(engine):
    """A typo or another data set's column ("tags" where the bundle's text is title + genres) would
    otherwise be dropped without a word: the item would be encoded from less text than its owner thinks."""
    with pytest.raises(RequestError, match=r"unknown field\(s\) 'tags', 'colour': the bundle's text columns are "
                                           r"title, genres"):
        engine.add_items([dict(NEW, tags="robots, space", colour="red")])
    assert "live-1" not in engine.item_ids()
    # what is allowed besides the text columns: a prebuilt text and attributes
    assert engine.add_items([{"item_id": "live-2", "text": "title: Robots", "attr_kind": "x", "ctx_a": "b"}]) == \
        ["live-2"]  # ctx_* is ignored, as an items table's is


def test_add_items_makes_them_retrievable_at_once(engine, text_columns):
    n = engine.n_items
    assert engine.add_items([NEW]) == ["live-1"]
    assert engine.n_items == n + 1
    # The stored text is built exactly like the catalogue's.
    assert engine.item_title("live-1") == NEW["title"] if text_columns[0] == "title" else True
    text = build_item_text(NEW, text_columns)
    assert engine.search(text, k=1)[0].item_id == "live-1"
    assert len(engine.similar_items("live-1", k=3)) == 3
    only_new = engine.recommend(user_id=engine.user_ids()[0], k=1, filter={"ids": ["live-1"]})
    assert [r.item_id for r in only_new] == ["live-1"]


def test_added_item_is_scored_by_its_text_vector(lean_bundle, text_columns):
    """A new item's retrieval vector is the encoder's item_vector for its text (the cold-start path): with the
    co-occurrence blend off its score is that vector against the user's; with it, the text stand-in only adds."""
    from recengine import Engine

    blended = Engine.open(lean_bundle, device="cpu", variant="fp32", retrieval="exact", rescore=False)
    blended.add_items([NEW])
    eng = Engine.open(lean_bundle, device="cpu", variant="fp32", retrieval="exact", rescore=False,
                      cooccur_weight=0.0)
    eng.add_items([NEW])
    _, item_vec = eng.stages().encode([build_item_text(NEW, text_columns)])
    user = eng.user_ids()[0]
    user_vec = eng.stages().user_tower([user])[0]
    (rec,) = eng.recommend(user_id=user, k=1, filter={"ids": ["live-1"]})
    assert rec.item_id == "live-1"
    assert abs(rec.score - float(item_vec[0] @ user_vec)) < 1e-3
    (with_blend,) = blended.recommend(user_id=user, k=1, filter={"ids": ["live-1"]})
    assert with_blend.score >= rec.score - 1e-6


def test_added_attributes_are_filterable_and_saved(engine, tmp_path):
    from recengine import Engine

    engine.add_items([
        {"item_id": "attr-1", "title": "Old Western", "attr_year": 1950, "attr_lang": "en"},
        {"item_id": "attr-2", "title": "New Western", "attr_year": 2020, "attr_lang": "fr"},
    ])
    user = engine.user_ids()[0]
    recs = engine.recommend(user_id=user, k=5, filter={"year": {"gte": 2000}})
    assert [r.item_id for r in recs] == ["attr-2"]
    recs = engine.recommend(user_id=user, k=5, filter={"attr_lang": ["en", "fr"]})
    assert {r.item_id for r in recs} == {"attr-1", "attr-2"}
    again = Engine.open(engine.save(tmp_path / "with-attrs"), device="cpu")
    assert [r.item_id for r in again.recommend(user_id=user, k=5, filter={"lang": "fr"})] == ["attr-2"]


def test_add_items_bad_input(engine):
    with pytest.raises(RequestError, match="no text"):
        engine.add_items([{"item_id": "x"}])
    with pytest.raises(RequestError, match="item_id must be a string"):
        engine.add_items([{"item_id": 3, "title": "t"}])
    with pytest.raises(RequestError, match="appears twice"):
        engine.add_items([{"item_id": "a", "title": "t"}, {"item_id": "a", "title": "u"}])
    with pytest.raises(RequestError, match="list of item mappings"):
        engine.add_items({"item_id": "a", "title": "t"})
    assert engine.add_items([]) == []


def test_add_existing_id_replaces_it(engine):
    first = engine.item_ids()[0]
    n = engine.n_items
    engine.add_items([{"item_id": first, "text": "title: A Completely Different Film\ngenres: Documentary"}])
    assert engine.n_items == n
    assert engine.item_title(first) == "A Completely Different Film"
    assert engine.search("title: A Completely Different Film\ngenres: Documentary", k=1)[0].item_id == first


def test_remove_items_stops_serving_them(engine):
    user = engine.user_ids()[0]
    top = [r.item_id for r in engine.recommend(user_id=user, k=5)]
    assert engine.remove_items(top[:2] + ["not-an-item"]) == 2
    after = [r.item_id for r in engine.recommend(user_id=user, k=20)]
    assert not set(top[:2]) & set(after)
    for item in top[:2]:
        assert item not in {r.item_id for r in engine.similar_items(top[2], k=50)}
        assert item not in {r.item_id for r in engine.search(engine.item_title(item) or "x", k=50)}
        with pytest.raises(RequestError, match="unknown item_id"):
            engine.similar_items(item)
    assert engine.remove_items(top[:2]) == 0
    with pytest.raises(RequestError):
        engine.remove_items("abc")


def test_heavy_removal_compacts_rows_and_index(lean_bundle):
    """Past the tombstone threshold the state is rebuilt without dead rows in the background: rows and index
    hold only live items afterwards, histories still resolve, removed items never come back."""
    from recengine import Engine

    eng = Engine.open(lean_bundle, device="cpu", retrieval="hnsw")
    ids = eng.item_ids()
    gone = ids[: int(len(ids) * 0.3)]
    user = eng.user_ids()[0]
    history_before = eng.history(user)
    eng.remove_items(gone)
    assert eng.wait_for_compaction(timeout=60)
    assert eng.storage() == {"rows": len(ids) - len(gone), "live": len(ids) - len(gone), "dead": 0}
    assert eng.index_forms()[0] != "none"
    assert eng.history(user) == [i for i in history_before if i not in set(gone)]
    recs = eng.recommend(user_id=user, k=10)
    assert len(recs) == 10 and not {r.item_id for r in recs} & set(gone)
    assert not {r.item_id for r in recs} & set(eng.history(user))


def test_writers_never_join_a_compaction_before_it_started(lean_bundle, monkeypatch):
    """The compaction thread is published only once started: a writer that joins it meanwhile (every write
    waits for a running compaction) must not get "cannot join thread before it is started" (found by a
    fuzzer: 2,577 lost writes in 20 s of 4 writer threads)."""
    import threading

    from recengine import Engine
    from recengine import engine as engine_module

    started = threading.Event()

    class SlowStart(threading.Thread):
        def start(self) -> None:
            if self.name == "recengine-compaction":
                started.set()
                time.sleep(0.3)  # another writer runs while the thread is being started
            super().start()

    monkeypatch.setattr(engine_module.threading, "Thread", SlowStart)
    eng = Engine.open(lean_bundle, device="cpu", retrieval="hnsw")
    ids = eng.item_ids()
    errors: list[BaseException] = []

    def other_writer() -> None:
        started.wait(10)
        try:
            eng.add_items([{"item_id": "during-start", "text": "added while the compaction starts"}])
        except BaseException as exc:  # noqa: BLE001 - the test reports it
            errors.append(exc)

    writer = threading.Thread(target=other_writer)
    writer.start()
    eng.remove_items(ids[: int(len(ids) * 0.3)])  # past the tombstone threshold: starts the compaction
    writer.join(10)
    assert not errors and eng.wait_for_compaction(timeout=60)
    assert "during-start" in eng.item_ids()


def test_churn_keeps_rows_bounded(lean_bundle):
    """Add + remove cycles: compaction keeps the rows held near the live count (memory of removed rows is
    released), and every cycle's item is served while it lives."""
    from recengine import Engine

    eng = Engine.open(lean_bundle, device="cpu", threads=1, retrieval="hnsw")
    n = eng.n_items
    peak = 0
    for i in range(120):
        eng.add_items([{"item_id": f"churn-{i}", "text": f"short lived item number {i}"}])
        assert eng.similar_items(f"churn-{i}", k=1)
        eng.remove_items([f"churn-{i}"])
        peak = max(peak, eng.storage()["rows"])
    assert eng.wait_for_compaction(timeout=60)
    assert eng.n_items == n
    assert peak <= int(n * 1.3) + 2  # never far past the 20 % tombstone threshold
    assert eng.storage()["rows"] <= int(n * 1.25) + 1


def test_update_user_refreshes_vector_and_history(engine):
    user = engine.user_ids()[3]
    before = engine.recommend(user_id=user, k=10)
    events = [r.item_id for r in before[:3]] + ["ghost-item"]
    result = engine.update_user(user, events)
    assert result.appended == 3 and result.skipped == ("ghost-item",) and not result.created
    assert engine.history(user)[-3:] == events[:3]
    after = engine.recommend(user_id=user, k=10)
    assert not {r.item_id for r in after} & set(events[:3])  # now seen
    assert [r.item_id for r in after] != [r.item_id for r in before]


def test_update_user_creates_new_user(engine):
    items = engine.item_ids()[:4]
    result = engine.update_user("brand-new-user", items)
    assert result.created and result.history_length == 4
    recs = engine.recommend(user_id="brand-new-user", k=5)
    assert recs.source == "stored" and len(recs) == 5 and not {r.item_id for r in recs} & set(items)
    with pytest.raises(RequestError):
        engine.update_user("u", "item")
    with pytest.raises(RequestError):
        engine.update_user(5, ["1"])


def test_save_reopens_and_serves_identically(engine, tmp_path):
    from recengine import Engine

    engine.add_items([NEW])
    engine.update_user(engine.user_ids()[0], ["live-1"])
    out = engine.save(tmp_path / "saved")
    again = Engine.open(out, device="cpu", threads=1)
    assert again.n_items == engine.n_items and again.n_users == engine.n_users
    for user in engine.user_ids()[:8]:
        a = engine.recommend(user_id=user, k=10)
        b = again.recommend(user_id=user, k=10)
        assert [r.item_id for r in a] == [r.item_id for r in b]
        assert np.allclose([r.score for r in a], [r.score for r in b], atol=1e-5)
    assert again.search(build_item_text(NEW, again.manifest["data"]["text_columns"]), k=1)[0].item_id == "live-1"
    assert again.history(engine.user_ids()[0])[-1] == "live-1"
    assert again.manifest["saved_from"]["bundle"]
    with pytest.raises(BundleError, match="already exists"):
        engine.save(out)


def test_save_after_removals_drops_them(engine, tmp_path):
    from recengine import Engine

    gone = engine.item_ids()[:3]
    engine.remove_items(gone)
    again = Engine.open(engine.save(tmp_path / "compacted"), device="cpu")
    assert again.n_items == engine.n_items
    assert not set(gone) & set(again.item_ids())
    user = engine.user_ids()[1]
    assert not set(gone) & set(again.history(user))
    assert [r.item_id for r in again.recommend(user_id=user, k=10)] == \
        [r.item_id for r in engine.recommend(user_id=user, k=10)]
    # the index was rebuilt in the form it was loaded in
    spec = again.manifest["index"]["item"]
    assert spec["count"] == again.n_items
    assert spec["dim"] == again.manifest["dims"]["item"] + (1 if spec.get("transform") == "mips_augment" else 0)


def test_reload_swaps_without_dropping_requests(engine, lean_bundle):
    user = engine.user_ids()[0]
    expected = [r.item_id for r in engine.recommend(user_id=user, k=5)]
    errors: list[BaseException] = []
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                got = [r.item_id for r in engine.recommend(user_id=user, k=5)]
                assert got == expected
            except BaseException as exc:  # noqa: BLE001 - collected for the assertion below
                errors.append(exc)
                return

    threads = [threading.Thread(target=serve) for _ in range(3)]
    for t in threads:
        t.start()
    engine.reload(lean_bundle)
    engine.reload()
    stop.set()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors[:1]
    with pytest.raises(BundleError):
        engine.reload("/no/such/bundle")
    assert [r.item_id for r in engine.recommend(user_id=user, k=5)] == expected  # still serving


def test_concurrent_readers_and_writers(lean_bundle, monkeypatch):
    """Readers recommend/search/similar while writers add, remove (up to a compaction) and update; no
    errors, consistent results (never a removed item, never a duplicate, always k results). Search runs its
    BM25 half on the engine's helper thread (`recengine.overlap`) whatever this machine's CPU count."""
    from recengine import Engine, overlap

    monkeypatch.setattr(overlap, "usable_cpus", lambda: 4)
    engine = Engine.open(lean_bundle, device="cpu", threads=1, retrieval="hnsw")
    assert engine._state.helper is not None
    users = engine.user_ids()[:10]
    removable = engine.item_ids()[-40:]
    removed: set[str] = set()
    removed_lock = threading.Lock()
    errors: list[BaseException] = []
    stop = threading.Event()

    def reader(seed: int):
        rng = np.random.default_rng(seed)
        while not stop.is_set():
            try:
                user = users[int(rng.integers(len(users)))]
                with removed_lock:
                    gone_before = set(removed)
                recs = engine.recommend(user_id=user, k=8, diversity=0.2 if seed % 2 else 0.0)
                ids = [r.item_id for r in recs]
                assert len(ids) == 8 and len(set(ids)) == 8
                assert not set(ids) & gone_before
                assert len(engine.similar_items(ids[0], k=3)) <= 3
                found = {r.item_id for r in engine.search("stress test movie robots in space", k=6)}
                assert not found & gone_before
            except RequestError as exc:  # similar_items on an item removed in between is a valid outcome
                if "unknown item_id" not in str(exc):
                    errors.append(exc)
                    return
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)
                return

    def writer():
        try:
            for i in range(8):
                engine.add_items([{"item_id": f"stress-{i}", "title": f"Stress Test Movie {i}", "genres": "Drama"}])
                victim = removable[i * 5 : i * 5 + 5]
                engine.remove_items(victim)
                with removed_lock:  # only after the removal returned: readers then must not see them
                    removed.update(victim)
                engine.update_user(users[i % len(users)], [f"stress-{i}"])
            # a big removal past the compaction threshold: the indexes are rebuilt while readers run
            bulk = [i for i in engine.item_ids()[: engine.n_items // 4] if not i.startswith("stress-")]
            engine.remove_items(bulk)
            with removed_lock:
                removed.update(bulk)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    readers = [threading.Thread(target=reader, args=(s,)) for s in range(4)]
    writers = [threading.Thread(target=writer)]
    for t in readers + writers:
        t.start()
    for t in writers:
        t.join(timeout=120)
    stop.set()
    for t in readers:
        t.join(timeout=60)
    assert not errors, repr(errors[:3])
    assert not set(engine.item_ids()) & removed
    assert {f"stress-{i}" for i in range(8)} <= set(engine.item_ids())
    assert engine.wait_for_compaction(timeout=60)
    rows = engine.storage()
    assert rows["rows"] < engine.n_items + len(removed)  # rows were compacted under load (dead ones dropped)


def test_update_user_counts_first_interactions_into_popularity(engine):
    engine.add_items([{**NEW, "item_id": "live-pop"}])
    cat = engine._state.catalogue  # white-box: popularity has no public accessor
    row = cat.row_of["live-pop"]
    assert cat.array("popularity")[row] == 0 and cat.array("pop_bucket")[row] == 0
    users = engine.user_ids()[:2]
    engine.update_user(users[0], ["live-pop", "live-pop"])
    assert cat.array("popularity")[row] == 1  # a distinct (user, item) pair counts once
    engine.update_user(users[0], ["live-pop"])
    assert cat.array("popularity")[row] == 1
    engine.update_user(users[1], ["live-pop"])
    assert cat.array("popularity")[row] == 2
    edges = np.asarray(engine._state.manifest["vocab"]["pop_bucket_edges"])
    assert cat.array("pop_bucket")[row] == 1 + np.searchsorted(edges, 2, side="right")


def _stored(engine, item_id: str) -> tuple[np.ndarray, np.ndarray]:
    cat = engine._state.catalogue  # noqa: SLF001 - white-box: stored vectors have no public accessor
    (row,), _ = cat.rows_of([item_id])
    return cat.vectors[row].copy(), cat.text_embeddings[row].copy()


def test_items_are_stored_through_fp32_weights_beside_an_int8_encoder(lean_bundle):
    """An INT8 engine encodes the items it stores (add_items, reencode_items) with the bundle's fp32 encoder,
    so they land where the export would put them; `item_variant="int8"` opts into the faster INT8 encoder,
    whose vectors differ. Queries keep the serving (INT8) encoder either way."""
    from recengine import Engine

    fp32 = Engine.open(lean_bundle, device="cpu", threads=1, variant="fp32")
    int8 = Engine.open(lean_bundle, device="cpu", threads=1, variant="int8")
    opt_in = Engine.open(lean_bundle, device="cpu", threads=1, variant="int8", item_variant="int8")
    assert (fp32.item_variant, int8.item_variant, opt_in.item_variant) == ("fp32", "fp32", "int8")
    assert int8.variants["encoder"] == "int8"
    models = int8._state.models  # noqa: SLF001 - white-box: the fp32 session is created on first use only
    int8.warmup()
    int8.search("robots in space", k=3)  # queries keep the serving (INT8) encoder
    assert models._item_session is None
    for e in (fp32, int8, opt_in):
        e.add_items([NEW])
    ref_vec, ref_emb = _stored(fp32, "live-1")
    vec, emb = _stored(int8, "live-1")
    np.testing.assert_allclose(vec, ref_vec, atol=1e-5)
    np.testing.assert_allclose(emb, ref_emb, atol=1e-5)
    assert models._item_session is not None and models._item_session is not models.encoder
    q_vec, _ = _stored(opt_in, "live-1")
    assert np.abs(q_vec - ref_vec).max() > 1e-4  # the opt-in really stores INT8 vectors
    # re-encoding a catalogue item follows the same rule
    item = int8.item_ids()[0]
    for e in (fp32, int8, opt_in):
        assert e.reencode_items([item]) == 1
    np.testing.assert_allclose(_stored(int8, item)[0], _stored(fp32, item)[0], atol=1e-5)
    assert np.abs(_stored(opt_in, item)[0] - _stored(fp32, item)[0]).max() > 1e-4


def test_item_variant_is_validated(lean_bundle):
    from recengine import Engine

    with pytest.raises(RequestError, match="item_variant must be one of"):
        Engine.open(lean_bundle, device="cpu", item_variant="bf16")
    with pytest.raises(RequestError, match="item_variant must be one of"):
        Engine.open(lean_bundle, device="cpu", item_variant=["fp32"])  # type: ignore[arg-type]
