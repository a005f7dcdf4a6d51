"""Descriptive queries (a plot in a few words, no title word) on a MovieLens bundle: which search space finds
the film meant? Hand-written queries, each with the titles it means (a regular expression over the
catalogue's titles); hit@10 and the rank of the first hit for: the served hybrid (the bundle's text space +
BM25, `search`), the same with the earlier fusion rules (`best^1`: BM25 / the best candidate's, served before;
`full^1`: BM25 / the whole query's), its dense half alone (`bundle_dense`: the pre-trained encoder of a split
bundle, the fine-tuned one of an unsplit bundle), the untouched all-MiniLM-L6-v2 alone (torch, child process,
as `recengine bench search` runs it) and that fused with BM25 by the earlier rules (power 1).
(Copied from ../2026-11-30-search-descriptive-cpu-2core/, where the dense half was labelled `finetuned_dense`.)

Usage: python descriptive_queries.py BUNDLE OUT.json   (BUNDLE exported from the embedded MovieLens)
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np

import recengine
from recengine import neighbours
from recengine.bench.search import K, frozen_embeddings
from recengine.export.encoder.source import default_encoder_dir

QUERIES = {
    "funny animated movie for kids about toys": r"^Toy Story",
    "boy wizard goes to a school of magic": r"^Harry Potter",
    "dinosaurs escape in a theme park": r"Jurassic Park",
    "a shark attacks a beach town": r"^Jaws",
    "mafia family crime saga": r"^Godfather",
    "superhero team saves the world": r"^(Avengers|Justice League|X-Men)",
    "astronaut stranded on mars": r"Martian",
    "sinking ship love story": r"^Titanic \(1997\)",
    "talking animals in the jungle": r"Jungle Book",
    "detective hunts a serial killer": r"^(Se7en|Silence of the Lambs|Zodiac)",
}


def main(bundle: str, out: str) -> None:
    e = recengine.Engine.open(bundle, threads=1)
    st = e._state
    cat = st.catalogue
    texts = list(cat.texts)
    titles = [t.split("\n")[0].removeprefix("title: ") for t in texts]
    qs = list(QUERIES)
    emb = frozen_embeddings(Path(default_encoder_dir()), texts + qs,
                            int(e.manifest["tokenizer"].get("max_length", 128)), 1)
    items_f, q_f = emb[: len(texts)], emb[len(texts):]
    q_b, _ = st.models.encode(qs)
    rows_out: dict[str, dict[str, object]] = {}
    for i, q in enumerate(qs):
        wanted = {r for r, t in enumerate(titles) if re.search(QUERIES[q], t)}
        lq = st.lexical.query(q)
        lex_rows, lex_scores = lq.top(max(K, neighbours.SEARCH_CANDIDATES), cat.alive)
        cos_f = items_f @ q_f[i]
        dense_f = np.argsort(-cos_f)[: max(K, neighbours.DENSE_CANDIDATES)]

        def frozen_fused(full: float, lq=lq, lex_rows=lex_rows, lex_scores=lex_scores, cos_f=cos_f,
                         dense_f=dense_f) -> np.ndarray:
            return neighbours.fuse(dense_f, cos_f[dense_f], lambda sel: cos_f[sel], lex_rows, lex_scores, lq.score, K,
                                   neighbours.FUSION, full=full, power=1.0).rows

        systems = {
            "served_hybrid": neighbours.search_embedded(st, q_b[i], q, K, None).rows,
            "hybrid_best^1": neighbours.search_embedded(st, q_b[i], q, K, None, scale="best", power=1.0).rows,
            "hybrid_full^1": neighbours.search_embedded(st, q_b[i], q, K, None, scale="full", power=1.0).rows,
            "bundle_dense": neighbours.search_embedded(st, q_b[i], q, K, None, mode="dense").rows,
            "frozen_dense": dense_f[:K],
            "frozen_hybrid": frozen_fused(0.0),
            "frozen_hybrid_full": frozen_fused(lq.full),
        }
        rows_out[q] = {"wanted": sorted(titles[r] for r in wanted)[:5]}
        for name, rows in systems.items():
            ranks = [k + 1 for k, r in enumerate(rows.tolist()[:K]) if r in wanted]
            rows_out[q][name] = {"rank": ranks[0] if ranks else None, "top3": [titles[r] for r in rows[:3]]}
    summary = {name: sum(1 for q in qs if rows_out[q][name]["rank"] is not None)
               for name in rows_out[qs[0]] if name != "wanted"}
    Path(out).write_text(json.dumps({"bundle": bundle, "k": K, "hits@10": summary, "queries": rows_out},
                                    indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(json.dumps(summary))
    for q in qs:
        print(q, {n: v["rank"] for n, v in rows_out[q].items() if n != "wanted"})


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
