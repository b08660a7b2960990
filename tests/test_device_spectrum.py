"""The Hankel spectrum and balanced truncation on a torch device (issue 22): block Lanczos
against the CPU paths, on CPU tensors in CI and on a CUDA GPU where there is one."""

import numpy as np
import pytest

import mor
from mor.analysis import spectrum
from mor.demo import hyena_like_filters

torch = pytest.importorskip("torch")
import mor.torch  # noqa: E402,F401  (registers device=)
from mor.torch._spectrum import hankel_blocks  # noqa: E402

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(params=DEVICES)
def device(request):
    return request.param


def test_values_agree_with_the_krylov_path(device):
    h = hyena_like_filters(4, 3000, seed=5)
    cpu = mor.hankel_singular_values(h, 24)
    on = mor.hankel_singular_values(h, 24, device=device)
    assert on.shape == (4, 24)
    assert np.abs(on - cpu).max() <= 1e-10 * cpu[:, 0].max()
    # deterministic, and the batch's split by memory changes nothing
    full = hankel_blocks(h, 24, rtol=1e-11, device=device)["sigma"]
    np.testing.assert_array_equal(full, hankel_blocks(h, 24, rtol=1e-11, device=device)["sigma"])
    one = hankel_blocks(h, 24, rtol=1e-11, device=device, batch=1)["sigma"]
    assert np.abs(one - full).max() <= 1e-10 * full[:, 0].max()


def test_balanced_truncation_agrees_with_the_cpu_path(device):
    h = hyena_like_filters(3, 2500, seed=6)
    for order in (4, 16):
        cpu = mor.reduce(h, order)
        on = mor.reduce(h, order, device=device)
        assert np.all(on.info["order"] == order)
        np.testing.assert_allclose(on.info["hinf"], cpu.info["hinf"], rtol=1e-2)
        np.testing.assert_allclose(on.impulse(2500), cpu.impulse(2500),
                                   atol=1e-7 * np.abs(h).max())
    # DC matching from the same intermediate order as the Krylov path: the same DC gain
    gains = []
    for model in (mor.reduce(h, 8, dc_match=True), mor.reduce(h, 8, device=device,
                                                                dc_match=True)):
        poles, residues, direct = model.compact()
        gains.append(direct + (residues / (1 - poles)).real.sum(axis=1))
    np.testing.assert_allclose(gains[1], gains[0], rtol=1e-6)


def test_kth_rtol_on_a_device(device):
    """Values certified to ``max(rtol sigma_1, kth_rtol sigma_k)`` (their bounds within it),
    vectors as without ``kth_rtol``: balanced truncation from them agrees with the CPU path's
    with the same allowance."""
    h = hyena_like_filters(2, 1500, seed=8)
    dense = spectrum.hankel_svd(h, 17, method="dense", vectors=False)[0]
    out = hankel_blocks(h, 17, rtol=1e-10, kth_rtol=1e-2, device=device)
    allowed = np.maximum(1e-10 * dense[:, :1], 1e-2 * dense[:, -1:])
    assert np.all(out["bound"] * out["sigma"][:, :1] <= allowed)
    assert np.all(np.abs(out["sigma"] - dense) <= 2 * allowed)
    cpu = mor.reduce(h, 16, method="balanced", kth_rtol=1e-2)
    on = mor.reduce(h, 16, method="balanced", kth_rtol=1e-2, device=device)
    np.testing.assert_allclose(on.info["hinf"], cpu.info["hinf"], rtol=1e-2)


def test_a_pure_delay_and_edge_cases(device):
    """A pure delay's values are all 1: a block meets many copies (the single-vector CPU
    path needs its dense fallback). Exactly low-order and zero filters meet an invariant
    subspace at once; a batch of one and k = 0 work."""
    delay = np.zeros(300)
    delay[200] = 1.0
    np.testing.assert_allclose(mor.hankel_singular_values(delay, 6, device=device), 1.0,
                               rtol=1e-6)  # a batch iterates until all its filters converge
    k = np.arange(400)
    low = 0.9**k * np.cos(0.2 * k)  # order 2
    s = mor.hankel_singular_values(low, 5, device=device)
    np.testing.assert_allclose(s[:2], mor.hankel_singular_values(low, 2), rtol=1e-10)
    assert np.all(s[2:] <= 1e-10 * s[0])
    assert np.all(mor.hankel_singular_values(np.zeros((2, 300)), 4, device=device) == 0)
    assert mor.hankel_singular_values(low, 0, device=device).shape == (0,)
    model = mor.reduce(low, 2, device=device)
    assert model.info["l2"] < 1e-9


