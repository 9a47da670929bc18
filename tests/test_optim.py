"""The AdamW and EMA every update uses: fused where torch has it, and the same numbers as the textbook forms."""

import torch

from dsd_core.ema import EMA
from dsd_core.optim import adamw


def _net():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.SiLU(), torch.nn.Linear(7, 3))


def test_adamw_is_fused_on_the_cpu_and_steps_like_the_reference():
    a, b = _net(), _net()
    fused, plain = adamw(a.parameters(), lr=1e-2), torch.optim.AdamW(b.parameters(), lr=1e-2, weight_decay=0.0)
    assert fused.defaults["fused"] is True and fused.defaults["weight_decay"] == 0.0
    x = torch.randn(16, 5)
    for _ in range(5):
        for net, opt in ((a, fused), (b, plain)):
            opt.zero_grad()
            net(x).pow(2).mean().backward()
            opt.step()
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)


def test_ema_is_the_weighted_average_with_and_without_warmup():
    net = _net()
    for warmup in (False, True):
        ema = EMA(net, 0.9, warmup=warmup)
        before = [p.clone() for p in ema.shadow.parameters()]
        with torch.no_grad():
            for p in net.parameters():
                p.add_(1.0)
        ema.update(net)
        for s, old, p in zip(ema.shadow.parameters(), before, net.parameters()):
            d = 2 / 11 if warmup else 0.9  # warm-up decay at update 1: (1+1)/(10+1)
            torch.testing.assert_close(s, d * old + (1 - d) * p, rtol=1e-6, atol=1e-6)
