"""Banks written for the inference engines and run by them: StripedHyena (``stripedhyena``
0.2.2) and Vortex (``vtx`` 1.1.0, the Evo 2 engine), on the CPU in float32.

The writers and readers of `mor.export` are checked on their own (layouts, padding, tiny
poles, bad input), then in small engine models: the engine's materialised filter, its FFT
prefill of a prompt and decode steps after it, beside mor's own float32 layer
(`mor.torch.ModalRecurrence`) and a float64 convolution with the bank's taps. The engines are
installed by ``make test``'s set-up with ``--no-deps`` (``stripedhyena`` declares
``flash-attn``, which does not install on a CPU machine); tests that need one are skipped
without it.

Stand-ins (``tests/engine_harness.py``): Vortex imports the CUDA extension
``flash_attn_2_cuda`` when its model module is imported, so an empty module of that name is
put on ``sys.modules`` (no Hyena code path calls it); Vortex enters ``torch.cuda.device`` while
building and projecting, which refuses a CPU device, so it is made a no-op context for CPU
devices while a Vortex model is built or run.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from click.testing import CliRunner

import mor
from mor import export
from mor.cli import main
from mor.demo import hyena_like_filters

torch = pytest.importorskip("torch")
import engine_harness as eh  # noqa: E402  (tests/ is on sys.path: rootdir-relative import)

PROMPT, STEPS = 2048, 64
ENGINE_TOL, MOR_TOL = 1e-4, 5e-5  # max-relative, worst channel: vs float64 and vs mor's layer


@pytest.fixture(scope="module")
def engines(tmp_path_factory):
    pytest.importorskip("stripedhyena")
    pytest.importorskip("vortex")
    return eh.import_engines(tmp_path_factory.mktemp("vortex_log"))


def _real_bank(channels, modes, seed=0, unequal=False):
    """A real-pole bank by hand (what Vortex runs): Evo 2-style decay rates; with
    ``unequal`` the channels have 1..modes modes."""
    layer = eh.evo2_layer(channels, modes, seed)
    if unequal:
        keep = np.arange(modes)[None, :] < (np.arange(channels) % modes + 1)[:, None]
        layer["residues"] = np.where(keep, layer["residues"], 0).astype(np.float32)
    return export.from_vortex_state_dict(
        {f"blocks.0.filter.{k}": v for k, v in layer.items()})[0]


@pytest.fixture(scope="module")
def filters(trained_filters):
    """8 trained channels of each of two layers, L = 2048."""
    return trained_filters[:2, ::32]


# ---------------------------------------------------------------------------- layouts
def test_striped_hyena_layout_and_padding(filters):
    bank = mor.reduce(filters, tol=1e-2, on_fail="flag")  # unequal modes, some filters none
    assert bank.modes.min() < bank.modes.max()
    config = {"hidden_size": 8, "state_size": 32, "hyena_layer_idxs": [1, 3],
              "hyena_filter_groups": 1}
    out = export.to_striped_hyena_state_dict(bank, model=config, tensors="numpy")
    assert out.layers == (1, 3) and out.state_size == 32
    assert sorted(out.state_dict) == [f"blocks.{i}.filter.{k}" for i in (1, 3)
                                      for k in ("D", "poles", "residues")]
    for i, j in ((1, 0), (3, 1)):
        poles = out.state_dict[f"blocks.{i}.filter.poles"]
        residues = out.state_dict[f"blocks.{i}.filter.residues"]
        assert poles.shape == residues.shape == (8, 32, 1, 2) and poles.dtype == np.float32
        assert out.state_dict[f"blocks.{i}.filter.D"].shape == (8,)
        pad = np.arange(32)[None, :] >= bank.modes[j][:, None]
        # padding: the stable pole PAD_POLE with a zero residue, never a pole at zero
        np.testing.assert_array_equal(poles[..., 0, 0][pad], export.PAD_POLE)
        np.testing.assert_array_equal(poles[..., 0, 1][pad], 0)
        np.testing.assert_array_equal(residues[pad], 0)
        assert np.all(np.hypot(poles[..., 0, 0], poles[..., 0, 1]) > 0)
    np.testing.assert_array_equal(out.padded, 32 - bank.modes)
    np.testing.assert_array_equal(out.dropped, 0)
    said = str(out)
    assert f"padded {int((32 - bank.modes).sum())} of {2 * 8 * 32} slots" in said
    assert "state_size: 32, hyena_filter_groups: 1" in said
    back = export.from_striped_hyena_state_dict(out.state_dict)
    assert list(back) == [1, 3]
    for i, j in ((1, 0), (3, 1)):
        np.testing.assert_array_equal(back[i].modes, bank.modes[j])
        taps = bank[j].impulse(2048)
        err = np.abs(back[i].impulse(2048) - taps).max(-1) / np.abs(taps).max(-1)
        assert err.max() < 1e-5  # float32 storage


def test_vortex_layout_and_round_trip():
    bank = _real_bank(20, 16, unequal=True)  # 1..16 modes
    out = export.to_vortex_state_dict(bank, layers=[2], tensors="numpy")
    assert out.state_size == 16
    lp = out.state_dict["blocks.2.filter.log_poles"]
    assert lp.shape == (20, 16, 1) and lp.dtype == np.float32
    assert out.state_dict["blocks.2.filter.residues"].shape == (20, 16)
    pad = np.arange(16)[None, :] >= bank.modes[:, None]
    np.testing.assert_allclose(lp[..., 0][pad], np.log(export.PAD_POLE), rtol=1e-7)
    np.testing.assert_array_equal(out.state_dict["blocks.2.filter.residues"][pad], 0)
    back = export.from_vortex_state_dict(out.state_dict)[2]
    np.testing.assert_array_equal(back.modes, bank.modes)
    taps = bank.impulse(4096)
    assert (np.abs(back.impulse(4096) - taps).max(-1) / np.abs(taps).max(-1)).max() < 1e-5


def test_files_and_torch_tensors(tmp_path, filters):
    bank = mor.reduce(filters, 16)
    out = export.to_striped_hyena_state_dict(bank)  # blocks 0, 1; torch tensors
    assert all(isinstance(v, torch.Tensor) and v.dtype == torch.float32
               for v in out.state_dict.values())
    want = {i: b.impulse(512) for i, b in export.from_striped_hyena_state_dict(
        out.state_dict).items()}
    for name in ("sd.pt", "sd.safetensors"):
        out.save(tmp_path / name)
        for i, b in export.from_striped_hyena_state_dict(tmp_path / name).items():
            np.testing.assert_array_equal(b.impulse(512), want[i])
    from safetensors.torch import load_file
    loaded = load_file(tmp_path / "sd.safetensors")
    assert loaded.keys() == out.state_dict.keys()
    written = out.save_poles_residues(tmp_path / "approx")
    assert sorted(p.name for p in written) == sorted(
        f"approx_{k}_{n}.pt" for n in (1, 2) for k in ("poles", "residues", "D"))
    poles = torch.load(tmp_path / "approx" / "approx_poles_1.pt")
    assert poles.dtype == torch.complex64 and poles.shape == (out.state_size, 8)  # (S, H)
    for i, b in export.read_striped_hyena_poles_residues(tmp_path / "approx").items():
        np.testing.assert_allclose(b.impulse(512), want[i], rtol=0, atol=1e-6)
    (tmp_path / "approx" / "approx_D_2.pt").unlink()
    with pytest.raises(ValueError, match="approx_D_2.pt.*ignores D"):
        export.read_striped_hyena_poles_residues(tmp_path / "approx")
    with pytest.raises(ValueError, match="load the state dict"):
        export.to_vortex_state_dict(_real_bank(2, 4)).save_poles_residues(tmp_path / "v")


# ---------------------------------------------------------------------------- tiny poles
def _with_tiny_pole(modulus):
    """Two filters: the second has a mode of pole ``modulus`` and residue 0.5 among ordinary
    ones (as ``method="modal"`` produced: |lambda| = 1.4e-12)."""
    bank = mor.reduce(hyena_like_filters(2, 256, seed=3), 8)
    p, r, d = bank.compact()
    p = np.concatenate([p, [[0.5], [modulus]]], -1)
    r = np.concatenate([r, [[0.0], [0.5]]], -1)
    return mor.ModalSSM.from_compact(p, r, d)


@pytest.mark.parametrize("modulus", [0.0, 1.4e-12, 1e-4])
def test_tiny_poles_dropped_refitted_and_reported(modulus):
    bank = _with_tiny_pole(modulus)
    with pytest.raises(ValueError, match="pole at zero or too small.*give length="):
        export.to_striped_hyena_state_dict(bank)
    with pytest.raises(ValueError, match="pole at zero or too small"):
        export.to_striped_hyena(bank)
    out = export.to_striped_hyena_state_dict(bank, length=256, tensors="numpy")
    np.testing.assert_array_equal(out.dropped, [[0, 1]])
    np.testing.assert_array_equal(out.modes, bank.modes[None] - [[0, 1]])
    assert out.change[0, 0] == 0 and 0 < out.change[0, 1] < 0.5
    assert "block 0: dropped 1 tiny-pole mode(s) in 1 filter(s)" in str(out)
    res = out.state_dict["blocks.0.filter.residues"]
    norm = bank.h2_norm()
    assert np.abs(res[..., 0, 0] + 1j * res[..., 0, 1]).max(-1).max() < 10 * norm.max()
    back = export.from_striped_hyena_state_dict(out.state_dict)[0]
    taps = bank.impulse(256)
    change = np.linalg.norm(back.impulse(256) - taps, axis=-1) / np.linalg.norm(taps, axis=-1)
    np.testing.assert_allclose(change, out.change[0], rtol=1e-3, atol=1e-6)
    # the refit is never worse than dropping the mode alone
    p, r, d = bank.compact()
    alone = mor.ModalSSM.from_compact(p, np.where(np.abs(p) == modulus, 0, r), d)
    dropped_only = np.linalg.norm(alone.impulse(256) - taps, axis=-1)[1] / np.linalg.norm(
        taps[1])
    assert out.change[0, 1] <= dropped_only + 1e-9


def test_huge_residues_do_not_overflow_the_tiny_pole_test():
    # found by tests/test_robustness.py: max_gain * |lambda| * |R| overflowed at |R| = 1e307
    bank = mor.ModalSSM.from_compact(np.array([0.5]), np.array([1e307]), 0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = export.to_striped_hyena(bank)
    assert out["residues"][0] == 2e307 and out["D"] == -2e307


def _stored_deviation(engine, out, bank, length):
    """What the written float32 parameters, read back, cost the bank's taps (max-relative)."""
    read = (export.from_striped_hyena_state_dict if engine == "striped-hyena" else
            export.from_vortex_state_dict)(out.state_dict)
    back, ref = read[out.layers[0]].impulse(length), bank.impulse(length)
    return np.abs(back - ref).max(axis=-1) / np.abs(ref).max(axis=-1)


