"""Activation-aware distillation: output-error statistics recorded by hooks, residues re-solved."""

import copy

import numpy as np
import pytest

import mor
from mor.demo import hyena_like_filters

torch = pytest.importorskip("torch")
import mor.torch as mt  # noqa: E402
from mor.torch.calibration import output_basis, record  # noqa: E402

LENGTH = 96


class Headwise(torch.nn.Module):
    """A head-wise layer called with ``(q, k, v)``."""

    def __init__(self, h):
        super().__init__()
        self.long = mt.HeadwiseLongConv(torch.from_numpy(h))

    def forward(self, q, k, v):
        return self.long(q, k, v)


class Loose(torch.nn.Module):
    """A layer with a long filter that accepts any input (the hook's checks are the only ones)."""

    def __init__(self, h):
        super().__init__()
        self.register_buffer("h", torch.from_numpy(h))

    def long_filter(self):
        return self.h

    def forward(self, u):
        return u


def _windows(shape, count, seed=0):
    """Correlated (low-pass) inputs, so that the output metric differs from the taps'."""
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(*shape, generator=g, dtype=torch.float64).cumsum(-1).float() * 0.1
            for _ in range(count)]


def _channel_output(e, u):
    """``e * u`` per channel and window, float64: ``(W, C, T)``."""
    u = np.asarray(u, dtype=np.float64)
    return np.stack([[np.convolve(u[w, c], e[c])[:u.shape[-1]] for c in range(u.shape[1])]
                     for w in range(u.shape[0])])


def _headwise_output(e, q, k, v):
    """``y[t]_j = sum_s e[t-s] (q[t] . k[s]) v_j[s]``, float64: ``(B, H, N, T)``."""
    q, k, v = (np.asarray(x, dtype=np.float64) for x in (q, k, v))
    length = q.shape[-1]
    lag = np.arange(length)[:, None] - np.arange(length)[None]
    out = np.zeros(q.shape)
    for h in range(q.shape[1]):
        weights = np.where(lag >= 0, np.concatenate([e[h], [0.0]])[np.where(lag >= 0, lag,
                                                                             length)], 0.0)
        scores = np.einsum("bnt,bns->bts", q[:, h], k[:, h])
        out[:, h] = np.einsum("bts,bjs->bjt", scores * weights, v[:, h])
    return out


def test_identity_metric_reproduces_refit_residues():
    # one window holding a unit impulse per channel: M[a, b] = sum_t u[t-a] u[t-b] = I
    h = hyena_like_filters(3, LENGTH)
    bank = mor.reduce(h, modes=3, method="modal")
    impulse = torch.zeros(1, 3, LENGTH)
    impulse[..., 0] = 1.0
    model = torch.nn.Sequential(mt.LongConv(torch.from_numpy(h)))
    metric = record(model, [impulse], {"0": output_basis(h, bank)})["0"]
    gram = np.swapaxes(metric.basis, 1, 2) @ metric.basis  # Q^T I Q (zero columns pad)
    assert np.allclose(metric.gram, gram, atol=1e-12)
    ours = mor.refit_residues(h, bank, metric=metric.factor())
    plain = mor.refit_residues(h, bank)
    assert np.allclose(ours.impulse(LENGTH), plain.impulse(LENGTH), rtol=0, atol=1e-9)
    assert np.allclose(ours.info["metric"], plain.info["l2"], rtol=1e-7)
    # and through distill_module: the output error is the taps' l2, before and after
    model, reports = mt.distill_module(model, modes=3, method="modal", calibration=[impulse])
    columns = reports["0"].columns
    assert np.allclose(columns["output_error_plain"], columns["l2_plain"], rtol=1e-7)
    assert np.allclose(columns["output_error"], columns["l2"], rtol=1e-7)
    assert np.allclose(columns["l2_plain"], bank.info["l2"] if "l2" in bank.info
                       else mor.compare(h, bank).l2, rtol=1e-9)


