"""Token-id inputs from the real catalogue (runtime tokenizer): 16 texts of exactly 19 tokens, 16 cut to 32;
plus 512 texts (seeded sample) for parity."""

import json

import numpy as np

from recengine.tokenize import TextTokenizer

B = "/tmp/std-demo-copy"
texts = json.load(open(f"{B}/items/texts.json"))
tok64 = TextTokenizer(f"{B}/tokenizer.json", 64, True)
tok32 = TextTokenizer(f"{B}/tokenizer.json", 32, True)
lens = tok64.lengths(texts)
print("token length p50/mean/max:", np.median(lens), lens.mean(), lens.max(), "n>=32:", (lens >= 32).sum())
rng = np.random.default_rng(0)
i19 = rng.choice(np.flatnonzero(lens == 19), 16, replace=False)
i32 = rng.choice(np.flatnonzero(lens >= 32), 16, replace=False)
ids19 = np.stack([tok64.encode([texts[i]]).input_ids for i in i19])
ids32 = np.stack([tok32.encode([texts[i]]).input_ids for i in i32])
assert ids19.shape == (16, 1, 19) and ids32.shape == (16, 1, 32), (ids19.shape, ids32.shape)
par = rng.choice(len(texts), 512, replace=False)
np.savez("inputs.npz", ids19=ids19, ids32=ids32, parity_idx=par)
json.dump({"t19": [texts[i] for i in i19], "t32": [texts[i] for i in i32]}, open("inputs_texts.json", "w"))
