"""A full synthetic bundle of N items grown from a real one, for end-to-end timing at scale.

`build_synthetic_bundle(source, out, n_extra)` keeps the source bundle's models, tokenizer and vocabularies
(copied byte for byte) and every real item and user, and appends `n_extra` synthetic items and a matching
number of synthetic users, so every serving path (`recommend` by user and by history, fusion, filters,
`similar_items`, `search`, `add_items`) runs on a catalogue of `n_real + n_extra` items through the real
reader and `Engine.open`:

- items: each synthetic item copies a random real "parent" and perturbs its vectors (`vectors`,
  `text_vectors`, `text_embeddings`, the latter re-normalised) by Gaussian noise of `sigma` x the real
  per-dimension std, so the catalogue keeps the real data's clustered shape (i.i.d. Gaussian vectors, the
  old `pad_synthetic`, are a much harder and less realistic case for HNSW); text = the parent's text plus a
  serial number; `item_feats` and attributes from the parent; two synthetic attributes for filters,
  `attr_lang` (categorical, skewed) and `attr_year` (numeric), are added to every item;
- users: as many synthetic users as keep the real users-per-item ratio; history lengths drawn from the
  real ones, items drawn with replacement in proportion to the parent's real popularity (+0.5), duplicates
  dropped; stored user vectors computed by the bundle's own user-tower ONNX model (fp32 when present);
- co-occurrence lists (when the source has them): each synthetic item gets its parent's list, so the
  co-occurrence stage of `recommend` costs what it costs on real items;
- popularity and `pop_bucket` recomputed from all histories with the bundle's bucket edges;
- both HNSW indexes built by `HnswBackend.build` on all cores and stored by `write_index`; `ef_search` in
  the manifest is the smallest of `efs` whose recall@k against exact search reaches `min_recall`
  (measured on the synthetic users' vectors for the item index and on perturbed catalogue text embeddings
  for the text index), so `Engine.open` serves at that ef.
"""

from __future__ import annotations

import copy
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

LANGS = ("en", "fr", "de", "es", "ja", "it", "ko", "pt")
LANG_P = (0.55, 0.1, 0.08, 0.08, 0.07, 0.05, 0.04, 0.03)
REWRITTEN = ("items/", "users/", "index/")


