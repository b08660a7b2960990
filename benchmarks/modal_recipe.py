"""The Laughing Hyena distillation recipe, re-implemented from its description, as a baseline.

Per filter, ``m`` complex modes ``h_hat[0] = h[0]``, ``h_hat[k] = Re sum_n R_n lambda_n^(k-1)``
(the compact modal form of `mor.conventions`), with the poles and residues as free real
parameters (real and imaginary parts), poles drawn at random on a ring
``r ~ U(0.8, 0.99)``, ``theta ~ U(0, pi)``, residues ``~ N(0, 0.1^2 rms(h)^2)``; AdamW
(``lr = 3e-3``, no weight decay) on the mean squared error over the ``L`` taps, full batch, with
a cosine schedule, for 30,000 steps by default. Stability is encouraged by the initialisation
only: the result may hold poles with ``|lambda| >= 1`` (counted, not removed). All filters are
fitted at once (independent problems in one batch).

``lambda^k`` is ``exp(k log lambda)`` in float32, as the recipe's GPU code does.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch

RING = (0.8, 0.99)
LR = 3e-3
STEPS = 30_000


def fit_recipe(h: np.ndarray, modes: int, *, steps: int = STEPS, lr: float = LR, seed: int = 0,
               device: str = "cpu") -> dict:
    """Fit ``m = modes`` complex modes to each row of ``h`` (``(F, L)``) by the recipe.

    Returns a dict with ``poles``, ``residues`` (complex ``(F, m)``), ``direct`` (``(F,)``),
    ``taps`` (the fitted ``(F, L)`` response, float64), ``l2`` (relative error over the taps per
    filter), ``unstable`` (poles with ``|lambda| >= 1`` per filter) and ``seconds``.
    """
    g = torch.Generator().manual_seed(seed)
    target = torch.as_tensor(np.asarray(h, dtype=np.float32)).to(device)
    count, length = target.shape
    radius = RING[0] + (RING[1] - RING[0]) * torch.rand(count, modes, generator=g)
    angle = math.pi * torch.rand(count, modes, generator=g)
    scale = 0.1 * target.pow(2).mean(-1, keepdim=True).sqrt().cpu()
    params = [(radius * torch.cos(angle)), (radius * torch.sin(angle)),
              scale * torch.randn(count, modes, generator=g),
              scale * torch.randn(count, modes, generator=g)]
    params = [p.to(device).requires_grad_() for p in params]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    k = torch.arange(length - 1, device=device, dtype=torch.float32)

    def response(pr, pi, rr, ri) -> torch.Tensor:
        log = torch.complex(0.5 * torch.log(pr ** 2 + pi ** 2), torch.atan2(pi, pr))
        powers = torch.exp(k * log[..., None])  # (F, m, L-1)
        return torch.einsum("fm,fmk->fk", torch.complex(rr, ri), powers).real

    start = time.perf_counter()
    for _ in range(steps):
        loss = (response(*params) - target[:, 1:]).pow(2).mean(-1).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    with torch.no_grad():
        fit = response(*params)
    pr, pi, rr, ri = (p.detach().double().cpu().numpy() for p in params)
    poles, residues = pr + 1j * pi, rr + 1j * ri
    taps = np.concatenate([np.asarray(h, float)[:, :1], fit.double().cpu().numpy()], 1)
    norm = np.linalg.norm(h, axis=-1)
    l2 = np.linalg.norm(taps - h, axis=-1) / np.where(norm > 0, norm, 1)
    return {"poles": poles, "residues": residues, "direct": np.asarray(h, float)[:, 0],
            "taps": taps, "l2": l2, "unstable": (np.abs(poles) >= 1).sum(-1),
            "seconds": seconds}