def test_residues_refitted_to_the_stored_poles(filters):
    """With ``length`` the residues are re-solved for the poles as float32 stores them: the
    written filters move less, and ``layout_error`` says by how much (NaN without it)."""
    length = filters.shape[-1]
    rng = np.random.default_rng(5)
    rates = np.exp(rng.uniform(np.log(1e-3), np.log(1e-1), (8, 6)))
    real = mor.ModalSSM.from_compact(1 - rates, rng.standard_normal((8, 6)), np.zeros(8))
    for engine, bank in (("striped-hyena", mor.reduce(filters[0], modes=16)),
                         ("vortex", real)):
        writer = (export.to_striped_hyena_state_dict if engine == "striped-hyena" else
                  export.to_vortex_state_dict)
        plain = writer(bank, tensors="numpy")
        fitted = writer(bank, length=length, tensors="numpy")
        assert np.isnan(plain.layout_error).all() and fitted.layout_error.shape == (1, 8)
        before = _stored_deviation(engine, plain, bank, length)
        after = _stored_deviation(engine, fitted, bank, length)
        np.testing.assert_allclose(after, fitted.layout_error[0], rtol=1e-6, atol=1e-15)
        assert np.all(after <= before * (1 + 1e-9)), (engine, after, before)
        if engine == "striped-hyena":  # Vortex's log lambda already keeps lambda to 6e-8 rates
            assert np.median(after) < np.median(before) / 3, (after, before)


