"""`recengine bench search BUNDLE [DATA]`: search quality of the bundle against the frozen pre-trained encoder.

Queries (seeded by --seed, drawn from DATA's catalogue, which must be the data BUNDLE was exported from):
- known-item: an item's title (the first text column) as typed by someone who knows it: without the year
  or series (`title`: "Toy Story", "The Hunger Games"), as in the catalogue (`title_year`: "Toy Story
  (1995)", "The Hunger Games (The Hunger Games, #1)"), lower-cased without the year or series (`lower`) and
  lower-cased with one typo (`typo`: one deletion, insertion, substitution or transposition inside a word
  of >= 4 letters). Only items whose stripped title is unique in the catalogue are drawn, so exactly one
  item is right. Metrics: hit@1, hit@10, MRR@10.
- attribute: one value of another text column (a genre, a tag, an author), lower-cased -> every item that
  carries it is relevant. Metrics: precision@10, NDCG@10 (binary gains, ideal = min(10, relevant)).

Extra items (`--extra-items TABLE`, a domain the bundle never saw): an items table of the data contract
(`item_id` + text columns, CSV or Parquet) is added to the opened bundle with `Engine.add_items` (ids
prefixed `extra:`; texts built from the table's own text columns) and the queries are drawn from those
items only, titles from the table's first text column and attributes from its other text columns (e.g.
goodbooks-10k: title, authors). The bundle and the frozen encoder both search the whole grown catalogue.

Systems, all over the same item texts and queries in the same run:
- `bundle_dense`: the bundle's encoder, cosine over `text_embeddings` (search before issue 15; a split bundle's
  encoder is the pre-trained model, an unsplit one's the fine-tuned one: `models.encoder.search_space`);
- `bundle_hybrid_rrf`, `bundle_hybrid_sum` (`@w`: other lexical weights): that fused with BM25
  (`recengine.lexical`); what `search` serves is `recengine.neighbours.FUSION` at `LEXICAL_WEIGHT`;
- `bm25`: the lexical ranking alone;
- `frozen_dense`: the packaged pre-trained encoder (all-MiniLM-L6-v2 unless --frozen-encoder), mean
  pooling + L2 norm, same max_length as the bundle's tokenizer, run through torch in a child process;
- `frozen_hybrid`: the frozen encoder fused with BM25 by the served fusion (what a second, frozen ONNX
  encoder would give).

Latency: `recengine.neighbours.search` at batch 1 on one thread, dense vs hybrid, interleaved request by
request so both see the same machine load; plus the lexical index's build time and memory per item.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from recengine.errors import RequestError
from recengine.retrieval import EXACT_BUDGET

from .machine import load_average, machine_info, utc_now

SCHEMA_VERSION = 1
K = 10
KNOWN_VARIANTS = ("title", "title_year", "lower", "typo")
YEAR = re.compile(r"\s*\((?:\d{4}(?:\s*[-–]\s*\d{0,4})?)\)\s*$")
SERIES = re.compile(r"\s*\([^()]*#\s*\d+(?:\.\d+)?\)\s*$")
"""A trailing series note, as goodreads titles carry: "(The Hunger Games, #1)"."""
EXTRA_PREFIX = "extra:"
SUM_WEIGHTS = (0.25, 0.5, 1.0, 2.0)
"""Lexical weights of the `sum` fusion measured beside the served one."""
OTHER_RULES = (("best", 1.0), ("full", 1.0), ("full", 2.0))
"""(BM25 scale, power) of the `sum` fusion measured beside the served one (`recengine.neighbours.LEXICAL_SCALE`,
`LEXICAL_POWER`); ("best", 1.0) is the rule served before the split encoder."""
LATENCY_REPEATS = 3
MIN_ITEMS = 5
"""An attribute value is queried only if at least this many items carry it."""


# ---------------------------------------------------------------------------------------------- metrics
def hit_at(ranked: Sequence[int], target: int, k: int) -> float:
    """1.0 if `target` is among the first `k` of `ranked`, else 0.0."""
    return 1.0 if target in list(ranked[:k]) else 0.0


def reciprocal_rank(ranked: Sequence[int], target: int, k: int = K) -> float:
    """1 / (1-based rank of `target` in the first `k`), 0.0 when it is not there (MRR@k per query)."""
    for i, r in enumerate(list(ranked[:k])):
        if r == target:
            return 1.0 / (i + 1)
    return 0.0


def precision_at(ranked: Sequence[int], relevant: set[int], k: int) -> float:
    """Share of the first `k` slots holding a relevant item (an empty slot counts as a miss)."""
    if k <= 0:
        raise ValueError("k must be positive")
    return sum(1 for r in list(ranked[:k]) if r in relevant) / k


def ndcg_at(ranked: Sequence[int], relevant: set[int], k: int) -> float:
    """Binary-gain NDCG@k: DCG over the first k / DCG of min(k, |relevant|) relevant items first."""
    if not relevant:
        return 0.0
    dcg = sum(1.0 / math.log2(i + 2) for i, r in enumerate(list(ranked[:k])) if r in relevant)
    ideal = sum(1.0 / math.log2(i + 2) for i in range(min(k, len(relevant))))
    return dcg / ideal


# ---------------------------------------------------------------------------------------------- queries
def parse_fields(text: str) -> dict[str, str]:
    """The "column: value" lines of an item text (`recengine.data.text.build_item_text`)."""
    out: dict[str, str] = {}
    for line in text.split("\n"):
        if ": " in line:
            key, value = line.split(": ", 1)
            out.setdefault(key.strip(), value.strip())
    return out


def strip_year(title: str) -> str:
    """`title` without a trailing "(1995)" / "(1980-1981)" year or "(Series, #2)" note (either order)."""
    out = title.strip()
    while True:
        cut = SERIES.sub("", YEAR.sub("", out)).strip()
        if cut == out or not cut:
            return out
        out = cut


def typo(text: str, rng: np.random.Generator) -> str:
    """`text` with one seeded edit (delete, insert, substitute, transpose) inside one word of >= 4 letters
    (the longest word when none has 4); the first letter of the word is never touched."""
    words = text.split(" ")
    cands = [i for i, w in enumerate(words) if sum(c.isalpha() for c in w) >= 4]
    if not cands:
        cands = [max(range(len(words)), key=lambda i: len(words[i]))]
    wi = int(cands[int(rng.integers(len(cands)))])
    w = words[wi]
    if len(w) < 2:
        return text + "x"
    pos = int(rng.integers(1, len(w)))
    op = ("delete", "insert", "substitute", "transpose")[int(rng.integers(4))]
    letters = "abcdefghijklmnopqrstuvwxyz"
    if op == "delete":
        w2 = w[:pos] + w[pos + 1:]
    elif op == "insert":
        w2 = w[:pos] + letters[int(rng.integers(26))] + w[pos:]
    elif op == "substitute":
        options = [c for c in letters if c != w[pos].lower()]
        w2 = w[:pos] + options[int(rng.integers(len(options)))] + w[pos + 1:]
    else:
        pos = min(pos, len(w) - 2) if len(w) > 2 else 0
        w2 = w[:pos] + w[pos + 1] + w[pos] + w[pos + 2:]
        if w2 == w:  # a doubled letter: substitute instead
            w2 = w[:pos] + ("z" if w[pos] != "z" else "q") + w[pos + 1:]
    words[wi] = w2
    return " ".join(words)


@dataclass
class Queries:
    known: dict[str, list[tuple[str, int]]]
    """variant -> [(query, target row)]"""
    attribute: dict[str, list[tuple[str, set[int]]]]
    """column -> [(query, relevant rows)]"""
    title_column: str


def make_queries(texts: Sequence[str], columns: Sequence[str], n_known: int, n_attr: int, seed: int,
                 targets: Sequence[int] | None = None) -> Queries:
    """Seeded known-item and attribute queries over `texts` (rows = catalogue rows). `targets`: the rows
    queries are drawn from (None: all); titles must be unique over all of `texts` all the same, and an
    attribute query's relevant items are every row that carries the value."""
    if not columns:
        raise RequestError("the data set names no text columns; search queries come from them")
    rng = np.random.default_rng(seed)
    fields = [parse_fields(t) for t in texts]
    title_col = columns[0]
    titles = [f.get(title_col, "") for f in fields]
    base = [strip_year(t) for t in titles]
    counts: dict[str, int] = {}
    for b in base:
        counts[b.lower()] = counts.get(b.lower(), 0) + 1
    pool = range(len(texts)) if targets is None else sorted(set(int(t) for t in targets))
    eligible = [r for r in pool if base[r] and counts[base[r].lower()] == 1]
    if not eligible:
        raise RequestError(f"no item has a unique {title_col!r}: no known-item queries can be drawn")
    rows = rng.choice(eligible, size=min(n_known, len(eligible)), replace=False).tolist()
    known: dict[str, list[tuple[str, int]]] = {v: [] for v in KNOWN_VARIANTS}
    for r in rows:
        known["title"].append((base[r], r))
        known["title_year"].append((titles[r], r))
        known["lower"].append((base[r].lower(), r))
        known["typo"].append((typo(base[r].lower(), rng), r))
    attribute: dict[str, list[tuple[str, set[int]]]] = {}
    drawn_from = set(pool)
    by_col: dict[str, tuple[list[str], dict[str, set[int]]]] = {}
    for col in columns[1:]:
        carriers: dict[str, set[int]] = {}
        for r, f in enumerate(fields):
            for value in f.get(col, "").split(","):
                value = value.strip().lower()
                if value and value != "(no genres listed)":
                    carriers.setdefault(value, set()).add(r)
        values = sorted(v for v, s in carriers.items() if len(s) >= MIN_ITEMS and s & drawn_from)
        if not values:
            continue
        by_col[col] = (values, carriers)
        picked = rng.choice(len(values), size=min(n_attr, len(values)), replace=False)
        attribute[col] = [(values[i], carriers[values[i]]) for i in sorted(picked.tolist())]
    if len(by_col) >= 2:
        attribute.update(combined_queries(by_col, n_attr, drawn_from, rng))
    return Queries(known, attribute, title_col)