def test_recorded_energy_is_the_output_error():
    h = hyena_like_filters(4, LENGTH)
    bank = mor.reduce(h, modes=2, method="modal")
    windows = _windows((2, 4, LENGTH), 2)
    model = torch.nn.Sequential(mt.LongConv(torch.from_numpy(h)))
    metric = record(model, windows, {"0": output_basis(h, bank)})["0"]
    e = h - bank.impulse(LENGTH)
    direct = sum((_channel_output(e, u.numpy()) ** 2).sum(axis=(0, 2)) for u in windows)
    assert np.allclose(metric.energy(e), direct, rtol=1e-9)
    assert metric.positions == 4 * LENGTH


def test_headwise_energy_is_the_output_error():
    h = hyena_like_filters(2, 40)
    bank = mor.reduce(h, modes=2, method="modal")
    g = torch.Generator().manual_seed(1)
    batches = [tuple(torch.randn(2, 2, 3, 40, generator=g) for _ in range(3)) for _ in range(2)]
    metric = record(Headwise(h), batches, {"long": output_basis(h, bank)})["long"]
    assert metric.headwise
    e = h - bank.impulse(40)
    direct = sum((_headwise_output(e, *(x.numpy() for x in qkv)) ** 2).sum(axis=(0, 2, 3))
                 for qkv in batches)
    assert np.allclose(metric.energy(e), direct, rtol=1e-6)


def test_headwise_energy_after_the_next_linear_map():
    # issue 20.3: with W (D, H N) after the flattened output, each head's error is measured
    # after its block W_h; exact where one head feeds W (no blocks between heads)
    h = hyena_like_filters(1, 40)
    bank = mor.reduce(h, modes=2, method="modal")
    g = torch.Generator().manual_seed(5)
    batches = [tuple(torch.randn(2, 1, 3, 40, generator=g) for _ in range(3)) for _ in range(2)]
    w = torch.randn(5, 3, generator=g, dtype=torch.float64)
    metric = record(Headwise(h), batches, {"long": output_basis(h, bank)}, {"long": w})["long"]
    e = h - bank.impulse(40)
    direct = sum((np.einsum("dn,bhnt->bhdt", w.numpy(),
                            _headwise_output(e, *(x.numpy() for x in qkv))) ** 2).sum()
                 for qkv in batches)
    assert np.allclose(metric.energy(e), direct, rtol=1e-6)
    plain = record(Headwise(h), batches, {"long": output_basis(h, bank)})["long"]
    assert not np.allclose(metric.energy(e), plain.energy(e), rtol=1e-3)
    # through distill_module; a weight for a per-channel layer, or without calibration, refused
    model, reports = mt.distill_module(Headwise(h), modes=2, calibration=batches,
                                       output_weight=lambda name, module: w)
    assert np.all(reports["long"].columns["output_error"]
                  <= reports["long"].columns["output_error_plain"])
    with pytest.raises(ValueError, match="give calibration too"):
        mt.distill_module(Headwise(h), modes=2, output_weight=lambda name, module: w)
    conv = torch.nn.Sequential(mt.LongConv(torch.from_numpy(h)))
    with pytest.raises(ValueError, match="head-wise layers only"):
        mt.distill_module(conv, modes=2, calibration=[torch.randn(1, 1, 40)],
                          output_weight=lambda name, module: w)
    with pytest.raises(ValueError, match=r"shape \(D, 1 N\)"):
        record(Headwise(h), batches, {"long": output_basis(h, bank)}, {"long": torch.ones(3)})


@pytest.mark.parametrize("headwise", [False, True])
def test_streaming_equals_one_batch(headwise):
    length = 48
    h = hyena_like_filters(3, length)
    bank = mor.reduce(h, modes=2, method="modal")
    basis = output_basis(h, bank)
    g = torch.Generator().manual_seed(2)
    if headwise:
        model, name = Headwise(h), "long"
        q, k, v = (torch.randn(6, 3, 2, length, generator=g) for _ in range(3))
        one = [(q, k, v)]
        split = [(q[i:j], k[i:j], v[i:j]) for i, j in ((0, 1), (1, 4), (4, 6))]
    else:
        model, name = torch.nn.Sequential(mt.LongConv(torch.from_numpy(h))), "0"
        u = torch.randn(6, 3, length, generator=g)
        one, split = [u], [u[:1], u[1:4], u[4:]]
    a = record(model, one, {name: basis})[name]
    b = record(model, iter(split), {name: basis})[name]  # a generator is streamed once
    assert a.positions == b.positions == 6 * length
    assert np.allclose(a.gram, b.gram, rtol=1e-12, atol=1e-12 * np.abs(a.gram).max())
    assert np.abs(a.gram).max() > 0


