"""The Hankel spectrum and balanced truncation on a torch device (issue 22): block Lanczos
against the CPU paths, on CPU tensors in CI and on a CUDA GPU where there is one."""

import os

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


def test_filters_are_split_into_even_batches(monkeypatch):
    """As few batches as the most filters a batch allows, of even sizes (a batch steps in
    lockstep: a small last batch would cost as many steps as a full one)."""
    from mor.torch import _spectrum
    sizes, run = [], _spectrum._block_lanczos
    monkeypatch.setattr(_spectrum, "_block_lanczos",
                        lambda h, *args: sizes.append(len(h)) or run(h, *args))
    h = hyena_like_filters(8, 600, seed=3)
    for most, expected in ((5, [4, 4]), (3, [3, 3, 2]), (8, [8]), (1, [1] * 8)):
        sizes.clear()
        hankel_blocks(h, 6, rtol=1e-10, device="cpu", batch=most, vectors=False)
        assert sizes == expected


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


def test_a_modal_fit_starts_from_the_device(device, monkeypatch):
    """The modal fit's start (balanced truncation) takes the device through ``init_options``;
    its passes over the taps stay on the CPU: the same fits as from the CPU path's start."""
    from mor.methods import balanced

    h = hyena_like_filters(3, 2500, seed=7)
    cpu = mor.reduce(h, modes=4, method="modal")
    seen = []
    on_device = balanced.device_blocks
    monkeypatch.setattr(balanced, "device_blocks",
                        lambda *a, **k: seen.append(k["device"]) or on_device(*a, **k))
    on = mor.reduce(h, modes=4, method="modal", init_options={"device": device})
    assert seen and set(seen) == {device}  # the start's decomposition ran there
    np.testing.assert_allclose(on.info["l2"], cpu.info["l2"], rtol=1e-4)
    assert np.all(np.abs(on.compact()[0]) < 1)


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