def combined_queries(by_col: dict[str, tuple[list[str], dict[str, set[int]]]], n: int, drawn_from: set[int],
                     rng: np.random.Generator) -> dict[str, list[tuple[str, set[int]]]]:
    """Up to `n` queries naming a value of each of the first two attribute columns ("comedy dark humor"),
    relevant = the items carrying both (at least MIN_ITEMS). A description of what one wants rather than one
    word: an item carrying only one of the values matches half the query, which is where a lexical score
    scaled to its best match over-rewards a partial match (`recengine.neighbours.LEXICAL_SCALE`)."""
    (col_a, (va, ca)), (col_b, (vb, cb)) = list(by_col.items())[:2]
    out: list[tuple[str, set[int]]] = []
    seen: set[tuple[int, int]] = set()
    for _ in range(50 * n):
        if len(out) >= n:
            break
        i, j = int(rng.integers(len(va))), int(rng.integers(len(vb)))
        both = ca[va[i]] & cb[vb[j]]
        if (i, j) in seen or va[i] == vb[j] or len(both) < MIN_ITEMS or not both & drawn_from:
            continue
        seen.add((i, j))
        out.append((f"{va[i]} {vb[j]}", both))
    return {f"{col_a}+{col_b}": out} if out else {}


# ---------------------------------------------------------------------------------------------- frozen encoder
def frozen_embeddings(encoder_dir: Path, texts: Sequence[str], max_length: int, threads: int) -> np.ndarray:
    """Unit-length mean-pooled embeddings of `texts` by the HF encoder at `encoder_dir`, computed by torch in
    a child process (the bench process stays torch-free)."""
    with tempfile.TemporaryDirectory(prefix="recengine-search-") as tmp:
        src, out = Path(tmp) / "texts.json", Path(tmp) / "emb.npy"
        src.write_text(json.dumps(list(texts)), encoding="utf-8")
        cmd = [sys.executable, "-m", "recengine.bench.search", "--frozen-worker", str(encoder_dir), str(src), str(out),
               str(max_length), str(threads)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"frozen encoder worker failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
        return np.load(out)


def _frozen_worker(encoder_dir: str, src: str, out: str, max_length: str, threads: str) -> None:
    import torch
    from transformers import AutoModel, AutoTokenizer

    if int(threads) > 0:
        torch.set_num_threads(int(threads))
    texts = json.loads(Path(src).read_text(encoding="utf-8"))
    tok = AutoTokenizer.from_pretrained(encoder_dir)
    model = AutoModel.from_pretrained(encoder_dir).eval()
    parts = []
    with torch.inference_mode():
        for i in range(0, len(texts), 128):
            batch = tok(texts[i:i + 128], padding=True, truncation=True, max_length=int(max_length),
                        return_tensors="pt")
            hidden = model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            parts.append(torch.nn.functional.normalize(pooled, dim=-1).numpy().astype(np.float32))
    np.save(out, np.concatenate(parts) if parts else np.zeros((0, 1), np.float32))


# ---------------------------------------------------------------------------------------------- evaluation
Ranker = Callable[[int, str], np.ndarray]
"""(query index in the flat query list, query text) -> top-K rows, best first."""


def evaluate(ranker: Ranker, queries: Queries, offsets: dict[str, int]) -> dict[str, Any]:
    known: dict[str, Any] = {}
    all_h1, all_h10, all_rr = [], [], []
    for variant, qs in queries.known.items():
        h1, h10, rr = [], [], []
        for j, (q, target) in enumerate(qs):
            ranked = ranker(offsets[f"known:{variant}"] + j, q).tolist()
            h1.append(hit_at(ranked, target, 1))
            h10.append(hit_at(ranked, target, K))
            rr.append(reciprocal_rank(ranked, target, K))
        known[variant] = {"n": len(qs), "hit@1": float(np.mean(h1)) if h1 else None,
                          "hit@10": float(np.mean(h10)) if h10 else None, "mrr@10": float(np.mean(rr)) if rr else None}
        all_h1 += h1
        all_h10 += h10
        all_rr += rr
    known["all"] = {"n": len(all_h1), "hit@1": float(np.mean(all_h1)), "hit@10": float(np.mean(all_h10)),
                    "mrr@10": float(np.mean(all_rr))}
    attribute: dict[str, Any] = {}
    all_p, all_n = [], []
    for col, qs in queries.attribute.items():
        p, n = [], []
        for j, (q, rel) in enumerate(qs):
            ranked = ranker(offsets[f"attr:{col}"] + j, q).tolist()
            p.append(precision_at(ranked, rel, K))
            n.append(ndcg_at(ranked, rel, K))
        attribute[col] = {"n": len(qs), "precision@10": float(np.mean(p)), "ndcg@10": float(np.mean(n))}
        all_p += p
        all_n += n
    attribute["all"] = {"n": len(all_p), "precision@10": float(np.mean(all_p)) if all_p else None,
                        "ndcg@10": float(np.mean(all_n)) if all_n else None}
    return {"known_item": known, "attribute": attribute}


def flat_queries(queries: Queries) -> tuple[list[str], dict[str, int]]:
    flat: list[str] = []
    offsets: dict[str, int] = {}
    for variant, qs in queries.known.items():
        offsets[f"known:{variant}"] = len(flat)
        flat += [q for q, _ in qs]
    for col, qs in queries.attribute.items():
        offsets[f"attr:{col}"] = len(flat)
        flat += [q for q, _ in qs]
    return flat, offsets


def _pct(times: list[float]) -> dict[str, float]:
    a = np.asarray(times) * 1e3
    return {"n": int(a.size), "p50_ms": float(np.percentile(a, 50)), "p95_ms": float(np.percentile(a, 95)),
            "p99_ms": float(np.percentile(a, 99)), "mean_ms": float(a.mean())}


@dataclass
class SearchBenchConfig:
    bundle: Path
    data: str | None = None
    n_known: int = 300
    n_attr: int = 40
    seed: int = 0
    frozen_encoder: Path | None = None
    frozen: bool = True
    threads: int = 1
    latency_requests: int = 300
    warmup: int = 20
    extra_items: Path | None = None
    """An items table (data contract) added to the bundle before the queries are drawn from it alone."""
    command: str = ""
    quiet: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def _log(cfg: SearchBenchConfig, msg: str) -> None:
    if not cfg.quiet:
        print(f"[bench search] {msg}", file=sys.stderr, flush=True)


def _sum_ranker(st: Any, q_emb: np.ndarray, weight: float, scale: str | None = None,
                power: float | None = None) -> Ranker:
    from recengine import neighbours

    sc = scale or neighbours.LEXICAL_SCALE
    p = neighbours.LEXICAL_POWER if power is None else power
    return lambda i, q: neighbours.search_embedded(st, q_emb[i], q, K, None, "hybrid", "sum", weight, sc, p).rows


def _dense_scan(st: Any, text: str) -> Any:
    """`search(mode="dense")` over an exact scan of the text space whatever the catalogue's size: what
    `search` did before issue 15 on catalogues of up to `EXACT_BUDGET` items."""
    from recengine.retrieval import retrieve

    emb = st.models.encode_queries([text])
    cat, space = st.catalogue, st.text_index
    (r,) = retrieve(space.exact, space.exact, cat.text_embeddings, cat.alive,
                    np.ascontiguousarray(emb[:1], dtype=np.float32), K)
    return r


def run_search_bench(cfg: SearchBenchConfig) -> dict[str, Any]:
    from recengine import Engine, neighbours
    from recengine.data import load_dataset
    from recengine.lexical import LexicalIndex
    from recengine.retrieval import topk_rows

    if cfg.n_known < 1 or cfg.n_attr < 0 or cfg.latency_requests < 1:
        raise RequestError("--known must be >= 1, --attributes >= 0 and --requests >= 1")
    machine = machine_info()
    started = time.perf_counter()
    dataset = load_dataset(cfg.data)
    engine = Engine.open(cfg.bundle, device="cpu", threads=cfg.threads)
    st = engine._state
    manifest = st.manifest
    bundle_fp = manifest.get("data", {}).get("fingerprint")
    if bundle_fp != dataset.fingerprint:
        raise RequestError(f"{cfg.bundle} was exported from data with fingerprint {str(bundle_fp)[:12]}…, not from "
                           f"{dataset.name} ({dataset.fingerprint[:12]}…): search queries must come from the "
                           f"bundle's own catalogue")
    columns = tuple(manifest.get("data", {}).get("text_columns") or dataset.items.text_columns)
    targets: list[int] | None = None
    extra_info: dict[str, Any] | None = None
    if cfg.extra_items is not None:
        columns, targets, extra_info = add_extra_items(engine, Path(cfg.extra_items), cfg)
        st = engine._state
    cat = st.catalogue
    texts = list(cat.texts)
    queries = make_queries(texts, columns, cfg.n_known, cfg.n_attr, cfg.seed, targets)
    flat, offsets = flat_queries(queries)
    _log(cfg, f"{len(flat)} queries ({sum(len(v) for v in queries.known.values())} known-item, "
              f"{sum(len(v) for v in queries.attribute.values())} attribute) over {cat.n_alive} items")

    t0 = time.perf_counter()
    q_bundle = np.concatenate([st.models.encode_queries(flat[s:s + 64]) for s in range(0, len(flat), 64)]
                              ) if flat else np.zeros((0, cat.text_embeddings.shape[1]), np.float32)
    encode_s = time.perf_counter() - t0
    lexical = st.lexical if st.lexical is not None else LexicalIndex.build(texts, cat.alive)
    lex_cache: dict[int, Any] = {}

    def lex_query(i: int, q: str) -> Any:
        if i not in lex_cache:
            lex_cache[i] = lexical.query(q)
        return lex_cache[i]

    n_cand = max(K, neighbours.SEARCH_CANDIDATES)
    systems: dict[str, Ranker] = {
        "bundle_dense": lambda i, q: neighbours.search_embedded(st, q_bundle[i], q, K, None, mode="dense").rows,
        "bundle_hybrid_rrf": lambda i, q: neighbours.search_embedded(st, q_bundle[i], q, K, None, "hybrid",
                                                                     "rrf").rows,
    }
    for w in sorted({neighbours.LEXICAL_WEIGHT, *SUM_WEIGHTS}):
        name = "bundle_hybrid_sum" if w == neighbours.LEXICAL_WEIGHT else f"bundle_hybrid_sum@{w:g}"
        systems[name] = _sum_ranker(st, q_bundle, w)
    for sc, p in OTHER_RULES:  # the served weight with other BM25 scales and powers
        if (sc, p) != (neighbours.LEXICAL_SCALE, neighbours.LEXICAL_POWER):
            systems[f"bundle_hybrid_sum_{sc}^{p:g}"] = _sum_ranker(st, q_bundle, neighbours.LEXICAL_WEIGHT, sc, p)
    systems["bm25"] = lambda i, q: lex_query(i, q).top(K, cat.alive)[0]
    frozen_info: dict[str, Any] | None = None
    if cfg.frozen:
        enc_dir = cfg.frozen_encoder
        if enc_dir is None:
            from recengine.export.encoder.source import default_encoder_dir

            enc_dir = default_encoder_dir()
        max_length = int(manifest.get("tokenizer", {}).get("max_length", 128))
        _log(cfg, f"frozen encoder {enc_dir} (torch, child process, max_length {max_length})")
        t0 = time.perf_counter()
        emb = frozen_embeddings(Path(enc_dir), texts + flat, max_length, cfg.threads if cfg.threads > 0 else 0)
        frozen_s = time.perf_counter() - t0
        items_f, q_frozen = emb[: len(texts)], emb[len(texts):]
        dead = ~cat.alive

        def frozen_top(i: int, n: int) -> tuple[np.ndarray, np.ndarray]:
            s = items_f @ q_frozen[i]
            s[dead] = -np.inf
            idx, vals = topk_rows(s[None, :], n)
            return idx[0], vals[0]

        def frozen_hybrid(i: int, q: str) -> np.ndarray:
            rows, cos = frozen_top(i, max(K, neighbours.DENSE_CANDIDATES))
            lq = lex_query(i, q)
            lex_rows, lex_scores = lq.top(n_cand, cat.alive)
            return neighbours.fuse(rows, cos, lambda r: items_f[r] @ q_frozen[i], lex_rows, lex_scores, lq.score, K,
                                   neighbours.FUSION,
                                   full=lq.full if neighbours.LEXICAL_SCALE == "full" else 0.0).rows  # served power

        systems["frozen_dense"] = lambda i, q: frozen_top(i, K)[0]
        systems["frozen_hybrid"] = frozen_hybrid
        frozen_info = {"encoder": str(enc_dir), "max_length": max_length, "pooling": "mean, L2-normalised",
                       "runtime": "torch (child process)", "encode_items_and_queries_s": round(frozen_s, 2),
                       "dim": int(items_f.shape[1])}

    results: dict[str, Any] = {}
    for name, ranker in systems.items():
        _log(cfg, f"evaluating {name}")
        results[name] = evaluate(ranker, queries, offsets)

    # latency: neighbours.search (encoder run included) at batch 1; per query, dense and hybrid alternate
    # LATENCY_REPEATS times, so both see the same machine load; "min3" keeps each query's fastest run of
    # each mode (the cost without the other jobs' interference), "all" every run
    _log(cfg, f"latency: {cfg.latency_requests} queries x {LATENCY_REPEATS} runs per mode, dense vs hybrid")
    order = np.random.default_rng(cfg.seed + 1).permutation(len(flat))
    lat_q = [flat[int(order[i % len(flat)])] for i in range(cfg.latency_requests + cfg.warmup)]
    modes = ("dense", "hybrid", "dense_scan")
    times: dict[str, list[float]] = {m: [] for m in modes}
    best: dict[str, list[float]] = {m: [] for m in modes}
    lex_only: list[float] = []
    encode_only: list[float] = []
    for j, q in enumerate(lat_q):
        runs: dict[str, list[float]] = {m: [] for m in modes}
        for rep in range(LATENCY_REPEATS):
            shift = (j + rep) % len(modes)  # each mode runs first, in the middle and last equally often
            for mode in modes[shift:] + modes[:shift]:
                t0 = time.perf_counter()
                if mode == "dense_scan":
                    _dense_scan(st, q)
                else:
                    neighbours.search(st, q, K, None, mode=mode)
                runs[mode].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        lexical.query(q).top(n_cand, cat.alive)
        dt = time.perf_counter() - t0
        enc = []
        for _ in range(LATENCY_REPEATS):
            t0 = time.perf_counter()
            st.models.encode_queries([q])
            enc.append(time.perf_counter() - t0)
        if j >= cfg.warmup:
            lex_only.append(dt)
            encode_only.append(min(enc))
            for mode, r in runs.items():
                times[mode] += r
                best[mode].append(min(r))
    latency: dict[str, Any] = {"repeats": LATENCY_REPEATS, "dense": _pct(times["dense"]),
                               "hybrid": _pct(times["hybrid"]), "dense_min3": _pct(best["dense"]),
                               "hybrid_min3": _pct(best["hybrid"]), "dense_scan": _pct(times["dense_scan"]),
                               "dense_scan_min3": _pct(best["dense_scan"]), "bm25_scoring": _pct(lex_only),
                               "encode_min3": _pct(encode_only)}
    # the search served before issue 15: dense only, by an exact scan while the catalogue was within the
    # item-count budget then in force (`EXACT_BUDGET` items, whatever their width), by HNSW beyond
    before = "dense_scan" if cat.n_alive <= EXACT_BUDGET else "dense"
    latency["before"] = before
    latency["hybrid_over_before_min3_p50"] = latency["hybrid_min3"]["p50_ms"] / latency[f"{before}_min3"]["p50_ms"]
    latency["hybrid_over_dense_p50"] = latency["hybrid"]["p50_ms"] / latency["dense"]["p50_ms"]
    latency["hybrid_over_dense_mean"] = latency["hybrid"]["mean_ms"] / latency["dense"]["mean_ms"]
    latency["hybrid_over_dense_min3_p50"] = latency["hybrid_min3"]["p50_ms"] / latency["dense_min3"]["p50_ms"]

    # lexical index cost
    builds = []
    for _ in range(3):
        t0 = time.perf_counter()
        LexicalIndex.build(texts, cat.alive)
        builds.append(time.perf_counter() - t0)
    tracemalloc.start()
    idx = LexicalIndex.build(texts, cat.alive)
    traced = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    n_live = int(cat.n_alive)
    lexical_cost = {"items": n_live, "build_s_best_of_3": round(min(builds), 4),
                    "build_us_per_item": round(1e6 * min(builds) / max(n_live, 1), 2),
                    "tokens": idx.n_tokens, "postings": idx.n_postings, "array_bytes": idx.nbytes(),
                    "python_heap_bytes": int(traced), "bytes_per_item": round(traced / max(n_live, 1), 1)}
    del idx

    # an unsplit bundle: a second, frozen encoder for search (the `frozen_*` rows served) would cost one more
    # encoder run per query and one more ONNX file; estimated from this run's measurements. A split bundle's
    # encoder is the frozen one already (docs/bundle.md "Split encoder"): nothing to estimate.
    enc_spec = manifest.get("models", {}).get("encoder", {}).get("variants", {})
    second = None if "item_head" in manifest.get("models", {}) else {
              "basis": "the bundle's own encoder (same architecture as the frozen one) timed alone at batch 1",
              "extra_bytes": {v: spec.get("bytes") for v, spec in enc_spec.items() if isinstance(spec, dict)},
              "extra_encode_p50_ms": latency["encode_min3"]["p50_ms"],
              "latency_ratio_estimate": (latency["hybrid_min3"]["p50_ms"] + latency["encode_min3"]["p50_ms"])
              / latency["dense_min3"]["p50_ms"]}
    served = f"bundle_hybrid_{neighbours.FUSION}"
    targets = _targets(results, served, latency) if "frozen_dense" in results else {}
    machine["load_average_at_end"] = load_average()
    return {
        "kind": "search", "schema_version": SCHEMA_VERSION, "created_at": utc_now(), "command": cfg.command,
        "machine": machine,
        "config": {"bundle": str(cfg.bundle), "data": dataset.name, "n_known": cfg.n_known, "n_attr": cfg.n_attr,
                   "seed": cfg.seed, "k": K, "threads": cfg.threads, "latency_requests": cfg.latency_requests,
                   "search_candidates": neighbours.SEARCH_CANDIDATES,
                   "dense_candidates": neighbours.DENSE_CANDIDATES, "fusion": neighbours.FUSION,
                   "rrf_k": neighbours.RRF_K, "lexical_weight": neighbours.LEXICAL_WEIGHT,
                   "lexical_scale": neighbours.LEXICAL_SCALE, "lexical_power": neighbours.LEXICAL_POWER},
        "data": {"name": dataset.name, "fingerprint": dataset.fingerprint, "n_items": n_live},
        "extra_items": extra_info,
        "bundle": {"encoder": manifest.get("models", {}).get("encoder", {}).get("source", {}).get("name"),
                   "text_dim": int(cat.text_embeddings.shape[1]), "variant": engine.variants.get("encoder"),
                   "search_space": manifest.get("models", {}).get("encoder", {}).get("search_space", "fine-tuned"),
                   "split": "item_head" in manifest.get("models", {}),
                   "encode_queries_s": round(encode_s, 3)},
        "frozen": frozen_info,
        "queries": {"title_column": queries.title_column,
                    "known_item": {v: len(q) for v, q in queries.known.items()},
                    "attribute": {c: len(q) for c, q in queries.attribute.items()},
                    "examples": {v: [q for q, _ in qs[:3]] for v, qs in
                                 list(queries.known.items()) + list(queries.attribute.items())}},
        "systems": results, "served": served, "latency": latency, "lexical_index": lexical_cost,
        "second_encoder_estimate": second,
        "targets": targets, "wall_s": round(time.perf_counter() - started, 1),
    }


def add_extra_items(engine: Any, path: Path,
                    cfg: SearchBenchConfig) -> tuple[tuple[str, ...], list[int], dict[str, Any]]:
    """Add the items table at `path` to `engine` (ids prefixed `EXTRA_PREFIX`, texts from the table's own
    text columns); returns those columns, the catalogue rows of the added items and a report entry."""
    from recengine.data.loader import build_items, read_table
    from recengine.errors import DataError

    path = Path(path).expanduser()
    if not path.is_file() or path.suffix not in (".csv", ".parquet"):
        raise DataError(f"{path}: --extra-items must be a .csv or .parquet items table (item_id + text columns)")
    table = build_items(path, read_table(path))
    ids = [f"{EXTRA_PREFIX}{i}" for i in table.ids.tolist()]
    items = [{"item_id": i, "text": t} for i, t in zip(ids, table.texts) if t.strip()]
    if not items:
        raise DataError(f"{path}: no item has any text")
    _log(cfg, f"adding {len(items)} extra items from {path} (text columns {list(table.text_columns)})")
    t0 = time.perf_counter()
    engine.add_items(items, batch_size=64)
    add_s = time.perf_counter() - t0
    cat = engine._state.catalogue
    rows = [cat.row_of[it["item_id"]] for it in items]
    info = {"path": str(path), "items": len(items), "text_columns": list(table.text_columns),
            "id_prefix": EXTRA_PREFIX, "add_items_s": round(add_s, 2)}
    return table.text_columns, rows, info


def _targets(results: dict[str, Any], served: str, latency: dict[str, Any]) -> dict[str, Any]:
    """The issue-15 targets for the served system against the frozen encoder."""
    s, f = results[served], results["frozen_dense"]
    ki_s, ki_f = s["known_item"]["all"], f["known_item"]["all"]
    at_s, at_f = s["attribute"]["all"], f["attribute"]["all"]

    def ratio(a: float | None, b: float | None) -> float | None:
        return None if a is None or not b else a / b

    out = {
        "known_hit@1_ratio": {"value": ratio(ki_s["hit@1"], ki_f["hit@1"]), "target": 0.95},
        "known_hit@10_ratio": {"value": ratio(ki_s["hit@10"], ki_f["hit@10"]), "target": 0.99},
        "attribute_precision@10_ratio": {"value": ratio(at_s["precision@10"], at_f["precision@10"]), "target": 1.0},
        "latency_p50_ratio": {"value": latency["hybrid_over_dense_min3_p50"], "target": 1.2, "at_most": True,
                              "note": "p50 of each query's fastest of 3 runs, hybrid over dense"},
        "latency_p50_ratio_all_runs": {"value": latency["hybrid_over_dense_p50"], "target": 1.2, "at_most": True},
        "latency_p50_ratio_vs_before": {"value": latency["hybrid_over_before_min3_p50"], "target": 1.2,
                                        "at_most": True,
                                        "note": f"hybrid over the search served before issue 15 ({latency['before']}; "
                                                "fastest of 3 runs per query)"},
    }
    for v in out.values():
        v["met"] = None if v["value"] is None else (v["value"] <= v["target"] if v.get("at_most")
                                                     else v["value"] >= v["target"])
    return out


# ---------------------------------------------------------------------------------------------- markdown
def _f(x: Any, d: int = 3) -> str:
    return "–" if x is None else (f"{x:.{d}f}" if isinstance(x, float) else str(x))


def search_markdown(report: dict[str, Any]) -> str:
    from .report import _machine_line

    lines = [f"# recengine bench search — {report['data']['name']} ({report['data']['n_items']} items)", "",
             f"`{report['command']}`" if report.get("command") else "", "",
             _machine_line(report), "",
             f"Bundle encoder: {report['bundle']['encoder']} (search space "
             f"{report['bundle'].get('search_space', 'fine-tuned')}, text dim {report['bundle']['text_dim']}); "
             + (f"frozen: {report['frozen']['encoder']} ({report['frozen']['runtime']}, max_length "
                f"{report['frozen']['max_length']})" if report.get("frozen") else "frozen encoder not run")
             + f". Served by `search`: **{report['served']}**.", ""]
    variants = [v for v in KNOWN_VARIANTS if v in report["queries"]["known_item"]]
    cols = list(report["queries"]["attribute"])
    head = ["system"] + [f"{v} hit@1 / @10" for v in variants] + ["all hit@1", "all hit@10", "all MRR@10"]
    head += [f"{c} P@10 / NDCG@10" for c in cols]
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "---|" * len(head))
    for name, res in report["systems"].items():
        ki, at = res["known_item"], res["attribute"]
        row = [f"**{name}**" if name == report["served"] else name]
        row += [f"{_f(ki[v]['hit@1'])} / {_f(ki[v]['hit@10'])}" for v in variants]
        row += [_f(ki["all"]["hit@1"]), _f(ki["all"]["hit@10"]), _f(ki["all"]["mrr@10"])]
        row += [f"{_f(at[c]['precision@10'])} / {_f(at[c]['ndcg@10'])}" for c in cols]
        lines.append("| " + " | ".join(row) + " |")
    q = report["queries"]
    lines += ["", f"Queries (seed {report['config']['seed']}): known-item {q['known_item']} from "
              f"`{q['title_column']}`; attribute {q['attribute']} (values carried by >= {MIN_ITEMS} items).", ""]
    lat = report["latency"]
    lines += ["Latency of `neighbours.search` at batch 1, one thread (encoder run included; dense and hybrid "
              "interleaved):", "",
              "| mode | p50 ms | p95 ms | p99 ms | mean ms |", "|---|---|---|---|---|"]
    for mode in ("dense", "hybrid", "dense_min3", "hybrid_min3", "dense_scan_min3", "encode_min3", "bm25_scoring"):
        m = lat[mode]
        lines.append(f"| {mode} | {_f(m['p50_ms'])} | {_f(m['p95_ms'])} | {_f(m['p99_ms'])} | {_f(m['mean_ms'])} |")
    lines += ["", f"hybrid / dense: p50 {_f(lat['hybrid_over_dense_p50'])}x, mean {_f(lat['hybrid_over_dense_mean'])}x "
              f"over all runs; p50 {_f(lat['hybrid_over_dense_min3_p50'])}x over each query's fastest of "
              f"{lat['repeats']} runs (`_min3` rows: the cost without the other jobs on the machine). "
              + (f"Against the search served before issue 15 (dense only, `{lat['before']}` here: "
                 "`dense_scan` = an exact scan of the text space, what catalogues within the item-count budget "
                 f"then in force got): {_f(lat['hybrid_over_before_min3_p50'])}x."
                 if "before" in lat else ""), ""]
    lx = report["lexical_index"]
    lines += [f"Lexical index: {lx['items']} items, built in {lx['build_s_best_of_3']} s "
              f"({lx['build_us_per_item']} µs/item), {lx['tokens']} tokens, {lx['postings']} postings, "
              f"{lx['bytes_per_item']} B/item of Python heap ({lx['array_bytes']} B in numpy arrays).", ""]
    se = report.get("second_encoder_estimate")
    if se:
        sizes = ", ".join(f"{k} {v / 2**20:.1f} MiB" for k, v in se["extra_bytes"].items() if v)
        lines += [f"Serving the `frozen_*` rows instead (a second, frozen ONNX encoder for search), estimated from "
                  f"{se['basis']}: +{_f(se['extra_encode_p50_ms'])} ms per query (search p50 "
                  f"{_f(se['latency_ratio_estimate'])}x today's) and one more encoder file in the bundle "
                  f"({sizes}).", ""]
    if report.get("targets"):
        lines += ["Targets (served system vs frozen encoder):", "", "| target | value | goal | met |",
                  "|---|---|---|---|"]
        for name, t in report["targets"].items():
            goal = ("<= " if t.get("at_most") else ">= ") + _f(t["target"], 2)
            lines.append(f"| {name} | {_f(t['value'])} | {goal} | {'yes' if t['met'] else 'no'} |")
        lines.append("")
    return "\n".join(lines)


def write_search_report(report: dict[str, Any], directory: Path) -> dict[str, Path]:
    from .report import write_json

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    md = directory / "search.md"
    md.write_text(search_markdown(report) + "\n", encoding="utf-8")
    return {"json": write_json(report, directory / "search.json"), "markdown": md}


if __name__ == "__main__" and len(sys.argv) == 7 and sys.argv[1] == "--frozen-worker":
    _frozen_worker(*sys.argv[2:])
