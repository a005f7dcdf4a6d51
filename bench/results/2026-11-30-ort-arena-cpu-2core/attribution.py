"""What in `add_items` is not the encoder session: (1) the engine's RSS through add_items of 64 and 1,000
texts with the encoder replaced by random unit vectors (no ORT run at all); (2) the two deferred HNSW
indexes, which a live update loads (runtime/index_io.DeferredIndex), loaded one by one before any update.
One fresh process each. usage: python attribution.py BUNDLE"""
import subprocess
import sys

CHILD = r'''
import ctypes, json, sys
import numpy as np
from recengine.engine import Engine
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS"):
            return round(int(line.split()[1]) / 1024, 1)
e = Engine.open(sys.argv[1], device="cpu", threads=1); e.wait_ready(); st = e._state
texts = list(st.catalogue.texts)
for i in range(100):
    e.search(texts[i][:40], k=10)
out = {"mode": sys.argv[2], "search100": rss()}
new = [{"item_id": f"n{i}", "text": texts[i]} for i in range(1064)]
if sys.argv[2] == "no_encoder":
    rng = np.random.default_rng(0)
    m = st.models
    def fake(t, batch_size=64):
        a = rng.standard_normal((len(t), m.text_dim)).astype(np.float32)
        a /= np.linalg.norm(a, axis=1, keepdims=True)
        return a, rng.standard_normal((len(t), m.item_dim)).astype(np.float32)
    m.encode = fake
else:
    st.items_index.hnsw.backend(); out["items_hnsw_loaded"] = rss()
    st.text_index.hnsw.backend(); out["text_hnsw_loaded"] = rss()
e.add_items(new[:64]); out["add64"] = rss()
e.add_items(new[64:]); out["add1000"] = rss()
ctypes.CDLL(None).malloc_trim(0); out["trimmed"] = rss()
print("PROBE " + json.dumps(out))
'''

for mode in ("no_encoder", "indexes_first", "no_encoder", "indexes_first"):
    p = subprocess.run(["nice", sys.executable, "-c", CHILD, sys.argv[1], mode], capture_output=True, text=True)
    line = next((ln for ln in p.stdout.splitlines() if ln.startswith("PROBE ")), None)
    print(line[6:] if line else p.stderr[-2000:], flush=True)