def test_bad_requests_get_clear_errors(monkeypatch):
    h = hyena_like_filters(2, 500)
    with pytest.raises(ValueError, match="give k"):
        mor.hankel_singular_values(h, device="cpu")
    with pytest.raises(ValueError, match="method='auto'"):
        mor.hankel_singular_values(h, 4, method="dense", device="cpu")
    with pytest.raises(ValueError, match="k must satisfy"):
        mor.hankel_singular_values(h, 600, device="cpu")
    with pytest.raises(ValueError, match="rtol"):
        mor.hankel_singular_values(h, 4, rtol=-1.0, device="cpu")
    with pytest.raises(ValueError, match="device"):  # the CPU's exact construction
        mor.reduce(h, 4, method="hankel", device="cpu")
    monkeypatch.setattr(spectrum, "_DEVICE_BLOCKS", [])
    with pytest.raises(ValueError, match="import mor.torch"):
        mor.hankel_singular_values(h, 4, device="cpu")


def test_distill_on_a_device(tmp_path):
    """``distill(device=...)``: balanced truncation with the device's decomposition, the
    same banks as on the CPU path; shards record the device; the CLI's --device."""
    h = hyena_like_filters(6, 1500, seed=7).reshape(2, 3, 1500)
    cpu = mor.distill(h, tol=1e-3)
    on = mor.distill(h, tol=1e-3, device="cpu", shard_dir=tmp_path / "shards")
    assert set(on.report.columns["method"].ravel()) == {"balanced"}
    np.testing.assert_array_equal(on.bank.order, cpu.bank.order)
    np.testing.assert_allclose(on.report.columns["hinf"], cpu.report.columns["hinf"],
                               rtol=1e-2)
    # chunks in flight two at a time (threads): the same bank, and a resumed run reads the
    # shards of the first
    chunked = mor.distill(h, tol=1e-3, device="cpu", chunk_size=2,
                          shard_dir=tmp_path / "chunked")
    np.testing.assert_array_equal(chunked.bank.order, on.bank.order)
    np.testing.assert_allclose(chunked.report.columns["hinf"], on.report.columns["hinf"],
                               rtol=1e-6)  # a batch iterates until all its filters converge
    (tmp_path / "chunked" / "chunk_000000002_000000004.npz").unlink()
    resumed = mor.distill(h, tol=1e-3, device="cpu", chunk_size=2,
                          shard_dir=tmp_path / "chunked", resume=True)
    np.testing.assert_array_equal(resumed.bank.order, on.bank.order)
    sized = mor.distill(h, modes=4, device="cpu")  # "auto" is balanced on a device
    assert set(sized.report.columns["method"].ravel()) == {"balanced"}
    with pytest.raises(ValueError, match="this process"):
        mor.distill(h, tol=1e-3, device="cpu", workers=2)
    from click.testing import CliRunner

    from mor.cli import main
    np.savez(tmp_path / "filters.npz", filters=h)
    result = CliRunner().invoke(main, ["distill", str(tmp_path / "filters.npz"), "--tol",
                                       "1e-3", "--device", "cpu", "--out",
                                       str(tmp_path / "bank.npz"), "--report",
                                       str(tmp_path / "report")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "report" / "spectra.png").is_file()  # its values on the device
    np.testing.assert_array_equal(mor.load(tmp_path / "bank.npz").order, cpu.bank.order)
    refused = CliRunner().invoke(main, ["distill", str(tmp_path / "filters.npz"), "--tol",
                                        "1e-3", "--device", "cpu", "--workers", "2"])
    assert refused.exit_code != 0 and "this process" in refused.output


def test_error_bounds_on_a_device(device):
    h = hyena_like_filters(3, 2000, seed=8)
    cpu = mor.error_bounds(h, max_order=12)
    on = mor.error_bounds(h, max_order=12, device=device)
    assert np.abs(on.hsv - cpu.hsv).max() <= 1e-10 * cpu.hsv[:, 0].max()
    np.testing.assert_allclose(on.bt, cpu.bt, rtol=1e-8)
    with pytest.raises(ValueError, match="max_order"):
        mor.error_bounds(h, device=device)


def test_devices_that_are_not_there_are_refused():
    h = hyena_like_filters(2, 500)
    for device in ("bogus-device", f"cuda:{torch.cuda.device_count() + 1}"):
        with pytest.raises(ValueError, match="device"):
            mor.hankel_singular_values(h, 4, device=device)
        with pytest.raises(ValueError, match="device"):
            mor.reduce(h, 4, device=device)


def test_split_projection(device, monkeypatch):
    """Products of rows summed over chunks of n equal the plain products, and the values
    with them agree with the Krylov path."""
    from mor.torch import _spectrum
    monkeypatch.setattr(_spectrum, "PROJECTION_CHUNK", 256)
    generator = torch.Generator().manual_seed(0)
    w = torch.randn((3, 4, 1001), dtype=torch.float64, generator=generator).to(device)
    basis = torch.randn((3, 40, 1001), dtype=torch.float64, generator=generator).to(device)
    split = _spectrum._inner(w, basis[:, :25])
    plain = w @ basis[:, :25].transpose(1, 2)
    assert float((split - plain).abs().max()) <= 1e-12 * float(plain.abs().max())
    gram = _spectrum._inner(w, w)  # a block's Gram matrix, as CholQR2 forms it
    assert float((gram - w @ w.transpose(1, 2)).abs().max()) <= 1e-12 * float(gram.abs().max())
    # more filters than SPLIT_MAX_FILTERS: split where the vectors reach SPLIT_MIN_LENGTH
    monkeypatch.setattr(_spectrum, "SPLIT_MAX_FILTERS", 1)
    for least, chunked in ((512, True), (2048, False)):
        monkeypatch.setattr(_spectrum, "SPLIT_MIN_LENGTH", least)
        calls = []
        monkeypatch.setattr(torch, "bmm", lambda a, b, bmm=torch.bmm: calls.append(1) or bmm(a, b))
        split = _spectrum._inner(w, basis[:, :25])
        assert bool(calls) == chunked
        assert float((split - plain).abs().max()) <= 1e-12 * float(plain.abs().max())
    h = hyena_like_filters(3, 3000, seed=9)
    cpu = mor.hankel_singular_values(h, 16)
    on = mor.hankel_singular_values(h, 16, device=device)
    assert np.abs(on - cpu).max() <= 1e-10 * cpu[:, 0].max()


def test_a_basis_too_small_grows_or_runs_again(device, monkeypatch):
    """A basis allocated for fewer vectors than the filters need grows for them; where the
    device has no memory for the copy they run again from the start, in batches sized for
    the limit. Either way every filter's pairs are certified as with the default
    allocation (values, vectors and the vector count of a fresh run)."""
    from mor.torch import _spectrum
    h = hyena_like_filters(3, 3000, seed=10)
    full = hankel_blocks(h, 24, rtol=1e-10, device=device)
    assert (full["basis"] > 32).all()
    grown = hankel_blocks(h, 24, rtol=1e-10, device=device, capacity=32)
    calls = []

    def out_of_memory(*args):
        calls.append(args[2])
        raise torch.OutOfMemoryError("no room for the grown basis")

    monkeypatch.setattr(_spectrum, "_grown", out_of_memory)
    again = hankel_blocks(h, 24, rtol=1e-10, device=device, capacity=32)
    assert calls == [48]  # one failed growth, then a run with the limit
    for small in (grown, again):
        np.testing.assert_array_equal(small["basis"], full["basis"])
        assert np.abs(small["sigma"] - full["sigma"]).max() <= 1e-10 * full["sigma"][:, 0].max()
        np.testing.assert_allclose(np.abs(small["u0"]), np.abs(full["u0"]), atol=1e-8)


def test_the_update_from_the_rounded_basis_keeps_orthogonality(device):
    """The re-orthogonalisation's update reads the basis rounded to float32, its coefficients
    the float64 basis: a block with components along the basis of the size Lanczos leaves
    (1e-12) and one with large components (a second pass) both come out orthogonal to the
    float64 basis to rounding, not to float32's 1e-8."""
    from mor.torch._spectrum import _next_block
    generator = torch.Generator().manual_seed(1)
    n = 4000
    basis, _ = torch.linalg.qr(torch.randn((2, n, 60), dtype=torch.float64,
                                           generator=generator))
    basis = basis.transpose(1, 2).contiguous().to(device)
    fresh = torch.randn((2, 4, n), dtype=torch.float64, generator=generator).to(device)
    fresh = fresh - fresh @ basis.transpose(1, 2) @ basis
    for size in (1e-12, 0.9):
        w = fresh + size * torch.randn((2, 4, 60), dtype=torch.float64,
                                       generator=generator).to(device) @ basis
        q, r = _next_block(w, basis, basis.float())
        assert float((q @ basis.transpose(1, 2)).abs().max()) <= 1e-14
        eye = torch.eye(4, dtype=torch.float64, device=device)
        assert float((q @ q.transpose(1, 2) - eye).abs().max()) <= 1e-14