def test_small_harmless_poles_are_kept():
    """A small pole with a small residue costs float32 nothing: kept (the threshold depends
    on the residue, never drops |lambda| >= 1 / MAX_GAIN)."""
    bank = mor.reduce(hyena_like_filters(1, 256, seed=3), 8)
    p, r, d = bank.compact()
    norm = float(bank.h2_norm()[0])
    small = mor.ModalSSM.from_compact(np.append(p[0], [1e-3, 0.02])[None],
                                      np.append(r[0], [1e-3 * norm, norm])[None], d)
    out = export.to_striped_hyena_state_dict(small, tensors="numpy")
    assert out.dropped.sum() == 0 and out.modes[0, 0] == small.modes[0] == bank.modes[0] + 2


# ---------------------------------------------------------------------------- bad input
def test_bad_input_is_a_value_error_that_says_what(filters):
    complex_bank = mor.reduce(filters[0], 8)
    with pytest.raises(ValueError, match="complex pole.*real poles in \\(0, 1\\)"):
        export.to_vortex_state_dict(complex_bank)
    neg = mor.ModalSSM.from_compact([[0.5, -0.3]], [[1.0, 1.0]], [0.0])
    with pytest.raises(ValueError, match="negative pole"):
        export.to_vortex_state_dict(neg)
    config = {"hidden_size": 8, "state_size": 16, "hcl_layer_idxs": [2]}
    stacked = _real_bank(16, 4)[np.arange(16).reshape(2, 8)]
    with pytest.raises(ValueError, match="2 layers, more than the 1 modal layers"):
        export.to_vortex_state_dict(stacked, model=config)
    with pytest.raises(ValueError, match="more than the 1 modal layers"):
        export.to_vortex_state_dict({2: stacked[0], 5: stacked[1]}, model=config)
    with pytest.raises(ValueError, match="block\\(s\\) \\[5\\] are not modal layers"):
        export.to_vortex_state_dict({5: stacked[1]}, model=config)
    with pytest.raises(ValueError, match="4 channels per layer.*8"):
        export.to_vortex_state_dict(_real_bank(4, 4), model=config)
    with pytest.raises(ValueError, match="more than the state_size 2"):
        export.to_vortex_state_dict(stacked[0], model=config | {"state_size": 2})
    with pytest.raises(ValueError, match="no hcl_layer_idxs"):
        export.to_vortex_state_dict(stacked[0], model={"hidden_size": 8, "state_size": 4})
    with pytest.raises(ValueError, match="hyena_filter_groups: 1"):
        export.to_striped_hyena_state_dict(complex_bank, model={
            "hidden_size": 8, "state_size": 16, "hyena_layer_idxs": [0]})
    unstable = mor.ModalSSM.from_compact([[1.01]], [[1.0]], [0.0])
    with pytest.raises(ValueError, match="outside the unit circle"):
        export.to_striped_hyena_state_dict(unstable)

    good = export.to_striped_hyena_state_dict(complex_bank, tensors="numpy").state_dict
    missing = {k: v for k, v in good.items() if not k.endswith("residues")}
    with pytest.raises(ValueError, match="no blocks.0.filter.residues"):
        export.from_striped_hyena_state_dict(missing)
    misshaped = dict(good, **{"blocks.0.filter.poles": good["blocks.0.filter.poles"][..., 0, :]})
    shape = "poles must have shape \\(H, S, 1, 2\\)"
    with pytest.raises(ValueError, match=shape + ".*\\(8, \\d+, 2\\)"):
        export.from_striped_hyena_state_dict(misshaped)
    with pytest.raises(ValueError, match=shape):  # the model's state dict is checked too
        export.to_striped_hyena_state_dict(complex_bank, model=misshaped)
    grouped = dict(good, **{"blocks.0.filter.D": np.zeros(16)})
    with pytest.raises(ValueError, match="8 filters for 16 channels \\(grouped filters\\)"):
        export.from_striped_hyena_state_dict(grouped)
    wrong_d = dict(good, **{"blocks.0.filter.D": np.zeros(3)})
    with pytest.raises(ValueError, match="D must have shape \\(H,\\) = \\(8,\\)"):
        export.from_striped_hyena_state_dict(wrong_d)
    vortex = export.to_vortex_state_dict(_real_bank(4, 4), tensors="numpy").state_dict
    with pytest.raises(ValueError, match="filter.log_poles: a vortex model; use from_vortex_"):
        export.from_striped_hyena_state_dict(vortex)
    bad_res = dict(vortex, **{"blocks.0.filter.residues": np.zeros((4, 5))})
    with pytest.raises(ValueError, match="residues must have shape \\(H, S\\) = \\(4, 4\\)"):
        export.from_vortex_state_dict(bad_res)
    with pytest.raises(ValueError, match="no blocks.0.filter.log_poles"):
        export.from_vortex_state_dict({k: v for k, v in vortex.items()
                                       if not k.endswith("log_poles")} |
                                      {"blocks.0.filter.residues": np.zeros((4, 4))})
    with pytest.raises(ValueError, match="has no blocks.\\{i\\}.filter.log_poles"):
        export.from_vortex_state_dict({"blocks.0.mlp.weight": np.zeros(3)})


