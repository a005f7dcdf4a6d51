"""The MiniLM bundle grown to ~110k items live, then `search` p50: dense-only vs hybrid, interleaved.

Usage: python search_minilm_110k.py BUNDLE OUT.json (BUNDLE: a standard export of the embedded MovieLens).
100,000 synthetic items (a random movie's text + " #i", as `recengine bench latency --synthetic-items`
writes them) are added with `Engine.add_items` in batches of 2,000 (encoded by the bundle's MiniLM, indexed
by HNSW and by the BM25 index's live delta segment); then `neighbours.search` at batch 1 on one thread,
encoder run included, dense and hybrid alternating per query, over four query families, 5 runs each.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np

from recengine import Engine, neighbours


def main(bundle: str, out: str) -> None:
    eng = Engine.open(bundle, device="cpu", threads=1)
    eng.search("warm up", k=10)
    base = list(eng._state.catalogue.texts)
    rng = np.random.default_rng(0)
    parents = rng.integers(0, len(base), 100_000).tolist()
    t0 = time.perf_counter()
    for s in range(0, len(parents), 2000):
        eng.add_items([{"item_id": f"syn-{i}", "text": f"{base[p]} #{i}"}
                       for i, p in enumerate(parents[s:s + 2000], start=s)], batch_size=64)
    add_s = time.perf_counter() - t0
    st = eng._state
    cat = st.catalogue
    texts = cat.texts
    lex = st.lexical
    real = lex.get() if hasattr(lex, "get") else lex
    picks = rng.integers(0, cat.n_rows, 64).tolist()
    families = {
        "latency_bench": [" ".join(texts[i].splitlines()[0].split()[:6]) for i in picks],
        "title_lower": [texts[i].splitlines()[0].split(": ", 1)[1].split(" (")[0].lower() for i in picks],
        "descriptive": ["funny animated movie for kids about toys", "space adventure with robots",
                        "romantic comedy in paris", "dark psychological thriller", "documentary about music",
                        "war drama", "horror movie with zombies", "animated children fantasy"],
        "one_common_word": ["comedy", "drama", "action", "thriller"],
    }
    res = {"n_items": int(cat.n_alive), "add_s": add_s, "postings": real.n_postings,
           "delta_postings": real._delta.n_postings, "families": {},
           "load_start": open("/proc/loadavg").read().strip()}
    for fam, qs in families.items():
        t: dict[str, list[float]] = {"dense": [], "hybrid": []}
        for rep in range(5):
            for j, q in enumerate(qs):
                for mode in (("dense", "hybrid") if (rep + j) % 2 else ("hybrid", "dense")):
                    s0 = time.perf_counter()
                    neighbours.search(st, q, 10, None, mode=mode)
                    t[mode].append(time.perf_counter() - s0)
        d = np.percentile(np.array(t["dense"]) * 1e3, [50, 99])
        h = np.percentile(np.array(t["hybrid"]) * 1e3, [50, 99])
        res["families"][fam] = {"dense_p50_ms": d[0], "dense_p99_ms": d[1], "hybrid_p50_ms": h[0],
                                "hybrid_p99_ms": h[1], "hybrid_over_dense_p50": h[0] / d[0],
                                "hybrid_over_dense_p99": h[1] / d[1]}
    res["load_end"] = open("/proc/loadavg").read().strip()
    with open(out, "w") as fh:
        json.dump(res, fh, indent=1)
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
