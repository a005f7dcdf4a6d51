"""Encoder batch size for add_items: peak memory (fresh process per batch size) and throughput (one process,
batch sizes interleaved round by round).

usage: python batchsize.py peak BUNDLE ROWS on|off|release  -> JSON line (RSS/HWM around encoding 1,024 texts)
       python batchsize.py speed BUNDLE on|off|release       -> JSON line (s per 512 texts per rows per run)
"""
import json
import sys
import time

import numpy as np

from recengine.bundle import open_bundle
from recengine.models import ModelSet
from recengine.sessions import SessionConfig


def status():
    out = {}
    for line in open("/proc/self/status"):
        k = line.split(":", 1)[0]
        if k in ("VmRSS", "VmHWM"):
            out[k] = round(int(line.split()[1]) / 1024, 1)
    return out


POLICIES = {"on": (True, None), "off": (False, None), "release": (True, 1)}


def load(bundle, policy, rows):
    """The three sessions with the encoder under `policy` (on: ORT's defaults; off: no arena; release: arena
    on, given back after multi-row runs), at most `rows` texts per encoder run."""
    import recengine.models
    from recengine import sessions

    arena, release = POLICIES[policy]
    sessions.CPU_MEMORY["encoder"] = sessions.CpuMemoryPolicy(arena=arena, mem_pattern=True, release_above_rows=release)
    recengine.models.CPU_ENCODE_ROWS = rows
    r = open_bundle(bundle)
    texts = json.load(open(r.path(r.manifest["items"]["texts"])))
    return ModelSet.load(r, "cpu", SessionConfig(device="cpu", threads=1)), texts


mode, bundle = sys.argv[1], sys.argv[2]
if mode == "peak":
    bs, arena = int(sys.argv[3]), sys.argv[4]
    models, texts = load(bundle, arena, bs)
    rng = np.random.default_rng(0)
    batch = [texts[j] for j in rng.integers(0, len(texts), size=1024).tolist()]
    models.encode_batch(["warm up"])
    before = status()
    t = time.perf_counter()
    models.encode(batch, batch_size=bs)
    dt = time.perf_counter() - t
    after = status()
    print(json.dumps({"batch": bs, "policy": arena, "rss_before": before["VmRSS"], "hwm_before": before["VmHWM"],
                      "rss_after": after["VmRSS"], "hwm_after": after["VmHWM"],
                      "peak_over_before": round(after["VmHWM"] - before["VmRSS"], 1), "s": round(dt, 2)}))
else:
    arena = sys.argv[3]
    models, texts = load(bundle, arena, 64)
    rng = np.random.default_rng(1)
    sizes = (8, 16, 32, 64)
    times = {b: [] for b in sizes}
    for rnd in range(3):
        batch = [texts[j] for j in rng.integers(0, len(texts), size=512).tolist()]
        for b in sizes[rnd % 4:] + sizes[: rnd % 4]:
            t = time.perf_counter()
            models.encode(batch, batch_size=b)
            times[b].append(time.perf_counter() - t)
    med = {b: float(np.median(v)) for b, v in times.items()}
    print(json.dumps({"policy": arena, "s_per_512": {b: round(v, 3) for b, v in med.items()},
                      "vs_64": {b: round(v / med[64], 3) for b, v in med.items()},
                      "loadavg": open("/proc/loadavg").read().split()[0]}))
