"""The sampled-softmax user tower computes only the item vectors a batch reads (`ItemVectors.rows`):
the same values, loss and gradients as computing every item's vector, and the same random stream."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from recengine.export.item_vectors import ItemVectors  # noqa: E402
from recengine.export.train_user import batch_loss, gather_history  # noqa: E402
from recengine.export.user_tower import UserTower  # noqa: E402

N_ITEMS, DIM, LENGTH = 300, 8, 6


def _items(media: bool = False, seed: int = 0) -> ItemVectors:
    rng = np.random.default_rng(seed)
    pop = rng.integers(0, 20, N_ITEMS).astype(np.float64)  # some items without interactions (no graph part)
    items = ItemVectors(rng.normal(size=(N_ITEMS, DIM)).astype(np.float32),
                        rng.normal(size=(N_ITEMS, DIM)).astype(np.float32), pop,
                        media=rng.normal(size=(N_ITEMS, 5)).astype(np.float32) if media else None)
    with torch.no_grad():  # move off the initial values so every parameter's gradient is generic
        items.gate_w.copy_(torch.tensor([0.7, -0.2]))
        items.log_text_scale.fill_(0.3)
        if items.media_proj is not None:
            items.media_proj.weight.normal_(0.0, 0.1, generator=torch.Generator().manual_seed(1))
    return items


def _batch(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    inp = torch.randint(0, N_ITEMS, (5, LENGTH), generator=g)
    tgt = torch.randint(0, N_ITEMS, (5, LENGTH), generator=g)
    inp[0, :3] = -1  # left padding
    tgt[0, :3] = -1
    tgt[1, 2] = inp[1, 2]  # a target that is also a history item
    scene = torch.randint(0, 3, (5, LENGTH, 1), generator=g)
    profile = torch.randint(0, 2, (5, 1), generator=g)
    return inp, tgt, scene, profile


def _reference_sampled_loss(tower, items, inp, tgt, scene, profile, n_neg, p_drop, gen):
    """The computation before `ItemVectors.rows`: every item's vector, then indexed."""
    vectors = items(p_drop, gen)
    hist, mask = gather_history(vectors, inp)
    out = tower.sequence(hist, mask) + tower.context(scene, profile.unsqueeze(1))
    sel = tgt >= 0
    h, y = out[sel], tgt[sel]
    neg = torch.randint(0, N_ITEMS, (n_neg,), generator=gen)
    pos_logit = (h * vectors[y]).sum(-1, keepdim=True)
    neg_logit = (h @ vectors[neg].T).masked_fill(neg.unsqueeze(0) == y.unsqueeze(1), -1e9)
    logits = torch.cat([pos_logit, neg_logit], dim=1)
    return torch.nn.functional.cross_entropy(logits, torch.zeros(len(y), dtype=torch.long))


def _grads(module_list):
    return [p.grad.clone() if p.grad is not None else torch.zeros_like(p) for m in module_list for p in m.parameters()]


@pytest.mark.parametrize("media", [False, True])
def test_rows_equal_the_full_computation_indexed(media):
    items = _items(media)
    gen = torch.Generator().manual_seed(3)
    keep = items.dropout_keep(0.3, gen)
    assert keep is not None and 0 < float(keep.mean()) < 1
    index = torch.randint(0, N_ITEMS, (4, 7), generator=gen)
    full = items(0.3, torch.Generator().manual_seed(3))  # the same draw
    with torch.no_grad():
        torch.testing.assert_close(items.rows(index, keep), full[index], rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(items.rows(index), items()[index], rtol=1e-6, atol=1e-6)
    assert items.dropout_keep(0.0, gen) is None


@pytest.mark.parametrize("media", [False, True])
def test_sampled_batch_loss_has_the_full_computations_loss_and_gradients(media):
    inp, tgt, scene, profile = _batch()
    losses, grads = [], []
    for use_rows in (False, True):
        items = _items(media)
        torch.manual_seed(0)
        tower = UserTower(DIM, LENGTH, 1, 1, 0.0, [3], [2])
        with torch.no_grad():  # non-zero context embeddings (they start at zero)
            for emb in list(tower.scene) + list(tower.profile):
                emb.weight.normal_(0.0, 0.1, generator=torch.Generator().manual_seed(2))
        gen = torch.Generator().manual_seed(5)
        if use_rows:
            loss, n = batch_loss(tower, items, inp, tgt, scene, profile, "sampled", 40, 0.3, gen,
                                 torch.device("cpu"))
            assert n == int((tgt >= 0).sum())
        else:
            loss = _reference_sampled_loss(tower, items, inp, tgt, scene, profile, 40, 0.3, gen)
        loss.backward()
        losses.append(float(loss.detach()))
        grads.append(_grads([tower, items]))
        after = torch.rand(3, generator=gen)  # the random stream continues identically
        grads[-1].append(after)
    assert losses[0] == pytest.approx(losses[1], rel=1e-6)
    assert len(grads[0]) == len(grads[1])
    for a, b in zip(*grads):  # float32 sums in another order: equal to ~1e-7
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    assert all(float(g.abs().sum()) > 0 for g in grads[1][:-1] if g.numel() > 2)  # every part was trained


def test_full_softmax_batch_loss_is_cross_entropy_over_every_item():
    inp, tgt, scene, profile = _batch(1)
    items = _items()
    torch.manual_seed(0)
    tower = UserTower(DIM, LENGTH, 1, 1, 0.0, [3], [2])
    loss, n = batch_loss(tower, items, inp, tgt, scene, profile, "full", 40, 0.0, torch.Generator().manual_seed(0),
                         torch.device("cpu"))
    vectors = items()
    hist, mask = gather_history(vectors, inp)
    out = tower.sequence(hist, mask) + tower.context(scene, profile.unsqueeze(1))
    sel = tgt >= 0
    want = torch.nn.functional.cross_entropy(out[sel] @ vectors.T, tgt[sel])
    assert n == int(sel.sum())
    assert float(loss.detach()) == pytest.approx(float(want.detach()), rel=1e-6)
