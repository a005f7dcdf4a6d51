"""Encode 1M short item texts with a bundle's INT8 MiniLM encoder through the runtime (what `add_items` runs),
on all cores given, in chunks: wall time, texts/s, CPU time and peak RSS, measured, not extrapolated.

Texts: the bundle's own catalogue texts, each with " #i" appended (as `recengine bench latency
--synthetic-items` writes them), cycled to N. Usage: python encode_1m.py BUNDLE N THREADS OUT.json
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time

import numpy as np

from recengine import Engine

CHUNK = 8192


def main() -> None:
    bundle, n, threads, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    st = Engine.open(bundle, device="cpu", threads=threads, variant="int8")._state
    base = list(st.catalogue.texts)
    lens = []
    t_wall, t_cpu = time.perf_counter(), time.process_time()
    chunks = []
    for start in range(0, n, CHUNK):
        texts = [f"{base[i % len(base)]} #{i}" for i in range(start, min(n, start + CHUNK))]
        c0 = time.perf_counter()
        emb, vec = st.models.encode(texts, batch_size=64)
        chunks.append(time.perf_counter() - c0)
        assert emb.shape[0] == len(texts) and np.isfinite(emb).all()
        if start == 0:
            lens = st.models.tokenizer.lengths(texts[:2000]).tolist()
        if (start // CHUNK) % 10 == 0:
            done = start + len(texts)
            print(f"{done} texts, {done / (time.perf_counter() - t_wall):.1f}/s", flush=True)
    wall, cpu = time.perf_counter() - t_wall, time.process_time() - t_cpu
    report = {"bundle": bundle, "texts": n, "threads": threads, "chunk": CHUNK, "wall_s": wall, "cpu_s": cpu,
              "texts_per_s": n / wall, "texts_per_cpu_s": n / cpu,
              "chunk_s_p50": float(np.median(chunks)), "chunk_s_max": float(np.max(chunks)),
              "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
              "mean_tokens_first_2000": float(np.mean(lens)) if lens else None,
              "load_end": os.getloadavg()}
    print(json.dumps(report, indent=1))
    with open(out, "w") as f:
        json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
