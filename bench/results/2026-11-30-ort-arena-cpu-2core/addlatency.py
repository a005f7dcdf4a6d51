"""add_items latency before vs after the memory policy, in ONE process, calls interleaved (order alternating
per round), so load changes hit both alike. "before": every session with ORT's defaults and 64 texts per
encoder run (the runtime before this change); "after": this checkout's policy (`sessions.CPU_MEMORY`,
`CPU_ENCODE_ROWS`). The "before" engine's arena keeps its memory, so the "after" engine's malloc_trim does not
take memory from under it. Both engines serve the same bundle; each call adds texts not added before.

usage: python addlatency.py OUT.json BUNDLE
"""
import json
import statistics
import sys
import time

import numpy as np

import recengine.models
from recengine import sessions
from recengine.engine import Engine

AFTER_ROWS = sessions.CPU_ENCODE_ROWS
AFTER_MEMORY = dict(sessions.CPU_MEMORY)


def main():
    out, bundle = sys.argv[1], sys.argv[2]
    for kind in AFTER_MEMORY:
        sessions.CPU_MEMORY[kind] = sessions.CpuMemoryPolicy(arena=True, mem_pattern=True, release_above_rows=None)
    before = Engine.open(bundle, device="cpu", threads=1)
    sessions.CPU_MEMORY.update(AFTER_MEMORY)
    after = Engine.open(bundle, device="cpu", threads=1)
    assert before._state.models.encoder.memory.release_above_rows is None
    assert after._state.models.encoder.memory == AFTER_MEMORY["encoder"]
    engines = {"before": (before, 64), "after": (after, AFTER_ROWS)}
    for e, _ in engines.values():
        e.warmup()
    texts = list(before._state.catalogue.texts)
    rng = np.random.default_rng(0)
    res = {"loadavg_start": open("/proc/loadavg").read().split()[:3]}
    counter = [0]

    def items(n):
        pick = rng.integers(0, len(texts), size=n).tolist()
        start = counter[0]
        counter[0] += n
        return [{"item_id": f"x{start + i}", "text": texts[j]} for i, j in enumerate(pick)]

    for label, n, rounds in (("add_items_64", 64, 12), ("add_items_1000", 1000, 4)):
        samples = {k: [] for k in engines}
        for r in range(rounds):
            batch = items(n)
            for name in (list(engines) if r % 2 == 0 else list(engines)[::-1]):
                e, rows = engines[name]
                recengine.models.CPU_ENCODE_ROWS = rows
                t = time.perf_counter()
                e.add_items([dict(x) for x in batch])
                samples[name].append((time.perf_counter() - t) * 1000)
        med = {k: statistics.median(v[1:] if len(v) > 4 else v) for k, v in samples.items()}
        res[label] = {"median_ms": {k: round(v, 1) for k, v in med.items()},
                      "after_vs_before": round(med["after"] / med["before"], 3),
                      "samples_ms": {k: [round(x, 1) for x in v] for k, v in samples.items()}}
        print(label, json.dumps(res[label]["median_ms"]), res[label]["after_vs_before"], flush=True)
    res["loadavg_end"] = open("/proc/loadavg").read().split()[:3]
    json.dump(res, open(out, "w"), indent=1)


if __name__ == "__main__":
    main()
