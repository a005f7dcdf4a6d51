"""`search` at 110k items, before and after the compact BM25 index (issue 15), in one process.

Usage: python search_110k.py BUNDLE OLD_DIR OUT.json
  BUNDLE: the synthetic bundle of `recengine bench latency --synthetic-items 100000` (or any bundle);
  OLD_DIR: a directory holding the previous `lexical.py` and `neighbours.py`
           (`git show aa27aa5:runtime/lexical.py > OLD_DIR/lexical.py`, same for neighbours.py).
Per query, interleaved (alternating order): dense-only search (`neighbours.search(mode="dense")`, the search
before issue 15), the old and the new hybrid search (`neighbours.search`: encoder run included, one thread),
and the lexical half alone of each (tokenise .. the 100 BM25 candidates); then `Engine.search` (the new one).
Four query families. Each index's memory: RSS growth over its build in a fresh child process, before and
after malloc_trim (`Engine.open` trims after its background build since d97ccb9), and its build time.
"""

from __future__ import annotations

import ctypes
import dataclasses
import gc
import importlib.util
import json
import subprocess
import sys
import time
from typing import Any

import numpy as np


def load_old(old_dir: str) -> dict[str, Any]:
    import recengine  # noqa: F401  (the package the old modules' relative imports resolve in)

    mods = {}
    for name in ("lexical", "neighbours"):
        spec = importlib.util.spec_from_file_location(f"recengine.{name}_old", f"{old_dir}/{name}.py")
        assert spec is not None and spec.loader is not None
        mod = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = mod
        spec.loader.exec_module(mod)
        mods[name] = mod
    return mods


def rss_mib() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024
    return float("nan")


def rss_child(bundle: str, old_dir: str, which: str) -> None:
    with open(f"{bundle}/items/texts.json", encoding="utf-8") as fh:
        texts = json.load(fh)
    cls = load_old(old_dir)["lexical"].LexicalIndex if which == "old" else None
    if cls is None:
        from recengine.lexical import LexicalIndex as cls
    gc.collect()
    before = rss_mib()
    t0 = time.perf_counter()
    idx = cls.build(texts)
    build = time.perf_counter() - t0
    gc.collect()
    held = rss_mib() - before
    ctypes.CDLL(None).malloc_trim(0)
    print(json.dumps({"which": which, "build_s": build, "rss_delta_mib": held,
                      "rss_delta_after_malloc_trim_mib": rss_mib() - before, "tokens": idx.n_tokens,
                      "postings": idx.n_postings}))


def pct(values: list[float]) -> dict[str, float]:
    a = np.asarray(values) * 1e3
    return {"p50_ms": round(float(np.percentile(a, 50)), 4), "p99_ms": round(float(np.percentile(a, 99)), 4)}


def main(bundle: str, old_dir: str, out: str) -> None:
    from recengine import Engine, neighbours
    from recengine.lexical import LexicalIndex

    res: dict[str, Any] = {"loadavg_start": open("/proc/loadavg").read().strip(), "bundle": bundle}
    old = load_old(old_dir)
    eng = Engine.open(bundle, device="cpu", threads=1)
    eng.search("warm up", k=10)  # waits for the background BM25 build
    st = eng._state
    cat = st.catalogue
    texts = list(cat.texts)
    t0 = time.perf_counter()
    old_idx = old["lexical"].LexicalIndex.build(texts, cat.alive)
    t1 = time.perf_counter()
    new_idx = LexicalIndex.build(texts, cat.alive)
    t2 = time.perf_counter()
    st_old = dataclasses.replace(st, lexical=old_idx)
    st_new = dataclasses.replace(st, lexical=new_idx)
    rng = np.random.default_rng(0)
    picks = rng.integers(0, cat.n_rows, 64).tolist()
    families = {
        # bench latency's e2e search queries: the first line of an item text, first 6 words ("title: ...")
        "latency_bench": [" ".join(texts[i].splitlines()[0].split()[:6]) for i in picks],
        "title_lower": [texts[i].splitlines()[0].split(": ", 1)[1].split(" (")[0].lower() for i in picks],
        "descriptive": ["funny animated movie for kids about toys", "space adventure with robots",
                        "romantic comedy in paris", "dark psychological thriller", "documentary about music",
                        "war drama", "horror movie with zombies", "animated children fantasy"],
        "one_common_word": ["comedy", "drama", "action", "thriller"],
    }
    same = total = 0
    diffs = []
    for qs in families.values():
        for q in qs:
            a = old["neighbours"].search(st_old, q, 10, None).rows.tolist()
            b = neighbours.search(st_new, q, 10, None).rows.tolist()
            same += a == b
            total += 1
            if a != b:
                diffs.append({"q": q, "old": a, "new": b})
    res.update({"n_items": int(cat.n_alive), "build_s": {"old": t1 - t0, "new": t2 - t1},
                "same_top10": f"{same}/{total}", "diffs": diffs, "families": {}})
    for fam, qs in families.items():
        t: dict[str, list[float]] = {k: [] for k in ("dense", "old", "new", "engine_new", "lex_old", "lex_new")}
        for _ in range(7):
            for j, q in enumerate(qs):
                runs = [("dense", lambda q=q: neighbours.search(st_new, q, 10, None, mode="dense")),
                        ("old", lambda q=q: old["neighbours"].search(st_old, q, 10, None)),
                        ("new", lambda q=q: neighbours.search(st_new, q, 10, None)),
                        ("lex_old", lambda q=q: old["neighbours"].lexical_top(old_idx.scores(q, cat.n_rows),
                                                                             cat.alive, 100)),
                        ("lex_new", lambda q=q: new_idx.query(q).top(100, None)),
                        ("engine_new", lambda q=q: eng.search(q, k=10))]
                for name, fn in (runs if j % 2 else runs[::-1]):
                    s = time.perf_counter()
                    fn()
                    t[name].append(time.perf_counter() - s)
        row: dict[str, Any] = {k: pct(v) for k, v in t.items()}
        for k in ("old", "new", "engine_new"):
            row[f"{k}_over_dense_p50"] = row[k]["p50_ms"] / row["dense"]["p50_ms"]
            row[f"{k}_over_dense_p99"] = row[k]["p99_ms"] / row["dense"]["p99_ms"]
        res["families"][fam] = row
    st_old = st_new = old_idx = new_idx = None  # free both indexes before the child processes measure theirs
    gc.collect()
    res["rss"] = [json.loads(subprocess.run([sys.executable, __file__, bundle, old_dir, "-", "--rss", w],
                                            capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1])
                  for w in ("old", "new")]
    res["loadavg_end"] = open("/proc/loadavg").read().strip()
    with open("/proc/cpuinfo") as fh:
        flags = {f for line in fh if line.startswith("flags") for f in line.split(":")[1].split()}
    res["cpu_flags"] = sorted(flags & {"avx2", "avx512f", "avx512_vnni", "amx_tile"})
    with open(out, "w") as fh:
        json.dump(res, fh, indent=1)
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    if "--rss" in sys.argv:
        rss_child(sys.argv[1], sys.argv[2], sys.argv[sys.argv.index("--rss") + 1])
    else:
        main(sys.argv[1], sys.argv[2], sys.argv[3])