@dataclass
class SyntheticResult:
    """What `build_synthetic_bundle` wrote and how long each part took."""

    path: Path
    n_items: int
    n_users: int
    n_interactions: int
    n_real_items: int
    n_real_users: int
    timings: dict[str, float] = field(default_factory=dict)
    index: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per space: M, ef_construction, build seconds, the ef sweep (recall@k per ef) and the ef chosen."""
    bytes: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "n_items": self.n_items, "n_users": self.n_users,
                "n_interactions": self.n_interactions, "n_real_items": self.n_real_items,
                "n_real_users": self.n_real_users, "timings_s": {k: round(v, 2) for k, v in self.timings.items()},
                "index": self.index, "bundle_bytes": self.bytes}


def _perturb(real: np.ndarray, parents: np.ndarray, sigma: float, rng: np.random.Generator,
             unit: bool = False, chunk: int = 262_144) -> np.ndarray:
    std = real.std(0).astype(np.float32) + 1e-6
    out = np.empty((parents.size, real.shape[1]), dtype=np.float32)
    for s in range(0, parents.size, chunk):
        p = parents[s: s + chunk]
        block = real[p] + sigma * std * rng.standard_normal((p.size, real.shape[1]), dtype=np.float32)
        if unit:
            block /= np.maximum(np.linalg.norm(block, axis=1, keepdims=True), 1e-12)
        out[s: s + chunk] = block
    return out


def exact_topk(matrix: np.ndarray, queries: np.ndarray, k: int, chunk: int = 65_536) -> np.ndarray:
    """Exact inner-product top-k rows of `matrix` for each query (chunked over the catalogue)."""
    best_s = np.full((queries.shape[0], 0), -np.inf, np.float32)
    best_i = np.zeros((queries.shape[0], 0), np.int64)
    for s in range(0, matrix.shape[0], chunk):
        scores = queries @ matrix[s: s + chunk].T
        kk = min(k, scores.shape[1])
        idx = np.argpartition(-scores, kk - 1, axis=1)[:, :kk]
        cand_s = np.concatenate([best_s, np.take_along_axis(scores, idx, 1)], axis=1)
        cand_i = np.concatenate([best_i, idx + s], axis=1)
        order = np.argsort(-cand_s, axis=1)[:, :k]
        best_s, best_i = np.take_along_axis(cand_s, order, 1), np.take_along_axis(cand_i, order, 1)
    return best_i


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    k = truth.shape[1]
    return float(np.mean([len(np.intersect1d(a, t)) / k for a, t in zip(found, truth)]))


def choose_ef(backend: Any, queries: np.ndarray, truth: np.ndarray, efs: tuple[int, ...],
              min_recall: float) -> tuple[int, list[dict[str, float]]]:
    """The smallest ef in `efs` with recall@k >= `min_recall` (else the largest), and the sweep."""
    from recengine.retrieval import HnswBackend

    k = truth.shape[1]
    sweep = []
    chosen = None
    for ef in sorted(efs):
        hb = HnswBackend(backend.index, ef, backend.n_live, backend.max_norm)
        t = time.perf_counter()
        found = np.concatenate([hb.search(queries[s: s + 256], k)[0] for s in range(0, len(queries), 256)])
        ms = (time.perf_counter() - t) * 1000 / len(queries)
        r = recall_at_k(found, truth)
        sweep.append({"ef": int(ef), f"recall@{k}": round(r, 4), "ms_per_query_1thread": round(ms, 4)})
        if chosen is None and r >= min_recall:
            chosen = int(ef)
    return (chosen if chosen is not None else int(max(efs))), sweep


def _user_vectors(reader: Any, manifest: dict[str, Any], histories: list[np.ndarray], profiles: np.ndarray,
                  item_vectors: np.ndarray, threads: int, chunk: int = 2048) -> tuple[np.ndarray, str]:
    """Stored user vectors as the bundle's user tower computes them (scene unknown = code 0)."""
    import onnxruntime as ort

    from recengine.bundle.format import history_inputs, left_pad

    variants = manifest["models"]["user_tower"]["variants"]
    variant = next(v for v in ("fp32", "int8", "fp16") if v in variants)
    entry = variants[variant]
    rel = entry["path"] if isinstance(entry, dict) else entry
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.log_severity_level = 3
    sess = ort.InferenceSession(str(reader.path(rel)), opts, providers=["CPUExecutionProvider"])
    dims = manifest["dims"]
    out = np.empty((len(histories), int(dims["item"])), np.float32)
    for s in range(0, len(histories), chunk):
        hist, mask = history_inputs(left_pad(histories[s: s + chunk], int(dims["max_history"])), item_vectors)
        n = hist.shape[0]
        (vec,) = sess.run(None, {"history": hist, "history_mask": mask,
                                 "scene": np.zeros((n, int(dims["scene_slots"])), np.int64),
                                 "profile": np.ascontiguousarray(profiles[s: s + chunk], dtype=np.int64)})
        out[s: s + n] = vec
    return out, variant