# ---------------------------------------------------------------------------- in the engines
def _engine_model(engine, hidden, state_size, layers):
    if engine == "striped-hyena":
        return eh.striped_hyena_model(eh.striped_hyena_config(hidden, state_size, layers))
    return eh.vortex_model(eh.vortex_config(hidden, state_size, layers))


def _load(engine, model, banks, **kw):
    writer = (export.to_striped_hyena_state_dict if engine == "striped-hyena" else
              export.to_vortex_state_dict)
    out = writer(banks, model=model, **kw)
    result = model.load_state_dict(out.state_dict, strict=False)
    assert not result.unexpected_keys
    assert not [k for k in result.missing_keys if k in out.state_dict]
    return out


def _check_layer(engine, model, block, bank, seed=0, prompt=PROMPT, steps=STEPS):
    x2, x1, v = eh.gate_inputs(2, bank.shape[0], prompt + steps, seed)
    ran = eh.run_engine_layer(engine, model.blocks[block].filter, x2, x1, v, prompt, steps)
    ref = eh.reference(bank, x2, x1, v, prompt, steps)
    own = eh.run_mor_layer(bank, x2, x1, v, prompt, steps)
    vs_ref, vs_mor = eh.worst(ran, ref), eh.worst(ran, own)
    assert vs_ref["nan"] == 0
    for key in ("filter", "prefill", "steps"):
        assert vs_ref[key] < ENGINE_TOL, (key, vs_ref)
        assert vs_mor[key] < MOR_TOL, (key, vs_mor)
    return vs_ref


