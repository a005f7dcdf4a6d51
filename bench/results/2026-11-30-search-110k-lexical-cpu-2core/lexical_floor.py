"""How much of the lexical top 100 a score floor derived from the dense candidates would prune: an item outside
the dense top 30 (cosine <= the 30th's) can reach the fused top 10 only if its BM25 >= s * sqrt(cos_10 - cos_30)
(`sum` fusion, weight 1, power 2; s >= max(full, the dense candidates' best BM25)). Usage: python
lexical_floor.py BUNDLE"""
import sys

import numpy as np
from common import open_families

from recengine.retrieval import retrieve

eng, families = open_families(sys.argv[1])
st = eng._state  # noqa: SLF001
cat = st.catalogue
for name, qs in families.items():
    share, floor = [], []
    for q in qs:
        emb = st.models.encode_queries([q])
        (r,) = retrieve(st.text_index.backend(cat.n_alive, 1), st.text_index.exact, cat.text_embeddings, cat.alive,
                        emb, 30)
        lq = st.lexical.query(q)
        if lq.empty:
            continue
        s_lo = max(lq.full, float(lq.score(r.rows).max()))
        theta = min(s_lo, s_lo * max(0.0, float(r.scores[9] - r.scores[-1])) ** 0.5)
        _, scores = lq.top(100, None)
        share.append(float((scores >= theta).mean()) if scores.size else 0.0)
        floor.append(theta / s_lo)
    print(name, f"share of the lexical top 100 at or above the floor {np.mean(share):.2f}, "
          f"floor / s {np.mean(floor):.2f}")