def build_synthetic_bundle(source: str | Path, out: str | Path, n_extra: int, *, seed: int = 0,
                           sigma: float = 0.5, users_per_item: float | None = None, M: int | None = None,
                           ef_construction: int | None = None, efs: tuple[int, ...] = (16, 32, 64, 128, 256, 512),
                           min_recall: float = 0.95, k: int = 10, recall_queries: int = 500,
                           num_threads: int | None = None, force: bool = False,
                           progress: Any = None) -> SyntheticResult:
    """Write `source` + `n_extra` synthetic items (and users) as a complete bundle at `out` (see module doc).

    M / ef_construction: the HNSW build parameters (default: the source manifest's item index). `efs`: the
    ef values swept to pick `ef_search` (recall@k >= `min_recall` against exact search)."""
    from recengine.bundle import BundleWriter, open_bundle
    from recengine.bundle.format import (
        INDEX_SOURCE,
        ITEM_ARRAYS,
        IndexSpec,
        held_item_paths,
        stored_item_array,
        wants_augment,
    )
    from recengine.catalogue import pop_buckets
    from recengine.index_io import write_index
    from recengine.retrieval import HnswBackend, text_index_mode, text_index_wanted

    if n_extra < 0:
        raise ValueError(f"n_extra must be >= 0, got {n_extra}")
    say = progress.message if progress is not None else (lambda _m: None)
    threads = int(num_threads or os.cpu_count() or 1)
    timings: dict[str, float] = {}
    t0 = clock = time.perf_counter()
    rng = np.random.default_rng(seed)
    reader = open_bundle(source)
    src = reader.manifest
    items_spec, users_spec = src["items"], src["users"]
    ids = list(reader.load_json(items_spec["ids"]))
    texts = list(reader.load_json(items_spec["texts"]))
    attrs = dict(reader.load_json(items_spec["attrs"])) if items_spec.get("attrs") else {}
    arr = {key: reader.load_npy(items_spec[key]).astype(ITEM_ARRAYS[key], copy=False)  # as served (fp16 on disk)
           for key in ("vectors", "text_vectors", "text_embeddings", "popularity", "item_feats")}
    user_ids = list(reader.load_json(users_spec["ids"]))
    u_vectors = reader.load_npy(users_spec["vectors"]).astype(np.float32)
    u_profile = reader.load_npy(users_spec["profile"])
    indptr = reader.load_npy(users_spec["history_indptr"])
    h_items = reader.load_npy(users_spec["history_items"])
    n_real, n_real_users = len(ids), len(user_ids)
    if n_real == 0 or n_real_users == 0:
        raise ValueError(f"{source}: the source bundle needs items and users")

    # ---------------------------------------------------------------- items
    parents = rng.integers(0, n_real, size=n_extra)
    width = len(str(n_extra))
    new_ids = [f"syn-{i:0{width}d}" for i in range(n_extra)]
    taken = set(ids)
    if any(i in taken for i in new_ids):
        raise ValueError("the source bundle already has ids of the form syn-NNN")
    vectors = np.concatenate([arr["vectors"].astype(np.float32), _perturb(arr["vectors"], parents, sigma, rng)])
    text_vectors = np.concatenate([arr["text_vectors"].astype(np.float32),
                                   _perturb(arr["text_vectors"], parents, sigma, rng)])
    text_embeddings = np.concatenate([arr["text_embeddings"].astype(np.float32),
                                      _perturb(arr["text_embeddings"], parents, sigma, rng, unit=True)])
    item_feats = np.concatenate([arr["item_feats"], arr["item_feats"][parents]]).astype(np.float32)
    all_texts = texts + [f"{texts[p]} #{i}" for i, p in enumerate(parents.tolist())]
    all_ids = ids + new_ids
    n_items = n_real + n_extra
    all_attrs = {name: list(values) + [values[p] for p in parents.tolist()] for name, values in attrs.items()}
    if "attr_lang" not in all_attrs:
        all_attrs["attr_lang"] = [LANGS[i] for i in rng.choice(len(LANGS), size=n_items, p=LANG_P).tolist()]
    if "attr_year" not in all_attrs:
        all_attrs["attr_year"] = rng.integers(1950, 2026, size=n_items).tolist()
    timings["items"] = time.perf_counter() - clock

    # ---------------------------------------------------------------- users and histories
    clock = time.perf_counter()
    ratio = users_per_item if users_per_item is not None else n_real_users / n_real
    n_new_users = int(round(n_extra * ratio))
    lengths = np.diff(indptr)
    lengths = lengths[lengths > 0] if (lengths > 0).any() else np.ones(1, np.int64)
    draw_len = rng.choice(lengths, size=n_new_users)
    weights = np.concatenate([arr["popularity"], arr["popularity"][parents]]).astype(np.float64) + 0.5
    cdf = np.cumsum(weights)
    cdf /= cdf[-1]
    total = int(draw_len.sum())
    drawn = np.minimum(np.searchsorted(cdf, rng.random(total), side="right"), n_items - 1).astype(np.int64)
    owner = np.repeat(np.arange(n_new_users, dtype=np.int64), draw_len)
    # drop repeats of an item within a user's history, keeping the first (drawn order = chronology)
    _, first = np.unique(owner * n_items + drawn, return_index=True)
    first.sort()
    owner, drawn = owner[first], drawn[first]
    new_indptr = np.zeros(n_new_users + 1, np.int64)
    np.cumsum(np.bincount(owner, minlength=n_new_users), out=new_indptr[1:])
    new_hist = [drawn[new_indptr[u]: new_indptr[u + 1]] for u in range(n_new_users)]
    u_parents = rng.integers(0, n_real_users, size=n_new_users)
    new_profile = u_profile[u_parents] if n_new_users else u_profile[:0]
    new_vectors, tower_variant = (_user_vectors(reader, src, new_hist, new_profile, vectors, threads)
                                  if n_new_users else (u_vectors[:0], "none"))
    all_indptr = np.concatenate([indptr, indptr[-1] + new_indptr[1:]]).astype(np.int64)
    all_hist = np.concatenate([h_items.astype(np.int64), drawn]).astype(np.int64)
    all_user_ids = user_ids + [f"syn-u{i:0{len(str(max(n_new_users, 1)))}d}" for i in range(n_new_users)]
    all_uvec = np.concatenate([u_vectors, new_vectors]).astype(np.float32)
    all_profile = np.concatenate([u_profile, new_profile]).astype(np.int64)
    # popularity = distinct (user, item) pairs, as the export counts it
    user_of = np.repeat(np.arange(len(all_user_ids), dtype=np.int64), np.diff(all_indptr))
    pairs = np.unique(user_of * n_items + all_hist)
    popularity = np.bincount(pairs % n_items, minlength=n_items).astype(np.int64)
    edges = np.asarray(src.get("vocab", {}).get("pop_bucket_edges", []), dtype=np.float64)
    pop_bucket = pop_buckets(popularity, edges)
    timings["users"] = time.perf_counter() - clock
    say(f"synthetic: {n_items} items, {len(all_user_ids)} users, {all_hist.size} interactions")

    manifest = copy.deepcopy(src)
    manifest.pop("files", None)
    for key in ("format", "format_version", "recengine_version", "created_at"):
        manifest.pop(key, None)
    index_cfg = src.get("index", {}).get("item", {})
    M = int(M or index_cfg.get("M", 16))
    ef_construction = int(ef_construction or index_cfg.get("ef_construction", 200))
    result = SyntheticResult(Path(out), n_items, len(all_user_ids), int(all_hist.size), n_real, n_real_users)

    indexed = ["item"] + (["text"] if text_index_wanted(n_items, text_index_mode(src)) else [])

    with BundleWriter(out, force=force) as writer:
        clock = time.perf_counter()
        for rel in src.get("files", {}):
            if not rel.startswith(REWRITTEN):
                shutil.copyfile(reader.path(rel), writer.path(rel))
        item_values: dict[str, Any] = {
            "ids": all_ids, "texts": all_texts, "attrs": all_attrs, "vectors": vectors,
            "text_vectors": text_vectors, "text_embeddings": text_embeddings, "popularity": popularity,
            "pop_bucket": pop_bucket, "item_feats": item_feats}
        from recengine.bundle.format import ITEM_FILES, USER_FILES

        items_out = manifest.setdefault("items", {})
        held = held_item_paths(indexed)
        for key, default in ITEM_FILES.items():
            if key in INDEX_SOURCE.values():  # the rows an index holds (format 2), else a .npy of their own
                items_out[key] = held.get(key) or default
            rel = items_out.setdefault(key, default)
            value = item_values[key]
            if key in held:
                continue  # written by its index below
            if isinstance(value, np.ndarray):
                writer.write_npy(rel, stored_item_array(key, value) if key in ITEM_ARRAYS else value)
            else:
                writer.write_json(rel, value)
        users_out = manifest.setdefault("users", {})
        user_values: dict[str, Any] = {"ids": all_user_ids, "vectors": all_uvec, "profile": all_profile,
                                       "history_indptr": all_indptr, "history_items": all_hist}
        for key, default in USER_FILES.items():
            rel = users_out.setdefault(key, default)
            value = user_values[key]
            writer.write_npy(rel, value) if isinstance(value, np.ndarray) else writer.write_json(rel, value)
        if src.get("cooccur"):  # a synthetic item reads its parent's list: the request-time cost of a real one
            co_spec = manifest["cooccur"]
            for key in ("indices", "scores"):
                real = reader.load_npy(src["cooccur"][key])
                # lists cover the first rows only: synthetic rows get theirs when every real row has one
                grown = np.concatenate([real, real[parents]]) if real.shape[0] == n_real else real
                writer.write_npy(co_spec[key], grown)
        timings["write_arrays"] = time.perf_counter() - clock

        matrices = {"vectors": vectors, "text_embeddings": text_embeddings}
        q_rows = rng.choice(len(all_user_ids), size=min(recall_queries, len(all_user_ids)), replace=False)
        t_rows = rng.choice(n_items, size=min(recall_queries, n_items), replace=False)
        queries = {"item": all_uvec[q_rows],
                   "text": _perturb(text_embeddings, t_rows, sigma, rng, unit=True)}
        index_out: dict[str, Any] = {}
        for name in indexed:
            rel = held_item_paths([name])[INDEX_SOURCE[name]]
            matrix = matrices[INDEX_SOURCE[name]]
            clock = time.perf_counter()
            augment = wants_augment(matrix)
            built = HnswBackend.build(matrix, np.arange(n_items, dtype=np.int64), M=M,
                                      ef_construction=ef_construction, ef=min(efs), augment=augment, seed=seed,
                                      num_threads=threads)
            build_s = time.perf_counter() - clock
            say(f"synthetic: {name} index ({n_items} x {matrix.shape[1]}{' + 1' if augment else ''}) built in "
                f"{build_s:.1f} s on {threads} threads")
            clock = time.perf_counter()
            truth = exact_topk(matrix, queries[name], k)
            ef, sweep = choose_ef(built, queries[name], truth, efs, min_recall)
            sweep_s = time.perf_counter() - clock
            section = write_index(writer, name, rel, matrix, M=M, ef_construction=ef_construction, ef_search=ef,
                                  seed=seed, served=built)
            spec = IndexSpec.from_manifest(name, section, matrix.shape[1])
            index_out[name] = section
            result.index[name] = {"M": M, "ef_construction": ef_construction, "augment": augment,
                                  "dim": spec.dim, "build_s": round(build_s, 2), "threads": threads,
                                  "ef_search": ef, "min_recall": min_recall, "recall_queries": len(queries[name]),
                                  "query": "stored user vectors" if name == "item" else
                                           "perturbed catalogue text embeddings",
                                  "sweep": sweep, "sweep_s": round(sweep_s, 2)}
            timings[f"index_{name}"] = build_s + sweep_s
        manifest["index"] = index_out
        data = manifest.setdefault("data", {})
        data.update({"name": f"{data.get('name', 'bundle')}+synthetic{n_extra}", "n_items": n_items,
                     "n_users": len(all_user_ids), "n_interactions": int(all_hist.size)})
        cols = list(data.get("item_attr_columns", []))
        data["item_attr_columns"] = cols + [c for c in all_attrs if c not in cols]
        manifest["synthetic"] = {"source": str(Path(source).resolve()), "n_extra": n_extra, "seed": seed,
                                 "sigma": sigma, "users_per_item": ratio, "user_tower_variant": tower_variant,
                                 "builder": "recengine.bench.synthetic.build_synthetic_bundle"}
        clock = time.perf_counter()
        path = writer.commit(manifest)
        timings["commit"] = time.perf_counter() - clock
    timings["total"] = time.perf_counter() - t0
    result.path = path
    result.timings = timings
    result.bytes = sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())
    return result


