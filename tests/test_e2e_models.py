"""The end-to-end study's models (benchmarks/e2e): decoding equals the full forward, for the
exact cached layers and for distilled recurrences; the recipe baseline fits what it can."""

import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
sys.path[:0] = [str(Path(__file__).resolve().parents[1] / "benchmarks" / "e2e"),
                str(Path(__file__).resolve().parents[1] / "benchmarks")]
import mor.torch as mt  # noqa: E402
from models import Config, LanguageModel  # noqa: E402
from modal_recipe import fit_recipe  # noqa: E402


@pytest.mark.parametrize("kind", ["hyena", "multihyena", "transformer"])
def test_decoding_equals_the_full_forward(kind):
    torch.manual_seed(0)
    model = LanguageModel(Config(kind, width=32, layers=2, length=64, heads=4)).eval()
    tokens = torch.randint(0, 256, (2, 64))
    with torch.no_grad():
        full = model(tokens)
    if kind != "transformer":
        model.freeze_filters()
    logits, cache = model.prefill(tokens[:, :20], 64)
    steps = [logits[:, -1]] + [model.step(tokens[:, t], cache) for t in range(20, 63)]
    assert torch.allclose(torch.stack(steps, 1), full[:, 19:63], atol=1e-5)
    if kind == "transformer":
        return
    distilled, reports = mt.distill_module(model, 40)
    with torch.no_grad():
        approx = distilled(tokens)
    logits, cache = distilled.prefill(tokens[:, :20])
    steps = [logits[:, -1]] + [distilled.step(tokens[:, t], cache) for t in range(20, 63)]
    assert torch.allclose(torch.stack(steps, 1), approx[:, 19:63], atol=1e-5)
    worst = max(float(r.columns["l2"].max()) for r in reports.values())
    assert (approx - full).abs().max() <= 10 * worst * full.abs().max() + 1e-6


def test_recipe_recovers_a_one_mode_filter():
    lam, residue = 0.9 * np.exp(0.3j), 0.5 - 0.2j
    h = np.concatenate([[0.7], (residue * lam ** np.arange(199)).real])[None]
    fit = fit_recipe(h, 1, steps=3000, lr=1e-2)
    assert fit["l2"][0] < 1e-2
    assert fit["direct"][0] == 0.7 and fit["unstable"][0] == 0


@pytest.mark.parametrize("taps", [40, 64])
def test_headwise_toeplitz_form_equals_the_fft_form(taps):
    """MultiHyena's training form (matrix products) = the outer products convolved by FFT."""
    from mor.torch._conv import headwise_fft_conv, headwise_toeplitz_conv, outer_products

    torch.manual_seed(0)
    q, k, v = torch.randn(3, 2, 4, 5, 50, dtype=torch.float64)
    h = torch.randn(4, taps, dtype=torch.float64) * torch.exp(-torch.arange(taps) / 10.0)
    fast = headwise_toeplitz_conv(q, k, v, h)
    assert torch.allclose(fast, headwise_fft_conv(q, outer_products(k, v), h), atol=1e-5)
    k, v = k[:1, :, :, :12], v[:1, :, :, :12]
    assert torch.autograd.gradcheck(lambda q, h: headwise_toeplitz_conv(q, k, v, h),
                                    (q[:1, :, :, :12].requires_grad_(), h[:, :9].requires_grad_()))