@pytest.mark.parametrize("kind", ["order", "tol", "distill-tol", "distill-modes", "real"])
def test_striped_hyena_engine_runs_the_bank(engines, filters, kind):
    if kind == "distill-modes":  # the default above 2 modes: residues for the window metric
        bank = mor.distill(filters, modes=8).bank
    elif kind == "order":
        bank = mor.reduce(filters, 16)
    elif kind == "tol":
        bank = mor.reduce(filters, tol=1e-2, on_fail="flag")
    elif kind == "distill-tol":
        bank = mor.distill(filters, tol=1e-3).bank
    else:
        bank = _real_bank(16, 16, unequal=True)[np.arange(16).reshape(2, 8)]
    model = _engine_model("striped-hyena", 8, max(32, int(bank.modes.max())), 2)
    out = _load("striped-hyena", model, bank)
    assert out.padded.sum() == (out.state_size - bank.modes).sum()
    for block in (0, 1):
        _check_layer("striped-hyena", model, block, bank[block], seed=block)


@pytest.mark.parametrize("unequal", [False, True])
def test_vortex_engine_runs_real_pole_banks(engines, unequal):
    bank = _real_bank(16, 16, seed=1, unequal=unequal)[np.arange(16).reshape(2, 8)]
    model = _engine_model("vortex", 8, 16, 2)
    out = _load("vortex", model, bank)
    assert out.padded.sum() == (16 - bank.modes).sum()
    for block in (0, 1):
        _check_layer("vortex", model, block, bank[block], seed=block)


def test_long_prompt_vortex(engines):
    """Evo 2-style channels over a prompt of 8192 tokens."""
    bank = _real_bank(4, 16, seed=2)
    model = _engine_model("vortex", 4, 16, 1)
    _load("vortex", model, bank)
    _check_layer("vortex", model, 0, bank, prompt=8192, steps=16)


def test_pole_zero_padding_is_nan_in_the_engine(engines, filters):
    """Why the padding pole is not zero: the engine computes log(0) * 0 at t = 0."""
    bank = mor.reduce(filters[0], tol=1e-2, on_fail="flag")
    model = _engine_model("striped-hyena", 8, 32, 1)
    out = _load("striped-hyena", model, bank)
    state = {k: v.clone() for k, v in out.state_dict.items()}
    pad = (state["blocks.0.filter.residues"] == 0).all(-1)
    state["blocks.0.filter.poles"][pad] = 0
    model.load_state_dict(state, strict=False)
    kernel = model.blocks[0].filter.compute_filter(64, "cpu")[0]
    assert torch.isnan(kernel).any()
    model.load_state_dict(out.state_dict, strict=False)
    assert not torch.isnan(model.blocks[0].filter.compute_filter(64, "cpu")[0]).any()