def _proc_status() -> dict[str, float]:
    """VmRSS / VmHWM (peak) of this process in MiB (Linux); ru_maxrss elsewhere."""
    out: dict[str, float] = {}
    try:
        with open("/proc/self/status", encoding="utf-8") as handle:
            for line in handle:
                key = line.split(":", 1)[0]
                if key in ("VmRSS", "VmHWM"):
                    out[key] = round(int(line.split()[1]) / 1024, 1)
    except OSError:
        import resource

        out["VmHWM"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return out


def open_probe(bundle: str, variant: str | None, threads: int, requests: int = 50, seed: int = 0) -> dict[str, Any]:
    """In a fresh process: `Engine.open` time and RSS before/after opening, after warm-up and `requests`
    served calls (steady), and the peak (VmHWM). Run by `probe_open` in a child process, so nothing else
    the bench holds (other engines, torch, fixtures) counts."""
    import numpy as _np

    import recengine  # noqa: F401  (imports, not the bundle, in the baseline)

    base = _proc_status()
    from recengine.engine import Engine

    base_engine_import = _proc_status()
    t = time.perf_counter()
    engine = Engine.open(bundle, device="cpu", threads=threads, variant=variant)
    open_s = time.perf_counter() - t
    after_open = _proc_status()
    t = time.perf_counter()
    engine.warmup()
    warmup_s = time.perf_counter() - t
    rng = _np.random.default_rng(seed)
    users = engine._state.users.ids  # noqa: SLF001  (ids to ask for; read-only)
    items = engine._state.catalogue.ids  # noqa: SLF001
    for i in rng.integers(0, len(users), size=requests).tolist():
        engine.recommend(user_id=users[i], k=10)
    for i in rng.integers(0, len(items), size=max(1, requests // 5)).tolist():
        engine.similar_items(items[i], k=10)
        engine.search("a story about " + str(items[i]), k=10)
    steady = _proc_status()
    return {"open_s": round(open_s, 3), "warmup_s": round(warmup_s, 3), "variants": engine.variants,
            "rss_mib_before_open": base_engine_import.get("VmRSS"), "rss_mib_after_import_recengine": base.get("VmRSS"),
            "rss_mib_after_open": after_open.get("VmRSS"), "rss_mib_steady": steady.get("VmRSS"),
            "rss_mib_peak": steady.get("VmHWM"), "served_calls": requests + 2 * max(1, requests // 5)}


def probe_open(bundle: str | Path, variant: str | None, threads: int = 1, runs: int = 3, requests: int = 50,
               timeout: float = 900.0) -> dict[str, Any]:
    """`open_probe` in `runs` fresh child processes; returns every run and the median of each number."""
    import json
    import statistics
    import subprocess
    import sys

    code = ("import json, sys; from recengine.bench.synthetic import open_probe; "
            "print('PROBE ' + json.dumps(open_probe(sys.argv[1], sys.argv[2] or None, int(sys.argv[3]), "
            "int(sys.argv[4]))))")
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "OPENBLAS_NUM_THREADS": str(threads)}
    runs_out = []
    for _ in range(runs):
        proc = subprocess.run([sys.executable, "-c", code, str(bundle), variant or "", str(threads), str(requests)],
                              capture_output=True, text=True, timeout=timeout, env=env)
        line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("PROBE ")), None)
        if proc.returncode != 0 or line is None:
            raise RuntimeError(f"open probe of {bundle} failed (exit {proc.returncode}): "
                               f"{(proc.stderr or proc.stdout).strip().splitlines()[-1:]}")
        runs_out.append(json.loads(line[6:]))
    median = {key: round(statistics.median(r[key] for r in runs_out), 3) for key in runs_out[0]
              if isinstance(runs_out[0][key], (int, float)) and all(r.get(key) is not None for r in runs_out)}
    return {"bundle": str(bundle), "threads": threads, "runs": runs_out, "median": median,
            "bundle_bytes": sum(p.stat().st_size for p in Path(bundle).rglob("*") if p.is_file())}


__all__ = ["build_synthetic_bundle", "SyntheticResult", "exact_topk", "choose_ef", "recall_at_k", "open_probe",
           "probe_open"]