ROW_PRODUCTS_CHECK = """
import torch
from mor.torch import _row_products as rows
rows.CHUNK = 256  # several chunks of n, and a remainder
generator = torch.Generator().manual_seed(0)
basis = torch.randn((3, 40, 1001), dtype=torch.float64, generator=generator).to(DEVICE)
for a, m in ((4, 25), (4, 4), (3, 17), (1, 1)):
    x = torch.randn((3, a, 1001), dtype=torch.float64, generator=generator).to(DEVICE)
    y = basis[:, :m]  # a view of the basis, as the Lanczos passes it
    plain = x @ y.transpose(1, 2)
    assert float((rows.inner(x, y) - plain).abs().max()) <= 1e-13 * float(plain.abs().max())
    c = torch.randn((3, a, m), dtype=torch.float64, generator=generator).to(DEVICE)
    r = y.float()
    want = x - c @ r.double()
    w = x.clone()
    rows.subtract_combination(w, c, r)
    assert float((w - want).abs().max()) <= 1e-13 * float(want.abs().max())
    want = x - c @ y  # float64 rows: the three-term recurrence
    w = x.clone()
    rows.subtract_combination(w, c, y)
    assert float((w - want).abs().max()) <= 1e-13 * float(want.abs().max())
    want = c @ y  # Cholesky QR's product with the inverse factor
    assert float((rows.combination(c, y) - want).abs().max()) <= 1e-13 * float(want.abs().max())
# the deflated step's: two sets of rows (the locked ones rounded), the Gram matrix of the result
x = torch.randn((3, 4, 1001), dtype=torch.float64, generator=generator).to(DEVICE)
c = torch.randn((3, 4, 25 + 8), dtype=torch.float64, generator=generator).to(DEVICE)
locked, recent = basis[:, :25], basis[:, 30:38]
plain = x @ torch.cat([locked, recent], dim=1).transpose(1, 2)
assert float((rows.inner(x, locked, y2=recent) - plain).abs().max()) \
    <= 1e-13 * float(plain.abs().max())
want = x - c[:, :, :25] @ locked.float().double() - c[:, :, 25:] @ recent
w = x.clone()
gram = rows.subtract_combination(w, c, locked.float(), r2=recent, gram=True)
assert float((w - want).abs().max()) <= 1e-13 * float(want.abs().max())
square = want @ want.transpose(1, 2)
assert float((gram - square).abs().max()) <= 1e-13 * float(square.abs().max())
product, gram = rows.combination(c[:, :, :25], locked, gram=True)
square = product @ product.transpose(1, 2)
assert float((gram - square).abs().max()) <= 1e-13 * float(square.abs().max())
pick = torch.tensor([2, 0], dtype=torch.int64).to(DEVICE)  # some filters of the basis
x = torch.randn((2, 4, 1001), dtype=torch.float64, generator=generator).to(DEVICE)
c = torch.randn((2, 4, 25), dtype=torch.float64, generator=generator).to(DEVICE)
y = basis[:, :25]
plain = x @ y[pick].transpose(1, 2)
assert float((rows.inner(x, y, pick) - plain).abs().max()) <= 1e-13 * float(plain.abs().max())
for r in (y.float(), y):
    want = x - c @ r[pick].double()
    w = x.clone()
    gram = rows.subtract_combination(w, c, r, pick, gram=True)
    assert float((w - want).abs().max()) <= 1e-13 * float(want.abs().max())
    square = want @ want.transpose(1, 2)
    assert float((gram - square).abs().max()) <= 1e-13 * float(square.abs().max())
if DEVICE == "cpu":  # the whole Lanczos with the kernels, against torch's products
    import numpy as np
    from mor.demo import hyena_like_filters
    from mor.torch import _spectrum
    h = hyena_like_filters(2, 700, seed=4)
    plain = _spectrum.hankel_blocks(h, 12, rtol=1e-11, device="cpu")
    _spectrum._triton_products = lambda x: True
    kernels = _spectrum.hankel_blocks(h, 12, rtol=1e-11, device="cpu")
    assert np.abs(kernels["sigma"] - plain["sigma"]).max() <= 1e-12 * plain["sigma"][:, 0].max()
    assert np.abs(np.abs(kernels["u0"]) - np.abs(plain["u0"])).max() <= 1e-8
print("checked")
"""