def test_tiny_pole_export_in_the_engine(engines):
    """A tiny-pole bank exported by dropping and refitting runs as the refitted model."""
    bank = _with_tiny_pole(1.4e-12)
    out = export.to_striped_hyena_state_dict(bank, length=256)
    model = _engine_model("striped-hyena", 2, out.state_size, 1)
    model.load_state_dict(out.state_dict, strict=False)
    exported = export.from_striped_hyena_state_dict(out.state_dict)[0]
    _check_layer("striped-hyena", model, 0, exported, prompt=256, steps=16)


def test_whole_models_prefill_and_step(engines, filters):
    """The whole model (embedding, blocks, MLPs) after loading: finite logits, and the
    recurrent decode of the next token agrees with a full forward pass."""
    for engine, bank in (("striped-hyena", mor.reduce(filters, tol=1e-2, on_fail="flag")),
                         ("vortex", _real_bank(16, 16, unequal=True)[
                             np.arange(16).reshape(2, 8)])):
        model = _engine_model(engine, 8, 32 if engine == "striped-hyena" else 16, 2)
        _load(engine, model, bank)
        tokens = torch.randint(0, 16, (1, 65), generator=torch.Generator().manual_seed(0))
        with torch.no_grad(), eh.cpu_cuda_device():
            full, _ = model(tokens)
            params = (model.initialize_inference_params() if engine == "striped-hyena" else
                      model.initialize_inference_params(max_seqlen=128))
            _, params = model(tokens[:, :64], inference_params_dict=params)
            last, _ = model(tokens[:, 64:], inference_params_dict=params)
        assert torch.isfinite(full).all() and torch.isfinite(last).all()
        rel = (last[:, -1] - full[:, -1]).abs().max() / full[:, -1].abs().max()
        assert rel < 1e-4, (engine, float(rel))


def test_load_poles_residues_files(engines, tmp_path, filters):
    """StripedHyena's own loader reads the files (D loaded beside it by the state dict)."""
    bank = mor.reduce(filters, tol=1e-2, on_fail="flag")
    model = _engine_model("striped-hyena", 8, 32, 2)
    out = _load("striped-hyena", model, bank)
    want = [model.blocks[i].filter.compute_filter(256, "cpu")[0].clone() for i in (0, 1)]
    other = _engine_model("striped-hyena", 8, 32, 2)
    out.save_poles_residues(tmp_path)
    other.load_poles_residues(str(tmp_path))
    other.load_state_dict({f"blocks.{i}.filter.D": torch.load(tmp_path / f"approx_D_{i + 1}.pt")
                           for i in (0, 1)}, strict=False)
    for i in (0, 1):
        got = other.blocks[i].filter.compute_filter(256, "cpu")[0]
        torch.testing.assert_close(got, want[i], rtol=0, atol=1e-6)
        torch.testing.assert_close(other.blocks[i].filter.D, model.blocks[i].filter.D)


def test_reduce_an_evo2_layer(engines):
    """An Evo 2-style layer (16 real modes per channel) read from a Vortex state dict and
    reduced to 8 and 4 modes: errors beside the AAK bound; the reduced banks (complex poles
    from balanced truncation) run in StripedHyena, and Vortex refuses them."""
    layer = eh.evo2_layer(8, 16, seed=4)
    bank = export.from_vortex_state_dict(
        {f"blocks.3.filter.{k}": v for k, v in layer.items()})[3]
    np.testing.assert_array_equal(bank.modes, 16)
    length = 2048
    for modes in (8, 4):
        for source in (bank.impulse(length), bank.to_dense()):
            red = mor.reduce(source, modes=modes)
            assert red.modes.max() <= modes
            if isinstance(source, np.ndarray):
                assert np.all(red.info["hinf"] >= red.info["aak"] * (1 - 1e-6))
                assert np.all(red.info["hinf"] <= red.info["bt_bound"] * (1 + 1e-6))
        red = mor.reduce(bank.impulse(length), modes=modes)
        if np.any(red.compact()[0].imag != 0):
            with pytest.raises(ValueError, match="complex pole"):
                export.to_vortex_state_dict(red)
        model = _engine_model("striped-hyena", 8, modes, 1)
        _load("striped-hyena", model, red)
        _check_layer("striped-hyena", model, 0, red, prompt=length, steps=32)


