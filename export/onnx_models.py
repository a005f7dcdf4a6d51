"""ONNX export specs of the user tower and the fusion head (docs/bundle.md, `models.user_tower/fusion`).

The export, quantisation and parity machinery is the shared one in `onnx_tools`; this module only says what
each graph looks like and builds real-data parity batches (histories and candidates drawn from the trained
item vectors), so a parity number describes what the runtime will actually feed the models.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from .fusion import FusionHead
from .onnx_tools import OnnxModelSpec, ParityConfig, TensorSpec
from .user_tower import UserTower


def _context_codes(g: torch.Generator, b: int, sizes: list[int]) -> torch.Tensor:
    return torch.stack([torch.randint(0, n, (b,), generator=g) for n in sizes], dim=1).to(torch.int64)


def user_tower_spec(tower: UserTower, scene_sizes: list[int], profile_sizes: list[int], parity: ParityConfig,
                    variants: tuple[str, ...], item_vectors: np.ndarray) -> OnnxModelSpec:
    """history [B,L,d], history_mask [B,L], scene [B,S], profile [B,P] -> user_vector [B,d]."""
    d, max_len = tower.dim, tower.max_history
    vecs = torch.from_numpy(item_vectors.astype(np.float32))

    def make(sizes: Mapping[str, int], seed: int) -> dict[str, torch.Tensor]:
        b, length = int(sizes["B"]), int(sizes["L"])
        g = torch.Generator().manual_seed(seed)
        rows = torch.randint(0, vecs.shape[0], (b, length), generator=g)
        lengths = torch.randint(1, length + 1, (b,), generator=g)
        lengths[0] = length
        mask = (torch.arange(length).unsqueeze(0) >= (length - lengths).unsqueeze(1)).float()
        hist = vecs[rows] * mask.unsqueeze(-1)
        return {"history": hist, "history_mask": mask, "scene": _context_codes(g, b, scene_sizes),
                "profile": _context_codes(g, b, profile_sizes)}

    return OnnxModelSpec(
        name="user_tower",
        inputs=(TensorSpec("history", "float32", ("B", "L", d)), TensorSpec("history_mask", "float32", ("B", "L")),
                TensorSpec("scene", "int64", ("B", len(scene_sizes))),
                TensorSpec("profile", "int64", ("B", len(profile_sizes)))),
        outputs=(TensorSpec("user_vector", "float32", ("B", d)),),
        example_inputs=make,
        trace_sizes={"B": 3, "L": max_len},
        parity_sizes=({"B": 1, "L": 1}, {"B": 5, "L": min(3, max_len)}, {"B": 64, "L": max_len}),
        parity=parity,
        variants=variants,
    )


def fusion_spec(head: FusionHead, dim: int, n_feats: int, n_pop: int, scene_sizes: list[int],
                profile_sizes: list[int], parity: ParityConfig, variants: tuple[str, ...],
                item_vectors: np.ndarray, item_feats: np.ndarray, pop_bucket: np.ndarray,
                user_vectors: np.ndarray) -> OnnxModelSpec:
    """user [B,d], items [B,C,d], item_feats [B,C,F], pop_bucket [B,C], scene, profile -> scores [B,C]."""
    vecs = torch.from_numpy(item_vectors.astype(np.float32))
    feats = torch.from_numpy(item_feats.astype(np.float32))
    pops = torch.from_numpy(pop_bucket.astype(np.int64))
    users = torch.from_numpy(user_vectors.astype(np.float32))

    def make(sizes: Mapping[str, int], seed: int) -> dict[str, torch.Tensor]:
        b, c = int(sizes["B"]), int(sizes["C"])
        g = torch.Generator().manual_seed(seed)
        rows = torch.randint(0, vecs.shape[0], (b, c), generator=g)
        urows = torch.randint(0, users.shape[0], (b,), generator=g)
        return {"user": users[urows], "items": vecs[rows], "item_feats": feats[rows], "pop_bucket": pops[rows],
                "scene": _context_codes(g, b, scene_sizes), "profile": _context_codes(g, b, profile_sizes)}

    return OnnxModelSpec(
        name="fusion",
        inputs=(TensorSpec("user", "float32", ("B", dim)), TensorSpec("items", "float32", ("B", "C", dim)),
                TensorSpec("item_feats", "float32", ("B", "C", n_feats)),
                TensorSpec("pop_bucket", "int64", ("B", "C")),
                TensorSpec("scene", "int64", ("B", len(scene_sizes))),
                TensorSpec("profile", "int64", ("B", len(profile_sizes)))),
        outputs=(TensorSpec("scores", "float32", ("B", "C")),),
        example_inputs=make,
        trace_sizes={"B": 2, "C": 7},
        parity_sizes=({"B": 1, "C": 1}, {"B": 4, "C": 50}, {"B": 32, "C": 100}),
        parity=parity,
        variants=variants,
    )
