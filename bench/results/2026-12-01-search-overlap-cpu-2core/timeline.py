import sys, time
from concurrent.futures import ThreadPoolExecutor
import numpy as np
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent.parent / "2026-11-30-search-110k-lexical-cpu-2core"))
from common import open_families
eng, fam = open_families(sys.argv[1])
st = eng._state
pool = ThreadPoolExecutor(1)
T = {}
def lexical(q):
    T["ls"] = time.perf_counter()
    lq = st.lexical.query(q); r = lq.top(100, None)
    T["le"] = time.perf_counter()
    return r
tok = st.models.tokenizer
sess = st.models.encoder
def enc(q):
    T["es"] = time.perf_counter()
    b = tok.encode([q])
    T["tok"] = time.perf_counter()
    out = sess.run({"input_ids": b.input_ids, "attention_mask": b.attention_mask}, st.models._encoder_outputs)
    T["ee"] = time.perf_counter()
    return out
qs = fam["latency_bench"] + fam["descriptive"]
rows = []
for rep in range(4):
    for q in qs:
        s = time.perf_counter(); f = pool.submit(lexical, q); enc(q); f.result(); e = time.perf_counter()
        rows.append([T["ls"] - s, T["le"] - s, T["es"] - s, T["tok"] - s, T["ee"] - s, e - s])
print("median µs  lex_start lex_end enc_start tok_end enc_end total")
print(np.round(np.median(np.array(rows), 0) * 1e6))
rows = []
for rep in range(4):
    for q in qs:
        s = time.perf_counter(); enc(q); a = time.perf_counter(); lexical(q); e = time.perf_counter()
        rows.append([a - s, e - a, T["tok"] - T["es"]])
print("serial enc, lex, tok", np.round(np.median(np.array(rows), 0) * 1e6))