def _real_pole_bank_checks(red, taps, most):
    """A real-pole reduction: every live pole real in (0, 1), at most ``most`` modes, the
    order equal to the modes, ``hinf`` at or above the AAK bound (which holds for any model of
    the order: a real-pole model sits above it), finite errors."""
    poles, residues, _ = red.compact()
    live = residues != 0
    assert np.all(poles.imag[live] == 0) and np.all((poles.real[live] > 0)
                                                    & (poles.real[live] < 1))
    assert red.modes.max() <= most
    np.testing.assert_array_equal(red.order, red.modes)
    assert np.all(red.info["hinf"] >= red.info["aak"] * (1 - 1e-6))
    assert np.all(np.isfinite(red.info["l2"])) and not red.info["failed"].any()
    np.testing.assert_allclose(mor.compare(taps, red).l2, red.info["l2"], rtol=1e-6)


def test_reduce_an_evo2_layer_to_real_poles_for_vortex(engines):
    """The Evo 2-style layer (16 real modes per channel, from a Vortex state dict) reduced to 8
    and 4 *real* modes (``method="modal", real_poles=True``): errors beside the AAK bound, and
    in l2 below balanced truncation's at the same modes; written with `to_vortex_state_dict`,
    loaded into the Vortex engine and matched (filter, FFT prefill, decode steps); a ``tol=``
    bank of unequal real modes too."""
    layer = eh.evo2_layer(8, 16, seed=4)
    bank = export.from_vortex_state_dict(
        {f"blocks.3.filter.{k}": v for k, v in layer.items()})[3]
    length = 2048
    taps = bank.impulse(length)
    for modes in (8, 4):
        red = mor.reduce(taps, modes=modes, method="modal", real_poles=True)
        _real_pole_bank_checks(red, taps, modes)
        np.testing.assert_array_equal(red.modes, modes)  # these channels get all their poles
        bt = mor.reduce(taps, modes=modes)
        assert np.median(red.info["l2"]) < np.median(bt.info["l2"])
        model = _engine_model("vortex", 8, modes, 1)
        out = _load("vortex", model, red)
        assert out.dropped.sum() == 0 and out.padded.sum() == 0
        _check_layer("vortex", model, 0, red, prompt=length, steps=32)
    # a tolerance: unequal real modes per channel, padded in the engine
    red = mor.reduce(taps, tol=1e-2, method="modal", real_poles=True, on_fail="best")
    _real_pole_bank_checks(red, taps, 24)
    assert red.modes.min() < red.modes.max()
    model = _engine_model("vortex", 8, int(red.modes.max()), 1)
    out = _load("vortex", model, red)
    np.testing.assert_array_equal(out.padded[0], red.modes.max() - red.modes)
    _check_layer("vortex", model, 0, red, prompt=length, steps=32)
    # refining the layer's own 16 real modes (init from the state dict) keeps them exact
    again = mor.reduce(taps, 16, method="modal", real_poles=True, init=bank)
    assert np.all(again.info["l2"] < 1e-9)


