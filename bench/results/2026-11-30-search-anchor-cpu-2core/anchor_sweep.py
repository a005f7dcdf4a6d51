"""Anchor sweep (issue 15): the export's LightGCN once, then the text tower (LoRA MiniLM, standard profile
after adapt) once per `encoder.anchor` value; for each, the dense search quality of its `text_embedding`
(the bench search's known-item and attribute queries, seed 0: hit@1/@10 over the four known-item forms,
P@10 over genre and tag queries) and how well its item vectors find their own graph vector among the warm
items' (t2g_r10: share ranked in the top 10; t2g_mrank: median rank). Usage:
python anchor_sweep.py DATA|- ANCHORS   (e.g. `- 0,1,4`: the embedded MovieLens)"""

import json
import sys
import time

import numpy as np
import torch

from recengine.bench.search import flat_queries, hit_at, make_queries, precision_at
from recengine.data import load_dataset
from recengine.evaluation import make_queries as eval_queries
from recengine.export.adapt import adapt_to_data
from recengine.export.align import encode_catalogue, resolve_source, train_text_tower
from recengine.export.config import ExportConfig
from recengine.export.eval_sample import sample_queries
from recengine.export.graph import train_lightgcn
from recengine.progress import Progress
from recengine.split import leave_last_out

CPU = torch.device("cpu")


def main() -> None:
    torch.set_num_threads(2)
    cfg = ExportConfig.from_profile("standard")
    cfg.quiet = True
    ds = load_dataset(None if sys.argv[1] == "-" else sys.argv[1])
    split = leave_last_out(ds.interactions, ds.n_users, ds.n_items, seed=cfg.seed)
    prog = Progress(True)
    source = resolve_source(cfg.encoder, None, cfg.seed)
    cfg, _ = adapt_to_data(cfg, ds, split, source, prog)
    pop = split.item_popularity()
    t = time.time()
    graph = train_lightgcn(split, cfg.item_dim, cfg.graph, sample_queries(eval_queries(split, "valid")), cfg.seed,
                           CPU, prog)
    print("graph", round(time.time() - t, 1), flush=True)
    texts = list(ds.items.texts)
    queries = make_queries(texts, list(ds.items.text_columns), 300, 40, 0)
    flat, _ = flat_queries(queries)
    warm = np.flatnonzero(pop > 0)
    g = graph.item_emb[warm]
    g = g / np.linalg.norm(g, axis=1, keepdims=True)
    for anchor in [float(a) for a in sys.argv[2].split(",")]:
        cfg.encoder.anchor = anchor
        t = time.time()
        tr = train_text_tower(texts, graph.item_emb, pop, cfg.item_dim, cfg.encoder, "lora", cfg.seed, CPU, prog,
                              source=source)
        secs = time.time() - t
        q_emb, _ = encode_catalogue(tr.tower, tr.tokenizer, flat, 128, CPU, tr.tokenizer_info.pad_id, prog)
        top = np.argsort(-(q_emb @ tr.text_embeddings.T), axis=1)[:, :10]
        i, hits1, hits10, p10 = 0, [], [], []
        for qs in queries.known.values():
            for _, row in qs:
                hits1.append(hit_at(top[i].tolist(), row, 1))
                hits10.append(hit_at(top[i].tolist(), row, 10))
                i += 1
        for qs in queries.attribute.values():
            for _, rel in qs:
                p10.append(precision_at(top[i].tolist(), rel, 10))
                i += 1
        tv = tr.text_vectors[warm]
        sim = (tv / np.linalg.norm(tv, axis=1, keepdims=True)) @ g.T
        rank = (sim > np.diag(sim)[:, None]).sum(1)
        print(json.dumps({"anchor": anchor, "secs": round(secs, 1), "infonce": tr.align_loss, "drift": tr.anchor_drift,
                          "hit1": float(np.mean(hits1)), "hit10": float(np.mean(hits10)),
                          "attr_p10": float(np.mean(p10)), "t2g_r10": float(np.mean(rank < 10)),
                          "t2g_mrank": float(np.median(rank))}), flush=True)


if __name__ == "__main__":
    main()
