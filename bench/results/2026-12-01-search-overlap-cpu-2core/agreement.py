"""Agreement of the candidate fusion's top 10 with the exact fusion over every row (`fuse_scanned`), per
(dense candidates, lexical candidates). Usage: python agreement.py BUNDLE"""
import sys

import _paths  # noqa: F401
import numpy as np
from common import open_families

from recengine import neighbours as nb
from recengine.retrieval import retrieve

eng, fam = open_families(sys.argv[1])
st = eng._state  # noqa: SLF001
cat = st.catalogue
E = cat.text_embeddings
configs = [(30, 100), (20, 100), (10, 100), (30, 50), (20, 50)]
for name, qs in fam.items():
    agree: dict[tuple[int, int], list[float]] = {c: [] for c in configs}
    for q in qs:
        emb = st.models.encode_queries([q])[0]
        lq = st.lexical.query(q)
        cos = E @ emb
        ref = nb.fuse_scanned(cos, lq.dense(cos.size), 10, 1.0, lq.full, 2.0).rows.tolist()
        for nd, nl in configs:
            (r,) = retrieve(st.text_index.backend(cat.n_alive, 1), st.text_index.exact, E, cat.alive, emb[None, :], nd)
            lr, ls = lq.top(nl, None)
            got = nb.fuse(r.rows, r.scores, lambda rows, e=emb: E[rows] @ e, lr, ls, lq.score, 10, "sum", 1.0,
                          full=lq.full, power=2.0).rows.tolist()
            agree[(nd, nl)].append(len(set(got) & set(ref)) / 10)
    print(name, {f"{a}/{b}": round(float(np.mean(v)), 4) for (a, b), v in agree.items()})
