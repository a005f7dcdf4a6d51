"""Why the helper's job starts after tokenising: the lexical half submitted before the encoder's tokeniser
(median µs from the call's start: lexical start/end, encoder start, tokeniser end, encoder end, total),
against encoder and lexical in sequence. Usage: python timeline.py BUNDLE"""
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import _paths  # noqa: F401
import numpy as np
from common import open_families

eng, fam = open_families(sys.argv[1])
st = eng._state  # noqa: SLF001
pool = ThreadPoolExecutor(1)
T: dict[str, float] = {}
tok = st.models.tokenizer
sess = st.models.encoder
outputs = st.models._encoder_outputs  # noqa: SLF001


def lexical(q):
    T["ls"] = time.perf_counter()
    lq = st.lexical.query(q)
    r = lq.top(100, None)
    T["le"] = time.perf_counter()
    return r


def enc(q):
    T["es"] = time.perf_counter()
    b = tok.encode([q])
    T["tok"] = time.perf_counter()
    out = sess.run({"input_ids": b.input_ids, "attention_mask": b.attention_mask}, outputs)
    T["ee"] = time.perf_counter()
    return out


qs = fam["latency_bench"] + fam["descriptive"]
rows = []
for _ in range(4):
    for q in qs:
        s = time.perf_counter()
        f = pool.submit(lexical, q)
        enc(q)
        f.result()
        e = time.perf_counter()
        rows.append([T["ls"] - s, T["le"] - s, T["es"] - s, T["tok"] - s, T["ee"] - s, e - s])
print("median µs  lex_start lex_end enc_start tok_end enc_end total")
print(np.round(np.median(np.array(rows), 0) * 1e6))
rows = []
for _ in range(4):
    for q in qs:
        s = time.perf_counter()
        enc(q)
        a = time.perf_counter()
        lexical(q)
        e = time.perf_counter()
        rows.append([a - s, e - a, T["tok"] - T["es"]])
print("serial enc, lex, tok", np.round(np.median(np.array(rows), 0) * 1e6))
