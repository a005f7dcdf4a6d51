"""Do INT8-encoded cold items sit at lower cosines to the stored warm vectors than fp32-encoded ones?

Usage: python int8_cosine_shrink.py BUNDLE (a cold-protocol bundle: items with popularity 0 are the cold ones)
"""

from __future__ import annotations

import sys

import numpy as np

import recengine


def main(bundle: str) -> None:
    pop = np.load(f"{bundle}/items/popularity.npy")
    cold, warm = np.flatnonzero(pop <= 0), np.flatnonzero(pop > 0)
    for variant in ("fp32", "int8"):
        st = recengine.Engine.open(bundle, threads=1, variant=variant)._state
        cat = st.catalogue
        _, v = st.models.encode([cat.texts[i] for i in cold], batch_size=64)
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        cos = v @ cat.unit_vectors[warm].T
        top = -np.sort(-cos, axis=1)[:, :20]
        print(f"{variant}: mean cosine to warm {cos.mean():.4f}, mean top-20 {top.mean():.4f}, "
              f"mean top-1 {top[:, 0].mean():.4f}")


if __name__ == "__main__":
    main(sys.argv[1])
