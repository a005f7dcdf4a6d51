"""The contract every retrieval backend keeps, tested once and run against each implementation.

In the style of implicit's `RecommenderBase` tests: `RetrievalContract` states what any backend must do
(`Backend.search` and `refresh`, and `retrieve()` on top of it), and one small subclass per backend says
how to build it: exact numpy, HNSW plain, HNSW MIPS-augmented, ONNX exact (skipped, with the reason, where
the `onnx` package is missing). A new backend gets the whole contract by adding one subclass.

The contract (see `recengine.retrieval`): labels are catalogue rows, best first, scores are the exact inner
products of the returned rows, removed rows (tombstones) are never returned, a row list shorter than `k`
is padded with -1 at the end only, asking for more rows than are live returns the live ones, `refresh`
follows appended and removed rows, and `retrieve()` applies filters (small allowed subsets by an exact
scan, large ones by over-fetching the backend) and per-query exclusions. Exact backends must return the
brute-force answer (compared by score, so ties may come in any order); HNSW is approximate, so its lists
are held to every structural rule and to a recall floor.

Small random matrices made here (norms spread 0.5-2x, as real item vectors are): no bundle needed.
"""

from __future__ import annotations

import numpy as np
import pytest

from recengine.retrieval import ExactBackend, HnswBackend, OnnxExactBackend, retrieve
from recengine.scan import Scanner

N, D = 150, 12


def catalogue(seed: int = 0, n: int = N, d: int = D) -> tuple[np.ndarray, np.ndarray]:
    """Rows of varying norm and a handful of queries."""
    rng = np.random.default_rng(seed)
    matrix = (rng.standard_normal((n, d)) * rng.uniform(0.5, 2.0, (n, 1))).astype(np.float32)
    queries = rng.standard_normal((6, d)).astype(np.float32)
    return matrix, queries


