"""The method interface (mor.methods.base): a method registered from outside mor runs through
`mor.reduce` and `mor.distill` (worker processes included); options are checked up front."""

import warnings

import numpy as np
import pytest
import toy_method  # noqa: F401 - registers "toy-truncate"

import mor
from mor.methods import available_methods, get_method, register
from mor.methods.base import PoleMethod


def exact_order_4():
    bank = mor.ModalSSM.from_compact([0.9 * np.exp(0.4j), 0.6 * np.exp(1.1j)], [1 + 0.2j, -0.4],
                                     0.3)
    return np.stack([bank.impulse(200), 0.5 * bank.impulse(200)])


def test_registered_method_runs_through_reduce():
    h = exact_order_4()
    assert "toy-truncate" in available_methods()
    fit = mor.reduce(h, 4, method="toy-truncate")
    np.testing.assert_array_equal(fit.order, [4, 4])
    assert np.all(fit.info["l2"] < 1e-9)
    assert np.all(fit.info["hinf"] >= fit.info["aak"] * (1 - 1e-9))
    assert fit.info["method"] == "toy-truncate"
    tol = mor.reduce(h, tol=1e-6, method="toy-truncate")
    np.testing.assert_array_equal(tol.order, [4, 4])


@pytest.mark.parametrize("workers", [1, 2])
def test_registered_method_runs_through_distill(workers):
    h = exact_order_4()
    out = mor.distill(h, 4, method="toy-truncate", workers=workers, chunk_size=1)
    np.testing.assert_array_equal(out.bank.order, [4, 4])
    assert list(out.report.columns["method"]) == ["toy-truncate"] * 2
    np.testing.assert_allclose(out.bank.impulse(200), h, atol=1e-9)


def test_options_are_checked_up_front():
    h = exact_order_4()
    with pytest.raises(ValueError, match=r"method 'prony' does not take 'dc_match'; it takes: "
                                         r"unstable, tail_weight"):
        mor.reduce(h, 4, method="prony", dc_match=True)
    with pytest.raises(ValueError, match="method 'toy-truncate' does not take 'rtol'"):
        mor.distill(h, 4, method="toy-truncate", rtol=1e-3)
    with pytest.raises(ValueError, match="'auto' .* does not take 'dc_match'"):
        mor.distill(h, 4, dc_match=True)  # a size in l2: modal
    with pytest.raises(ValueError, match="'auto' .* does not take 'max_iter'"):
        mor.distill(h, tol=0.1, max_iter=3)  # a tolerance: balanced
    with pytest.raises(ValueError, match="method 'balanced' does not take 'init_options'"):
        mor.reduce(h, 4, init_options={})
    with pytest.raises(ValueError, match="method 'pencil' does not take 'dc_match'"):
        mor.reduce(h, 4, method="modal", init="pencil", init_options={"dc_match": True})
    with pytest.raises(ValueError, match="unknown method 'nope'; available: .*toy-truncate"):
        mor.reduce(h, 4, method="nope")


def test_register_takes_named_method_classes():
    with pytest.raises(TypeError, match="Method subclass"):
        register(object)
    assert get_method("balanced").takes_statespace
    assert not get_method("toy-truncate").takes_statespace


def test_iterative_methods_report_iterations_and_convergence():
    h = exact_order_4() + 1e-3 * np.random.default_rng(0).standard_normal((2, 200))
    for method in ("modal", "irka"):
        fit = mor.reduce(h, 4, method=method)
        assert fit.info["iterations"].dtype.kind == "i" and np.all(fit.info["iterations"] >= 1)
        assert fit.info["converged"].dtype == bool
    short = mor.reduce(h, 4, method="modal", max_iter=1, limit_tail=False)
    np.testing.assert_array_equal(short.info["iterations"], [1, 1])
    assert not short.info["converged"].any()


def test_float32_guard_leaves_poles_outside_the_circle():
    """A pole beyond float32's range (``unstable="keep"``; Pade's found one in the long
    property run) overflowed in the rounding to complex64 (a ``RuntimeWarning``); poles on or
    outside the circle are left as they are, the stable ones rounded."""

    class Fixed(PoleMethod):
        name = "fixed-poles"

        @classmethod
        def from_fir(cls, h, max_order):
            return cls(h, max_order, "keep", lambda order, rows: (
                np.array([[1e40, 0.5 + 0.3j, 0.5 - 0.3j]])[:, :order], {}))

    h = np.array([[0.0, 1.0, 0.3, -0.2, 0.1]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        models = Fixed.from_fir(h, 3).model(np.array([3]))
    assert models.diagnostics["poles_rounded"][0]
    assert models.poles[0, 0] == 1e40
    assert models.poles[0, 1] == complex(np.complex64(0.5 + 0.3j))
