"""Fusion rules tried for the split bundles' search (issue 15), each over every row (an exact scan of the text
space and the dense BM25 vector), on the search bench's queries (seed 0, 300 known items x 4, 40 per attribute
column) and, on MovieLens and MovieLens-100K, the ten descriptive queries (those whose film is in the catalogue).

sum_<scale>_<w>: cos + w * bm25 / s (the served rule before, at power 1; s = the best candidate's BM25, or
max(best, full)); rel_full_1: the cosine min-max normalised over its top 100 + bm25 / s; sq_full_<w>:
cos + w * (bm25 / max(best, full))^2 (served: w = 1); cube_*: the cube.

Usage: python fusion_explore.py BUNDLE DATA|-     (- = the embedded MovieLens)
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np

import recengine
from recengine.bench.search import K, evaluate, flat_queries, make_queries
from recengine.data import load_dataset
from recengine.retrieval import topk_rows

sys.path.insert(0, str(Path(__file__).resolve().parent))
from descriptive_queries import QUERIES as DESCRIPTIVE  # noqa: E402


def rank(score: np.ndarray) -> np.ndarray:
    idx, _ = topk_rows(score[None, :].astype(np.float32), K)
    return idx[0]


def summed(w: float, scale: str):
    def rule(cos: np.ndarray, lex: np.ndarray, full: float) -> np.ndarray:
        best = lex.max()
        if best <= 0:
            return cos
        s = max(best, full) if scale == "full" else best
        return (cos + w * lex / s) / (1 + w)
    return rule


def relative(w: float, n: int = 100):
    def rule(cos: np.ndarray, lex: np.ndarray, full: float) -> np.ndarray:
        best = lex.max()
        if best <= 0:
            return cos
        top = np.partition(cos, -n)[-n:]
        lo, hi = top.min(), top.max()
        return np.clip((cos - lo) / max(hi - lo, 1e-6), 0, None) + w * lex / max(best, full)
    return rule


def powered(w: float, p: float = 2.0):
    def rule(cos: np.ndarray, lex: np.ndarray, full: float) -> np.ndarray:
        best = lex.max()
        if best <= 0:
            return cos
        return cos + w * (lex / max(best, full)) ** p
    return rule


RULES = {"dense": lambda cos, lex, full: cos, "sum_best_1": summed(1, "best"), "sum_full_1": summed(1, "full"),
         "sum_full_0.5": summed(0.5, "full"), "rel_full_1": relative(1), "sq_full_1": powered(1),
         "sq_full_0.5": powered(0.5), "cube_full_1": powered(1, 3), "cube_full_2": powered(2, 3)}


def main(bundle: str, data: str | None) -> None:
    engine = recengine.Engine.open(bundle, threads=1)
    engine.wait_ready()
    st = engine._state
    cat = st.catalogue
    texts = list(cat.texts)
    dataset = load_dataset(data)
    columns = tuple(st.manifest["data"].get("text_columns") or dataset.items.text_columns)
    queries = make_queries(texts, columns, 300, 40, 0)
    flat, offsets = flat_queries(queries)
    described = list(DESCRIPTIVE) if data is None or "ml100k" in data else []
    every = flat + described
    emb = np.concatenate([st.models.encode_queries(every[s:s + 64]) for s in range(0, len(every), 64)])
    cos_all = emb @ cat.text_embeddings.T
    lexical = [st.lexical.query(q) for q in every]
    lex = np.stack([lq.dense(len(texts)) for lq in lexical])
    full = np.array([lq.full for lq in lexical])
    titles = [t.split("\n")[0].removeprefix("title: ") for t in texts]
    for name, rule in RULES.items():
        def ranker(i: int, q: str, rule=rule) -> np.ndarray:
            return rank(rule(cos_all[i], lex[i], full[i]))

        r = evaluate(ranker, queries, offsets)
        row = {"hit@1": round(r["known_item"]["all"]["hit@1"], 3), "hit@10": round(r["known_item"]["all"]["hit@10"], 3),
               "typo@1": round(r["known_item"]["typo"]["hit@1"], 3),
               "attrP@10": round(r["attribute"]["all"]["precision@10"] or 0.0, 3)}
        if described:
            hits = present = 0
            for j, q in enumerate(described):
                wanted = {k for k, t in enumerate(titles) if re.search(DESCRIPTIVE[q], t)}
                if not wanted:
                    continue
                present += 1
                got = ranker(len(flat) + j, q).tolist()
                if set(got) & wanted:
                    hits += 1
                elif name == "sq_full_1":
                    print("   miss", q, [titles[g] for g in got[:3]])
            row["desc@10"], row["desc_n"] = hits, present
        print(name, row, flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 and sys.argv[2] != "-" else None)