def test_calibrated_fit_never_worse_in_layer_output():
    h = hyena_like_filters(6, LENGTH)
    windows = _windows((2, 6, LENGTH), 3, seed=3)
    exact = torch.nn.Sequential(mt.LongConv(torch.from_numpy(h)))
    plain_model, _ = mt.distill_module(copy.deepcopy(exact), modes=2)
    model, reports = mt.distill_module(copy.deepcopy(exact), modes=2, calibration=windows)
    columns = reports["0"].columns
    assert np.all(columns["output_error"] <= columns["output_error_plain"])
    assert columns["calibrated"].any()  # the metric differs from the taps': the re-solve helps
    calib = reports["0"].request["calibration"]
    assert calib["output_error"] < calib["output_error_plain"]
    # measured on the layer's actual outputs (float32 layers) over the calibration data
    with torch.no_grad():
        errors = [sum(((m(u) - exact(u)).double() ** 2).sum(dim=(0, 2)) for u in windows)
                  for m in (plain_model, model)]
    assert torch.all(errors[1] <= errors[0] * (1 + 1e-3) + 1e-12)
    assert float(errors[1].sum()) < float(errors[0].sum())


def test_headwise_calibrated_fit_never_worse():
    length = 40
    h = hyena_like_filters(3, length)
    g = torch.Generator().manual_seed(4)
    batches = [tuple(torch.randn(2, 3, 2, length, generator=g) for _ in range(3))
               for _ in range(2)]
    model, reports = mt.distill_module(Headwise(h), modes=2, calibration=batches)
    columns = reports["long"].columns
    assert type(model.long).__name__ == "HeadwiseModalRecurrence"
    assert np.all(columns["output_error"] <= columns["output_error_plain"])
    assert np.all(np.isfinite(columns["output_error"]))


def test_pole_steps_lower_the_output_error_with_the_tail_held():
    h = hyena_like_filters(6, LENGTH)
    windows = _windows((2, 6, LENGTH), 3, seed=3)
    exact = torch.nn.Sequential(mt.LongConv(torch.from_numpy(h)))
    _, plain = mt.distill_module(copy.deepcopy(exact), modes=2)
    _, residues_only = mt.distill_module(copy.deepcopy(exact), modes=2, calibration=windows,
                                         pole_steps=0)
    model, stepped = mt.distill_module(copy.deepcopy(exact), modes=2, calibration=windows,
                                       pole_steps=6)
    before, after = residues_only["0"].columns, stepped["0"].columns
    assert np.all(after["output_error"] <= before["output_error"] * (1 + 1e-12))
    assert np.any(after["pole_steps"] > 0) and np.all(before["pole_steps"] == 0)
    totals = stepped["0"].request["calibration"]
    assert totals["output_error"] < residues_only["0"].request["calibration"]["output_error"]
    assert totals["pole_steps_taken"] == after["pole_steps"].sum()
    assert 1 < totals["passes"] <= 7 and residues_only["0"].request["calibration"]["passes"] == 1
    # the tail stays held to the plain fit's
    assert np.all(after["tail"] <= plain["0"].columns["tail"] * (1 + 1e-6) + 1e-15)
    # the recorded output error is the one the float32 layer makes on the calibration data
    with torch.no_grad():
        error = sum(((model(u) - exact(u)).double() ** 2).sum(dim=(0, 2)) for u in windows)
        energy = sum((exact(u).double() ** 2).sum(dim=(0, 2)) for u in windows)
    np.testing.assert_allclose(np.sqrt((error / energy).numpy()), after["output_error"],
                               rtol=1e-3, atol=1e-6)


