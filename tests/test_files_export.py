"""Reading filter files and exporting banks to inference engines' conventions."""

import numpy as np
import pytest

import mor
from mor import export
from mor.demo import hyena_like_filters
from mor.files import read_filters


@pytest.fixture()
def filters():
    return hyena_like_filters(6, 64, seed=1).reshape(2, 3, 64)


def test_npy_npz(tmp_path, filters):
    np.save(tmp_path / "f.npy", filters.astype(np.float32))
    np.testing.assert_allclose(read_filters(tmp_path / "f.npy"), filters, rtol=1e-6)
    np.savez(tmp_path / "f.npz", filters=filters, other=np.ones(3))
    np.testing.assert_array_equal(read_filters(tmp_path / "f.npz"), filters)
    np.savez(tmp_path / "g.npz", a=filters, b=np.ones(3))
    with pytest.raises(ValueError, match="pass a key"):
        read_filters(tmp_path / "g.npz")
    with pytest.raises(ValueError, match="no array matches key 'c'"):
        read_filters(tmp_path / "g.npz", "c")
    np.testing.assert_array_equal(read_filters(tmp_path / "g.npz", "a"), filters)


def test_safetensors_glob_stacks_layers(tmp_path, filters):
    from safetensors.numpy import save_file

    save_file({f"layers.{i}.filter": filters[i] for i in range(2)} | {"emb": np.ones((4, 2))},
              tmp_path / "m.safetensors")
    np.testing.assert_array_equal(read_filters(tmp_path / "m.safetensors", "layers.*.filter"),
                                  filters)
    with pytest.raises(ValueError, match="differ in shape"):
        read_filters(tmp_path / "m.safetensors", "*")


def test_torch_state_dict(tmp_path, filters):
    torch = pytest.importorskip("torch")
    state = {f"blocks.{i}.mixer.h": torch.tensor(filters[i]) for i in range(2)}
    torch.save(state, tmp_path / "m.pt")
    np.testing.assert_allclose(read_filters(tmp_path / "m.pt", "blocks.*.mixer.h"), filters)


def test_bad_files(tmp_path):
    (tmp_path / "x.npz").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="not a readable"):
        read_filters(tmp_path / "x.npz")
    (tmp_path / "x.safetensors").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="not a readable"):
        read_filters(tmp_path / "x.safetensors")
    (tmp_path / "x.txt").write_text("1 2 3")
    with pytest.raises(ValueError, match="unknown filter file type"):
        read_filters(tmp_path / "x.txt")
    np.save(tmp_path / "c.npy", np.ones(4) * 1j)
    with pytest.raises(ValueError, match="real array"):
        read_filters(tmp_path / "c.npy")
    with pytest.raises(FileNotFoundError):
        read_filters(tmp_path / "missing.npy")


def test_conventions_agree(filters):
    bank = mor.reduce(filters, 8)
    taps = bank.impulse(64)
    sh = export.to_striped_hyena(bank)
    np.testing.assert_allclose(export.striped_hyena_kernel(sh["poles"], sh["residues"], sh["D"],
                                                           64), taps, atol=1e-12)
    lp = export.to_log_poles(bank)
    assert lp["log_poles"].dtype == np.float64 and lp["residues"].shape[-1] == 2
    for back in (export.from_striped_hyena(**sh), export.from_log_poles(**lp)):
        np.testing.assert_allclose(back.impulse(64), taps, atol=1e-12)


def test_pole_at_zero_cannot_be_exported():
    bank = mor.ModalSSM.from_compact([0.0, 0.5], [1.0, 1.0], 0.0)
    with pytest.raises(ValueError, match="pole at zero"):
        export.to_striped_hyena(bank)


def test_glob_keys_stack_layers_in_numeric_order(tmp_path):
    layers = {f"layers.{i}.filter": np.full((2, 8), float(i)) for i in (0, 1, 2, 10, 11)}
    path = tmp_path / "model.npz"
    np.savez(path, **layers)
    stacked = read_filters(path, key="layers.*.filter")
    np.testing.assert_array_equal(stacked[:, 0, 0], [0, 1, 2, 10, 11])


def test_striped_hyena_kernel_of_no_taps():
    # found by tests/test_robustness.py: length 0 raised IndexError (no tap 0 for the skip term)
    assert export.striped_hyena_kernel([0.5], [2.0], -2.0, 0).shape == (0,)
    with pytest.raises(ValueError, match="length"):
        export.striped_hyena_kernel([0.5], [2.0], -2.0, -1)


def test_torch_state_dict_dtypes(tmp_path):
    # found by tests/test_robustness.py: complex tensors were cast to their real part (with a
    # UserWarning only) and bool tensors taken, where .npy and .safetensors refuse both
    torch = pytest.importorskip("torch")
    for tensor in (torch.tensor([[1 + 2j, 3 + 0j]]), torch.tensor([[True, False]])):
        torch.save({"h": tensor}, tmp_path / "x.pt")
        with pytest.raises(ValueError, match="must be a real array"):
            read_filters(tmp_path / "x.pt")
    torch.save({"h": torch.tensor([[1.5, -2.0]], dtype=torch.bfloat16)}, tmp_path / "x.pt")
    np.testing.assert_array_equal(read_filters(tmp_path / "x.pt"), [[1.5, -2.0]])