# ---------------------------------------------------------------------------- the command
def test_cli_export_writes_what_the_engines_load(engines, tmp_path, filters):
    src = tmp_path / "model.npz"
    np.savez(src, filters=filters)
    config = eh.striped_hyena_config(8, 32, 3)
    config["hyena_layer_idxs"] = [0, 2]  # block 1 is attention in this model
    (tmp_path / "sh.json").write_text(json.dumps(
        {k: v for k, v in config.items() if isinstance(v, (int, list, str))}))
    runner = CliRunner()
    # at most order 32 for the state_size 32: a filter that needs more keeps its best model
    done = runner.invoke(main, ["distill", str(src), "--tol", "1e-2", "--max-order", "32",
                                "--out", str(tmp_path / "bank.npz"), "--export",
                                "striped-hyena", "--export-config", str(tmp_path / "sh.json")])
    assert done.exit_code == 0, done.output
    assert "padded" in done.output and "state_size: 32" in done.output
    from safetensors.torch import load_file
    state = load_file(tmp_path / "bank.striped-hyena.safetensors")
    assert sorted({k.split(".")[1] for k in state}) == ["0", "2"]
    model = _engine_model("striped-hyena", 8, 32, 2)
    model.load_state_dict({k.replace("blocks.2.", "blocks.1."): v for k, v in state.items()},
                          strict=False)
    bank = mor.load(tmp_path / "bank.npz")
    for block in (0, 1):
        _check_layer("striped-hyena", model, block, bank[block], prompt=512, steps=16)
    # Vortex takes real poles only: with --method balanced (complex poles) that is refused
    # before any work (--export vortex implies --real-poles)
    done = runner.invoke(main, ["distill", str(src), "--order", "8", "--out",
                                str(tmp_path / "b2.npz"), "--export", "vortex", "--method",
                                "balanced"])
    assert done.exit_code == 2 and "--method balanced gives complex poles" in done.output
    assert not (tmp_path / "b2.npz").exists()
    done = runner.invoke(main, ["distill", str(src), "--order", "8", "--out",
                                str(tmp_path / "b3.npz"), "--export-config",
                                str(tmp_path / "sh.json")])
    assert done.exit_code == 2 and "--export-config" in done.output
    # what the config says is checked before any work: a size that cannot fit its
    # state_size, and a config the writer cannot read (no state_size)
    sh = ["--export", "striped-hyena", "--export-config", str(tmp_path / "sh.json")]
    for size, flag in ((["--modes", "33"], "'--modes'"), (["--order", "65"], "'--order'")):
        done = runner.invoke(main, ["distill", str(src), *size, "--out",
                                    str(tmp_path / "b4.npz"), *sh])
        assert done.exit_code == 2 and flag in done.output and "state_size 32" in done.output
    (tmp_path / "bad.json").write_text(json.dumps({"hidden_size": 8,
                                                   "hyena_layer_idxs": [0, 2]}))
    done = runner.invoke(main, ["distill", str(src), "--order", "8", "--out",
                                str(tmp_path / "b4.npz"), "--export", "striped-hyena",
                                "--export-config", str(tmp_path / "bad.json")])
    assert done.exit_code == 2 and "no state_size" in done.output, done.output
    assert not (tmp_path / "b4.npz").exists()


@pytest.mark.parametrize("size", [["--modes", "8"], ["--tol", "1e-2"]])
def test_cli_export_vortex_distills_real_poles(engines, tmp_path, size):
    """``mor distill --export vortex`` on an Evo 2-style model (2 layers of 8 channels of 16
    real modes, their taps at L = 2048): real poles fitted (``--export vortex`` implies
    ``--real-poles``), written as Vortex's state dict, loaded by the engine and matched, and the
    same bank as ``--real-poles`` alone writes."""
    layers = [export.from_vortex_state_dict({f"blocks.0.filter.{k}": v for k, v in
                                             eh.evo2_layer(8, 16, seed=s).items()})[0]
              for s in (5, 6)]
    src = tmp_path / "evo.npz"
    np.savez(src, filters=np.stack([b.impulse(2048) for b in layers]))
    config = eh.vortex_config(8, 24, 2)
    (tmp_path / "vortex.json").write_text(json.dumps(
        {k: v for k, v in config.items() if isinstance(v, (int, list, str))}))
    runner = CliRunner()
    done = runner.invoke(main, ["distill", str(src), *size, "--out", str(tmp_path / "bank.npz"),
                                "--export", "vortex", "--export-config",
                                str(tmp_path / "vortex.json")])
    assert done.exit_code == 0, done.output
    assert "modal 8" in done.output and "vortex state dict" in done.output
    bank = mor.load(tmp_path / "bank.npz")
    poles, residues, _ = bank.compact()
    live = residues != 0
    assert np.all(poles.imag[live] == 0) and np.all(poles.real[live] > 0)
    from safetensors.torch import load_file
    state = load_file(tmp_path / "bank.vortex.safetensors")
    assert state["blocks.1.filter.log_poles"].shape == (8, 24, 1)
    model = _engine_model("vortex", 8, 24, 2)
    result = model.load_state_dict(state, strict=False)
    assert not result.unexpected_keys
    for block in (0, 1):
        _check_layer("vortex", model, block, bank[block], prompt=2048, steps=16)
    alone = runner.invoke(main, ["distill", str(src), *size, "--real-poles", "--out",
                                 str(tmp_path / "alone.npz")])
    assert alone.exit_code == 0, alone.output
    np.testing.assert_array_equal(mor.load(tmp_path / "alone.npz").compact()[0], poles)