def test_the_derivative_basis_spans_the_poles_derivatives():
    h = hyena_like_filters(2, LENGTH)
    bank = mor.reduce(h, modes=2, method="modal")
    basis = output_basis(h, bank, derivatives=True)
    poles, residues, _ = bank.compact()
    k = np.arange(LENGTH)
    for i in range(2):
        for lam in poles[i][residues[i] != 0]:
            slope = np.where(k >= 2, (k - 1) * lam ** np.maximum(k - 2, 0), 0)
            for column in (slope.real, slope.imag):
                left = column - basis[i] @ (basis[i].T @ column)
                assert np.linalg.norm(left) <= 1e-9 * max(np.linalg.norm(column), 1.0)
    assert basis.shape[2] <= 2 + 4 * poles.shape[1]
    assert output_basis(h, bank).shape[2] <= 2 + 2 * poles.shape[1]


def test_exact_zero_and_failed_filters_take_no_pole_step():
    k = np.arange(64)
    h = np.stack([0.5 ** k * np.cos(0.3 * k), np.zeros(64), hyena_like_filters(1, 64)[0],
                  hyena_like_filters(1, 64)[0]])
    h[3, 5] = np.nan  # fails: left as it is
    windows = _windows((2, 4, 64), 2, seed=5)
    model = torch.nn.Sequential(mt.LongConv(torch.from_numpy(np.nan_to_num(h))))
    _, reports = mt.distill_module(model, modes=1, calibration=windows,
                                   filter_fn=lambda name, m: h if name == "0" else None)
    columns = reports["0"].columns
    assert list(columns["failed"]) == [False, False, False, True]
    assert list(columns["pole_steps"][[0, 1, 3]]) == [0, 0, 0]  # exact, zero, failed
    assert columns["output_error"][0] < 1e-10 and columns["output_error"][1] == 0
    assert np.isnan(columns["output_error"][3])
    assert columns["output_error"][2] <= columns["output_error_plain"][2]


def test_progress_shows_the_calibration_passes(capsys):
    h = hyena_like_filters(2, 32)
    model = torch.nn.Sequential(mt.LongConv(torch.from_numpy(h)))
    mt.distill_module(model, modes=1, calibration=_windows((1, 2, 32), 1), pole_steps=1,
                      progress=True)
    assert "calibration passes" in capsys.readouterr().err


def test_bad_pole_steps_are_value_errors():
    h = hyena_like_filters(2, 32)
    model = torch.nn.Sequential(mt.LongConv(torch.from_numpy(h)))
    windows = [torch.randn(1, 2, 32)]
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="pole_steps must be an integer"):
            mt.distill_module(copy.deepcopy(model), modes=1, calibration=windows,
                              pole_steps=bad)
    with pytest.raises(ValueError, match="not an iterator"):
        mt.distill_module(copy.deepcopy(model), modes=1, calibration=iter(windows))
    _, reports = mt.distill_module(copy.deepcopy(model), modes=1, calibration=iter(windows),
                                   pole_steps=0)  # read once: an iterator is fine
    assert reports["0"].request["calibration"]["passes"] == 1


def test_bad_calibration_is_a_value_error():
    h = hyena_like_filters(2, 32)
    model = torch.nn.Sequential(mt.LongConv(torch.from_numpy(h)))
    with pytest.raises(ValueError, match="calibration is empty"):
        mt.distill_module(copy.deepcopy(model), modes=1, calibration=[])
    loose = torch.nn.Sequential(Loose(h))
    with pytest.raises(ValueError, match=r"u must have shape \(B, 2, T\)"):
        mt.distill_module(loose, modes=1, calibration=[torch.zeros(1, 3, 32)])
    with pytest.raises(ValueError, match="saw no calibration position"):
        mt.distill_module(torch.nn.Sequential(Loose(h)), modes=1,
                          calibration=[torch.zeros(1, 2, 0)])
    bank = mor.reduce(h, modes=1, method="modal")
    with pytest.raises(ValueError, match="not a module"):
        record(model, [torch.zeros(1, 2, 32)], {"nope": output_basis(h, bank)})
    q = torch.zeros(1, 2, 3, 32)
    with pytest.raises(ValueError, match="q, k, v must share"):
        record(Loose3(h), [(q, q, torch.zeros(1, 2, 4, 32))], {"": output_basis(h, bank)})


class Loose3(torch.nn.Module):
    """A head-wise layer that accepts any ``q, k, v``."""

    headwise = True

    def __init__(self, h):
        super().__init__()
        self.register_buffer("h", torch.from_numpy(h))

    def forward(self, q, k, v):
        return q
