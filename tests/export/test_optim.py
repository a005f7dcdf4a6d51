"""`recengine.export.optim.adam`: fused where supported, the same arithmetic as the default implementation."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from recengine.export.optim import adam  # noqa: E402


def _train(fused: bool | None, decoupled: bool) -> list:
    torch.manual_seed(0)
    table = torch.nn.Parameter(torch.randn(500, 8))
    head = torch.nn.Parameter(torch.randn(8, 3))
    if fused is None:
        opt = adam([table, head], 1e-2, weight_decay=0.01 if decoupled else 0.0, decoupled=decoupled)
    else:
        cls = torch.optim.AdamW if decoupled else torch.optim.Adam
        opt = cls([table, head], lr=1e-2, weight_decay=0.01 if decoupled else 0.0, fused=fused)
    g = torch.Generator().manual_seed(1)
    for _ in range(20):
        rows = torch.randint(0, 500, (64,), generator=g)
        loss = ((table[rows] @ head) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return [table.detach(), head.detach()]


@pytest.mark.parametrize("decoupled", [True, False])
def test_adam_matches_the_default_implementation(decoupled):
    ours, reference = _train(None, decoupled), _train(False, decoupled)
    for a, b in zip(ours, reference):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    assert float((ours[0] - _train(False, decoupled)[0]).abs().max()) < 1e-4


def test_adam_is_fused_on_the_cpu():
    opt = adam([torch.nn.Parameter(torch.zeros(4))], 1e-3)
    assert isinstance(opt, torch.optim.AdamW) and opt.defaults["fused"]


def test_adam_falls_back_where_fused_is_refused(monkeypatch):
    real = torch.optim.AdamW

    class NoFused(real):  # a build or device without the fused kernel
        def __init__(self, params, **kwargs):
            if kwargs.get("fused"):
                raise RuntimeError("`fused=True` requires all the params to be floating point Tensors of "
                                   "supported devices")
            super().__init__(params, **kwargs)

    monkeypatch.setattr(torch.optim, "AdamW", NoFused)
    p = torch.nn.Parameter(torch.zeros(4))
    opt = adam(iter([p]), 1e-3)  # a generator of parameters, as module.parameters() is, survives the retry
    assert isinstance(opt, NoFused) and not opt.defaults.get("fused")
    p.grad = torch.ones(4)
    opt.step()
    assert float(p.detach().abs().sum()) > 0