def brute(matrix: np.ndarray, q: np.ndarray, valid: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k rows among `valid` and their scores, best first."""
    scores = (matrix.astype(np.float64) @ q.astype(np.float64))
    scores[~valid] = -np.inf
    order = np.argsort(-scores, kind="stable")
    order = order[np.isfinite(scores[order])][:k]
    return order, scores[order]


class RetrievalContract:
    """Mixin: subclasses implement `make(matrix, alive)`; `approximate` backends are held to `min_recall`."""

    approximate = False
    min_recall = 1.0

    def make(self, matrix: np.ndarray, alive: np.ndarray):  # pragma: no cover - every subclass overrides
        raise NotImplementedError

    # ------------------------------------------------------------------ helpers
    def open(self, matrix: np.ndarray, alive: np.ndarray):
        """The backend as the engine holds it: built over every stored row, then told about the tombstones."""
        backend = self.make(matrix, np.ones(matrix.shape[0], dtype=bool))
        removed = np.flatnonzero(~alive)
        backend.refresh(matrix, alive, None, removed)
        return backend

    def check_list(self, labels: np.ndarray, scores: np.ndarray, matrix: np.ndarray, q: np.ndarray,
                   valid: np.ndarray, k: int, full: bool = False) -> np.ndarray:
        """One query's result against the contract; returns its real (non-padding) rows.

        `full`: the list must hold min(k, valid rows) rows whatever the backend (`retrieve`, or k >= live)."""
        assert labels.dtype == np.int64 and labels.ndim == 1 and labels.shape == scores.shape
        assert labels.shape[0] <= k
        n_real = int((labels >= 0).sum())
        assert (labels[:n_real] >= 0).all() and (labels[n_real:] == -1).all(), f"-1 only as padding: {labels}"
        rows = labels[:n_real]
        assert len(set(rows.tolist())) == n_real, f"duplicate rows: {rows}"
        assert valid[rows].all(), f"returned rows that are removed/filtered/excluded: {rows[~valid[rows]]}"
        got = scores[:n_real].astype(np.float64)
        assert np.allclose(got, matrix[rows].astype(np.float64) @ q, rtol=1e-5, atol=1e-4), "scores != u.v"
        assert (np.diff(got) <= 1e-5).all(), f"not best first: {got}"
        want_rows, want_scores = brute(matrix, q, valid, k)
        if not self.approximate:
            assert n_real == want_rows.size
            assert np.allclose(got, want_scores, rtol=1e-5, atol=1e-4)  # by score: ties may come in any order
        elif full:
            assert n_real == want_rows.size
        return rows

    def recall(self, found: list[np.ndarray], matrix: np.ndarray, queries: np.ndarray, valid: np.ndarray,
               k: int) -> float:
        hits = [len(set(rows.tolist()) & set(brute(matrix, q, valid, k)[0].tolist())) / max(1, min(k, valid.sum()))
                for rows, q in zip(found, queries)]
        return float(np.mean(hits))

    # ------------------------------------------------------------------ search
    def test_best_first_with_exact_inner_products(self) -> None:
        matrix, queries = catalogue(1)
        alive = np.ones(N, dtype=bool)
        labels, scores = self.open(matrix, alive).search(queries, 10)
        assert labels.shape[0] == queries.shape[0]
        found = [self.check_list(labels[b], scores[b], matrix, q, alive, 10) for b, q in enumerate(queries)]
        assert all(rows.size == 10 for rows in found)
        assert self.recall(found, matrix, queries, alive, 10) >= self.min_recall

    def test_k_above_the_live_count_returns_exactly_the_live_rows(self) -> None:
        matrix, queries = catalogue(2)
        alive = np.ones(N, dtype=bool)
        alive[::3] = False
        labels, scores = self.open(matrix, alive).search(queries, N + 40)
        for b, q in enumerate(queries):
            rows = self.check_list(labels[b], scores[b], matrix, q, alive, N + 40, full=True)
            assert set(rows.tolist()) == set(np.flatnonzero(alive).tolist())

    def test_short_lists_are_padded_or_cut_never_filled_with_dead_rows(self) -> None:
        """Only 4 rows live: any k beyond gives those 4 (then -1 padding, or a shorter list), nothing else."""
        matrix, queries = catalogue(3)
        alive = np.zeros(N, dtype=bool)
        alive[[5, 17, 60, 149]] = True
        backend = self.open(matrix, alive)
        for k in (4, 5, 30):
            labels, scores = backend.search(queries, k)
            for b, q in enumerate(queries):
                rows = self.check_list(labels[b], scores[b], matrix, q, alive, k, full=True)
                assert sorted(rows.tolist()) == [5, 17, 60, 149]

    def test_nothing_live_and_k_zero(self) -> None:
        matrix, queries = catalogue(4)
        dead = np.zeros(N, dtype=bool)
        labels, _ = self.open(matrix, dead).search(queries, 5)
        assert labels.shape[0] == queries.shape[0] and (labels == -1).all()
        labels, scores = self.open(matrix, np.ones(N, dtype=bool)).search(queries, 0)
        assert labels.shape == scores.shape == (queries.shape[0], 0)

    def test_tombstones_are_never_returned(self) -> None:
        """The true best rows of every query removed: none of them comes back, at any k."""
        matrix, queries = catalogue(5)
        alive = np.ones(N, dtype=bool)
        for q in queries:
            alive[brute(matrix, q, np.ones(N, dtype=bool), 3)[0]] = False
        backend = self.open(matrix, alive)
        for k in (1, 10, N):
            labels, scores = backend.search(queries, k)
            for b, q in enumerate(queries):
                self.check_list(labels[b], scores[b], matrix, q, alive, k, full=(k == N))

    def test_refresh_follows_appended_and_removed_rows(self) -> None:
        matrix, queries = catalogue(6)
        base = matrix[:100]
        backend = self.make(base, np.ones(100, dtype=bool))
        # append 30 rows (rows are never reused), two of which are the best match of queries 0 and 1
        extra, _ = catalogue(7, n=30)
        extra[3], extra[11] = 8 * queries[0], 8 * queries[1]
        grown = np.concatenate([base, extra])
        alive = np.ones(130, dtype=bool)
        backend.refresh(grown, alive, np.arange(100, 130), None)
        labels, scores = backend.search(queries, 10)
        assert labels[0, 0] == 103 and labels[1, 0] == 111
        for b, q in enumerate(queries):
            self.check_list(labels[b], scores[b], grown, q, alive, 10)
        # remove the planted rows and a block of old ones
        removed = np.concatenate([[103, 111], np.arange(0, 40)])
        alive[removed] = False
        backend.refresh(grown, alive, None, removed)
        labels, scores = backend.search(queries, 10)
        for b, q in enumerate(queries):
            rows = self.check_list(labels[b], scores[b], grown, q, alive, 10)
            assert not set(rows.tolist()) & set(removed.tolist())
        labels, scores = backend.search(queries, 500)
        for b, q in enumerate(queries):
            rows = self.check_list(labels[b], scores[b], grown, q, alive, 500, full=True)
            assert set(rows.tolist()) == set(np.flatnonzero(alive).tolist())

    def test_ties_give_distinct_rows_of_the_tied_score(self) -> None:
        """Twelve identical rows tie for the top: k=5 gives 5 distinct ones of them, k=15 all 12 first."""
        rng = np.random.default_rng(8)
        top = rng.standard_normal(D).astype(np.float32)
        matrix = np.concatenate([np.repeat(top[None], 12, axis=0),
                                 0.05 * rng.standard_normal((60, D)).astype(np.float32)])
        alive = np.ones(matrix.shape[0], dtype=bool)
        backend = self.open(matrix, alive)
        q = top[None]
        labels, scores = backend.search(q, 5)
        rows = self.check_list(labels[0], scores[0], matrix, top, alive, 5)
        assert set(rows.tolist()) <= set(range(12)) and len(rows) == 5
        assert np.ptp(scores[0]) <= 1e-5 * abs(float(scores[0, 0]))
        labels, scores = backend.search(q, 15)
        rows = self.check_list(labels[0], scores[0], matrix, top, alive, 15)
        if not self.approximate:
            assert set(rows[:12].tolist()) == set(range(12))

    # ------------------------------------------------------------------ retrieve(): filters and exclusions
    def run_retrieve(self, matrix, alive, queries, k, allowed=None, exclude=None):
        """`retrieve()` over this backend; also returns how many times it searched the backend itself."""
        backend = self.open(matrix, alive)
        exact = ExactBackend(matrix, alive)
        calls = []
        search = backend.search
        backend.search = lambda q, kk: calls.append(kk) or search(q, kk)
        results = retrieve(backend, exact, matrix, alive, queries, k, allowed=allowed, exclude=exclude)
        return results, len(calls)

    @pytest.mark.parametrize("fraction", [0.03, 0.5])
    def test_retrieve_honours_filters_tombstones_and_exclusions(self, fraction: float) -> None:
        """A small allowed subset (exact scan) and a large one (over-fetch + post-filter), with removed
        rows and per-query exclusions (each query's own best rows): only allowed, live, unexcluded rows."""
        matrix, queries = catalogue(9)
        rng = np.random.default_rng(10)
        alive = np.ones(N, dtype=bool)
        alive[rng.choice(N, 15, replace=False)] = False
        allowed = np.zeros(N, dtype=bool)
        allowed[rng.choice(N, max(2, int(fraction * N)), replace=False)] = True
        exclude = [brute(matrix, q, alive & allowed, 2)[0] for q in queries]
        k = 8
        results, calls = self.run_retrieve(matrix, alive, queries, k, allowed=allowed, exclude=exclude)
        assert len(results) == queries.shape[0]
        if not isinstance(self.open(matrix, alive), ExactBackend):  # numpy scans in place of a search
            assert (calls > 0) == (fraction > 0.05), "small subsets are scanned exactly, large ones searched"
        found = []
        for b, (res, q) in enumerate(zip(results, queries)):
            valid = alive & allowed
            valid[exclude[b]] = False
            found.append(self.check_list(res.rows, res.scores, matrix, q, valid, k, full=True))
        if self.approximate:
            per_query = [self.recall([r], matrix, q[None], _valid(alive, allowed, e), k)
                         for r, q, e in zip(found, queries, exclude)]
            assert np.mean(per_query) >= self.min_recall

    def test_retrieve_k_above_what_passes_returns_only_those(self) -> None:
        matrix, queries = catalogue(11)
        alive = np.ones(N, dtype=bool)
        alive[:10] = False
        allowed = np.zeros(N, dtype=bool)
        allowed[5:25] = True  # 15 of them live
        exclude = [np.array([12, 13]) for _ in queries]
        results, _ = self.run_retrieve(matrix, alive, queries, 50, allowed=allowed, exclude=exclude)
        for res, q in zip(results, queries):
            valid = _valid(alive, allowed, exclude[0])
            rows = self.check_list(res.rows, res.scores, matrix, q, valid, 50, full=True)
            assert set(rows.tolist()) == set(np.flatnonzero(valid).tolist())

    def test_retrieve_without_filters_matches_search(self) -> None:
        matrix, queries = catalogue(12)
        alive = np.ones(N, dtype=bool)
        alive[40:60] = False
        exclude = [np.arange(60, 70) for _ in queries]
        results, _ = self.run_retrieve(matrix, alive, queries, 10, exclude=exclude)
        for res, q in zip(results, queries):
            self.check_list(res.rows, res.scores, matrix, q, _valid(alive, None, exclude[0]), 10, full=True)


def _valid(alive: np.ndarray, allowed: np.ndarray | None, excluded: np.ndarray) -> np.ndarray:
    valid = alive.copy() if allowed is None else alive & allowed
    valid[excluded] = False
    return valid


# ---------------------------------------------------------------------------------------------- backends
class TestExactNumpy(RetrievalContract):
    def make(self, matrix, alive):
        return ExactBackend(matrix, alive)


class TestExactGemm(RetrievalContract):
    """The engine's exact backend: its scans run on ONNX Runtime's Gemm (`recengine.scan`)."""

    def make(self, matrix, alive):
        scanner = Scanner.create(min_rows=0, min_queries=1)
        assert scanner.uses_gemm(matrix, 1), "the contract's catalogues must take the Gemm path"
        return ExactBackend(matrix, alive, scanner)


class TestHnswPlain(RetrievalContract):
    approximate = True
    min_recall = 0.9

    def make(self, matrix, alive):
        return HnswBackend.build(matrix, np.flatnonzero(alive), M=16, ef_construction=200, ef=100, augment=False)


class TestHnswMipsAugmented(RetrievalContract):
    approximate = True
    min_recall = 0.9

    def make(self, matrix, alive):
        backend = HnswBackend.build(matrix, np.flatnonzero(alive), M=16, ef_construction=200, ef=100, augment=True)
        assert backend.max_norm is not None and backend.index.dim == matrix.shape[1] + 1
        return backend


class TestOnnxExact(RetrievalContract):
    def make(self, matrix, alive):
        pytest.importorskip("onnx", reason="the exact-search ONNX graph is built with the onnx package")
        return OnnxExactBackend(matrix, alive, device="cpu", threads=1)


def test_an_exact_scan_reuses_scores_it_is_given():
    """`retrieve(..., scores=)`: the exact scan ranks the scores the caller already computed (what
    `Engine.score_catalogue` does, which needs every row's score anyway) and gets the same answer."""
    matrix, queries = catalogue(3)
    alive = np.ones(N, dtype=bool)
    alive[[5, 17]] = False
    exact = ExactBackend(matrix, alive)
    exclude = [np.array([0, 1, 2], np.int64)] + [np.zeros(0, np.int64)] * (len(queries) - 1)
    plain = retrieve(exact, exact, matrix, alive, queries, 10, exclude=exclude)
    given = exact.scores(queries)
    reused = retrieve(exact, exact, matrix, alive, queries, 10, exclude=exclude, scores=given.copy())
    for a, b in zip(plain, reused):
        np.testing.assert_array_equal(a.rows, b.rows)
        np.testing.assert_array_equal(a.scores, b.scores)
    # scores of the wrong shape are not trusted: the scan computes its own
    odd = retrieve(exact, exact, matrix, alive, queries, 10, exclude=exclude, scores=given[:, :7].copy())
    for a, b in zip(plain, odd):
        np.testing.assert_array_equal(a.rows, b.rows)


def test_score_catalogue_computes_the_retrieval_scores_once(lean_bundle, monkeypatch):
    from recengine import Engine

    engine = Engine.open(lean_bundle, device="cpu", threads=1, retrieval="exact")
    from recengine.requests import RowQuery

    st = engine._state  # noqa: SLF001 - white-box: counting the scans
    n = 5
    rows = []
    for u in range(n):
        history = np.asarray(st.users.history(u), np.int64)
        rows.append(RowQuery(history=history, scene=np.zeros(engine.scene_slots, np.int64),
                             profile=engine.user_profiles(np.array([u]))[0], exclude=history))
    before = engine.score_catalogue(rows)
    exact = engine._state.items_index.exact
    calls = []
    real = exact.scores

    def counting(q):
        calls.append(q.shape[0])
        return real(q)

    monkeypatch.setattr(exact, "scores", counting)
    after = engine.score_catalogue(rows)
    np.testing.assert_array_equal(before, after)
    assert calls == [n]  # one scan for the batch, reused by the candidates' exact top-k


# ------------------------------------------------------------------------------------------ top k
def _rows(rng: np.random.Generator, n: int, kind: int) -> np.ndarray:
    if kind == 0:
        return rng.standard_normal(n).astype(np.float32)
    if kind == 1:  # heavy ties
        return rng.integers(0, 5, n).astype(np.float32)
    if kind == 2:  # ascending: the best rows last
        return np.sort(rng.standard_normal(n)).astype(np.float32)
    if kind == 3:  # the strided sample holds the largest values: fewer than k pass its threshold
        row = rng.uniform(0, 1, n).astype(np.float32)
        row[::16] += 10
        return row
    row = rng.standard_normal(n).astype(np.float32)  # mostly excluded (-inf)
    row[rng.random(n) < 0.9] = -np.inf
    return row


@pytest.mark.parametrize("n", [1, 7, 300, 2047, 2048, 9742, 40_000])
def test_topk_rows_is_the_exact_top_k(n: int) -> None:
    """`topk_rows` (sampled threshold past 2,048 rows, `retrieval._top_of_row`) returns the k largest values
    best first, the same rows as a full sort wherever no tie straddles the k-th place, and equal values in
    index order; one row or several."""
    from recengine.retrieval import topk_rows

    rng = np.random.default_rng(n)
    for trial in range(40):
        kind = trial % 5
        rows = np.stack([_rows(rng, n, kind) for _ in range(1 + trial % 3)])
        k = int(rng.integers(1, min(n, 400) + 1))
        idx, vals = topk_rows(rows, k)
        assert idx.shape == vals.shape == (rows.shape[0], k) and idx.dtype == np.int64
        for row, i, v in zip(rows, idx, vals):
            full = np.lexsort((np.arange(n), -row))[:k]
            assert np.array_equal(v, row[full]) and np.array_equal(row[i], v) and np.unique(i).size == k
            if np.count_nonzero(row == row[full[-1]]) == 1:
                assert np.array_equal(i, full)
            same = v[1:] == v[:-1]
            assert np.all(i[1:][same] > i[:-1][same])


@pytest.mark.parametrize("n", [30, 3000])
def test_topk_rows_of_no_rows_is_empty(n: int) -> None:
    from recengine.retrieval import topk_rows

    idx, vals = topk_rows(np.zeros((0, n), np.float32), 10)
    assert idx.shape == vals.shape == (0, 10)
    idx, vals = topk_rows(np.zeros((2, n), np.float32), 0)
    assert idx.shape == vals.shape == (2, 0)