def test_row_products_match_torch(device):
    """The Triton kernels of the re-orthogonalisation (`mor.torch._row_products`) against
    torch's products: on the GPU, and on CPU tensors through Triton's interpreter (the same
    kernels, run by NumPy)."""
    triton = pytest.importorskip("triton")
    import subprocess
    import sys
    from packaging.version import Version
    if device == "cpu" and Version(triton.__version__) < Version("3.7"):
        # its tensors' __index__ is int() of a 1-element array: an error from NumPy 2.x on
        pytest.skip("Triton's interpreter before 3.7 cannot take a loop bound under NumPy 2")
    env = dict(os.environ, TRITON_INTERPRET="1") if device == "cpu" else dict(os.environ)
    done = subprocess.run([sys.executable, "-c", ROW_PRODUCTS_CHECK.replace(
        "DEVICE", repr(device))], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "checked" in done.stdout


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


def test_row_products_compile_for_hopper_without_spilling(tmp_path):
    """Both kernels compile for sm_90 (H100, H200) with their configured tiles (the update
    for float32 and float64 rows, with and without the Gram matrix), and keep them in
    registers: no local memory (a spill would make the memory-bound kernel read twice)."""
    triton = pytest.importorskip("triton")
    import re
    import subprocess
    from pathlib import Path
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
    from mor.torch import _row_products as rows
    tool = Path(triton.__file__).parent / "backends/nvidia/bin/cuobjdump"
    if not tool.exists():
        pytest.skip("this Triton has no CUDA toolchain")
    pointers = {"x_ptr": "*fp64", "y_ptr": "*fp64", "y2_ptr": "*fp64", "out_ptr": "*fp64",
                "filters_ptr": "*i64"}
    kernels = [
        *((rows._inner_kernel, {**pointers, **dict.fromkeys(
            ("n", "rows", "m", "m2", "sxf", "sxi", "syf", "syj", "sy2f", "sy2j"), "i32")},
           {"CHUNK": rows.CHUNK, "BI": 4, "BJ": rows.INNER_BLOCK_J, "BT": rows.INNER_BLOCK_T,
            "SELECTED": selected}, rows.INNER_WARPS)
          for selected in (False, True)),
        *((rows._update_kernel, {"w_ptr": "*fp64", "c_ptr": "*fp64", "r_ptr": rows_type,
                                 "r2_ptr": "*fp64", "gram_ptr": "*fp64", "filters_ptr": "*i64",
                                 **dict.fromkeys(("n", "rows", "m", "m2", "swf", "swi", "scf",
                                                  "sci", "srf", "srj", "sr2f", "sr2j"), "i32")},
           {"BI": 4, "BJ": rows.UPDATE_BLOCK_J, "BT": rows.UPDATE_BLOCK_T, "SUBTRACT": subtract,
            "SELECTED": selected, "GRAM": gram}, rows.UPDATE_WARPS)
          for rows_type, subtract, selected, gram in (
              ("*fp32", True, False, False), ("*fp64", True, False, False),
              ("*fp64", False, False, False), ("*fp32", True, True, False),
              ("*fp64", True, True, False), ("*fp32", True, False, True),
              ("*fp64", False, False, True)))]
    for kernel, signature, constants, warps in kernels:
        signature.update(dict.fromkeys(constants, "constexpr"))
        compiled = triton.compile(ASTSource(fn=kernel, signature=signature, constexprs=constants),
                                  target=GPUTarget("cuda", 90, 32), options={"num_warps": warps,
                                                                   "enable_fp_fusion": rows.FMA})
        cubin = tmp_path / (f"{kernel.fn.__name__}_{signature.get('r_ptr', '')[1:]}"
                            f"_{constants.get('SUBTRACT', '')}_{constants['SELECTED']}"
                            f"_{constants.get('GRAM', '')}.cubin")
        cubin.write_bytes(compiled.asm["cubin"])
        usage = subprocess.run([str(tool), "-res-usage", str(cubin)], capture_output=True,
                               text=True, check=True).stdout
        found = re.search(r"REG:(\d+) STACK:(\d+) SHARED:\d+ LOCAL:(\d+)", usage)
        assert found, usage
        registers, stack, local = map(int, found.groups())
        assert registers <= 255 and stack == 0 and local == 0, usage


def issue22_filters(length: int, count: int) -> np.ndarray:
    """Issue 22's filters: twelve damped cosines over a decaying noise floor (float32)."""
    t = np.arange(length)
    out = np.empty((count, length))
    for seed in range(count):
        rng = np.random.default_rng(seed)
        h = sum(np.cos(0.001 * (k + 1) * t * (1 + 0.3 * rng.random()))
                * np.exp(-t * (2e-5 + 1e-5 * k) * 2**20 / length) for k in range(12))
        out[seed] = (h + 1e-4 * rng.standard_normal(length) * np.exp(-t / (length / 8))
                     ).astype(np.float32)
    return out


@pytest.fixture
def deflation_spy(monkeypatch):
    """The pairs each batch locked and its loss estimates (`mor.torch._spectrum`), with
    deflation allowed on filters of any length."""
    from mor.torch import _spectrum
    monkeypatch.setattr(_spectrum, "DEFLATE_MIN", 0)
    seen = {"locked": [], "estimates": []}
    lock, estimate = _spectrum._lock, _spectrum.LossEstimate

    def spied_lock(ritz, count, *args):
        seen["locked"].append(count.tolist())
        return lock(ritz, count, *args)

    def spied_estimate(*args):
        seen["estimates"].append(estimate(*args))
        return seen["estimates"][-1]

    monkeypatch.setattr(_spectrum, "_lock", spied_lock)
    monkeypatch.setattr(_spectrum, "LossEstimate", spied_estimate)
    return seen


def test_deflation_locks_the_dominant_pairs_and_agrees(device, deflation_spy):
    """On issue 22's filters a batch locks its dominant Ritz pairs, then re-orthogonalises
    a minority of its steps (the loss estimate's choice); its values agree with full
    re-orthogonalisation and with the CPU path, each bound within the tolerance, and
    balanced truncation from its vectors matches the CPU path's."""
    h = issue22_filters(1 << 12, 3)
    out = hankel_blocks(h, 64, rtol=1e-11, device=device, vectors=False)
    [locked] = deflation_spy["locked"]
    [estimate] = deflation_spy["estimates"]
    assert min(locked) >= 1
    assert 0 < int(estimate.passes.max()) < estimate.steps / 2
    full = hankel_blocks(h, 64, rtol=1e-11, device=device, vectors=False, deflate=False)
    assert len(deflation_spy["locked"]) == 1
    scale = full["sigma"][:, :1]
    assert np.abs(out["sigma"] - full["sigma"]).max() <= 1e-12 * scale.max()
    assert out["bound"].max() <= 1e-11
    cpu = mor.hankel_singular_values(h, 64)
    assert np.abs(out["sigma"] - cpu).max() <= 1e-10 * cpu[:, 0].max()
    on, reference = mor.reduce(h, 32, device=device), mor.reduce(h, 32)
    assert len(deflation_spy["locked"]) == 2
    np.testing.assert_allclose(on.info["hinf"], reference.info["hinf"], rtol=1e-2)
    np.testing.assert_allclose(on.impulse(h.shape[1]), reference.impulse(h.shape[1]),
                               atol=1e-6 * np.abs(h).max())


def test_a_batch_with_a_filter_without_a_drop_keeps_full_reorthogonalisation(
        device, deflation_spy):
    """A batch locks only once every filter in it has pairs to lock: with a filter whose
    spectrum has no drop (decaying noise), none is locked, and the values are those of full
    re-orthogonalisation."""
    length = 1 << 12
    noise = np.random.default_rng(3).standard_normal(length) * np.exp(-np.arange(length) / 500)
    h = np.concatenate([issue22_filters(length, 1), noise[None]])
    out = hankel_blocks(h, 64, rtol=1e-11, device=device, vectors=False)
    assert deflation_spy["locked"] == [] and deflation_spy["estimates"] == []
    full = hankel_blocks(h, 64, rtol=1e-11, device=device, vectors=False, deflate=False)
    assert np.abs(out["sigma"] - full["sigma"]).max() <= 1e-12 * full["sigma"][:, 0].max()
    alone = hankel_blocks(h[:1], 64, rtol=1e-11, device=device, vectors=False)
    assert len(deflation_spy["locked"]) == 1
    assert np.abs(alone["sigma"] - full["sigma"][:1]).max() <= 1e-12 * full["sigma"][0, 0]


def test_a_deflated_basis_grows(device, deflation_spy, monkeypatch):
    """After a lock the basis holds the locked vectors and the new sequence; grown for the
    filters that need more, it keeps both: the values are those of a basis large enough from
    the start."""
    from mor.torch import _spectrum
    h = issue22_filters(1 << 12, 2)
    full = hankel_blocks(h, 64, rtol=1e-11, device=device, vectors=False)
    grown, grow = [], _spectrum._grown
    monkeypatch.setattr(_spectrum, "_grown", lambda *args: grown.append(args[1:]) or grow(*args))
    small = hankel_blocks(h, 64, rtol=1e-11, device=device, vectors=False, capacity=64)
    assert len(deflation_spy["locked"]) == 2 and grown  # grown after the lock
    assert np.abs(small["sigma"] - full["sigma"]).max() <= 1e-12 * full["sigma"][:, 0].max()
    assert small["bound"].max() <= 1e-11
