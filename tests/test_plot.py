"""Each plot renders headless on a batch and on one filter, with labels and the right data."""

import io

import matplotlib
import numpy as np
import pytest

import mor
from mor import plot
from mor.demo import hyena_like_filters

matplotlib.use("Agg")


def _renders(fig):
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=40)
    assert buf.getbuffer().nbytes > 1000


def _labelled(ax):
    assert ax.get_xlabel() and ax.get_ylabel() and ax.get_title()


@pytest.fixture(scope="module")
def batch():
    return hyena_like_filters(6, 200, seed=3).reshape(2, 3, 200)


@pytest.mark.parametrize("which", ["batch", "one"])
def test_hankel_spectrum(batch, which):
    h = batch if which == "batch" else batch[0, 0]
    fig, ax = plot.hankel_spectrum(h, max_order=20)
    _renders(fig)
    _labelled(ax)
    bounds = mor.error_bounds(h, max_order=20)
    rel = (bounds.aak / bounds.hsv[..., :1]).reshape(-1, 21)
    x, y = ax.lines[0].get_data()
    np.testing.assert_array_equal(x, np.arange(21))
    np.testing.assert_allclose(y, np.median(rel, axis=0))
    assert ax.get_yscale() == "log"
    assert len(ax.lines) == 2 and ax.get_legend() is not None


def test_responses(batch):
    h = batch[0, 1]
    models = {"bt": mor.reduce(h, 8), "hankel": mor.reduce(h, 8, method="hankel")}
    fig, axes = plot.responses(h, models)
    _renders(fig)
    for ax in axes:
        _labelled(ax)
    k, taps = axes[0].lines[0].get_data()
    np.testing.assert_array_equal(taps[: 199], h[1:])
    _, hat = axes[0].lines[1].get_data()
    np.testing.assert_allclose(hat, models["bt"].impulse(250)[1:])
    w, err_db = axes[2].lines[0].get_data()
    exact = np.exp(-1j * np.outer(w * np.pi, np.arange(200))) @ h
    np.testing.assert_allclose(err_db, 20 * np.log10(np.abs(exact - models["bt"].freqresp(w * np.pi))),
                               atol=1e-9)
    with pytest.raises(ValueError, match="one filter"):
        plot.responses(batch, models)


@pytest.mark.parametrize("which", ["batch", "one"])
def test_poles(batch, which):
    ssm = mor.reduce(batch if which == "batch" else batch[0, 0], 6)
    fig, axes = plot.poles(ssm)
    _renders(fig)
    for ax in axes:
        _labelled(ax)
    drawn = axes[0].collections[0].get_offsets()
    p = ssm.poles.reshape(-1)[ssm.residues.reshape(-1) != 0]
    np.testing.assert_allclose(np.sort(drawn[:, 0]), np.sort(p.real))
    assert axes[1].get_yscale() == "log"


@pytest.mark.parametrize("which", ["batch", "one"])
def test_error_vs_order(batch, which):
    h = batch if which == "batch" else batch[0, 0]
    fig, ax = plot.error_vs_order(h, [2, 4, 8])
    _renders(fig)
    _labelled(ax)
    x, y = ax.lines[0].get_data()
    np.testing.assert_array_equal(x, [2, 4, 8])
    expected = [np.median(mor.reduce(h, d).info["hinf"]) for d in (2, 4, 8)]
    np.testing.assert_allclose(y, expected)
    assert [line.get_label() for line in ax.lines][-1].startswith("AAK")


def test_layer_heatmap():
    orders = np.array([[4, 8, -1], [16, 2, 6]])
    fig, ax = plot.layer_heatmap(orders)
    _renders(fig)
    _labelled(ax)
    shown = ax.images[0].get_array()
    assert shown.mask[0, 2] and shown[1, 0] == 16
    assert "1 without a value" in ax.get_title()
    fig, ax = plot.layer_heatmap(np.array([[1e-3, 1e-2]]), label="hinf", log=True)
    np.testing.assert_allclose(ax.images[0].get_array(), [[-3, -2]])
    with pytest.raises(ValueError, match="layers, channels"):
        plot.layer_heatmap(np.ones(3))


def test_draws_on_given_axes(batch):
    from matplotlib.figure import Figure
    fig = Figure()
    ax = fig.subplots()
    out_fig, out_ax = plot.hankel_spectrum(batch[0, 0], max_order=10, ax=ax)
    assert out_fig is fig and out_ax is ax


def test_hinf_vs_aak(batch):
    red = mor.reduce(batch, 6)
    fig, ax = plot.hinf_vs_aak(red.info["hinf"], red.info["aak"])
    _renders(fig)
    _labelled(ax)
    drawn = ax.collections[0].get_offsets()
    np.testing.assert_allclose(drawn[:, 0], red.info["aak"].ravel())
    np.testing.assert_allclose(drawn[:, 1], red.info["hinf"].ravel())
    assert np.all(drawn[:, 1] >= drawn[:, 0] * (1 - 1e-6))


def test_hankel_spectrum_draws_flagged_filters_apart(batch):
    """Flagged filters leave the median and band and are drawn in red, named by index; a filter
    with NaN taps cannot be drawn and is named as such (no ValueError)."""
    h = batch.copy()
    h[1, 2, 9] = np.nan
    flagged = np.zeros((2, 3), dtype=bool)
    flagged[0, 1] = True
    fig, ax = plot.hankel_spectrum(h, max_order=20, flagged=flagged)
    _renders(fig)
    plain = np.ones((2, 3), dtype=bool)
    plain[0, 1] = plain[1, 2] = False
    bounds = mor.error_bounds(batch[plain], max_order=20)
    _, y = ax.lines[0].get_data()
    np.testing.assert_allclose(y, np.median(bounds.aak / bounds.hsv[:, :1], axis=0))
    labels = [line.get_label() for line in ax.lines]
    assert labels[2] == "flagged: (0, 1)" and ax.lines[2].get_color() == "red"
    one = mor.error_bounds(batch[0, 1], max_order=20)
    np.testing.assert_allclose(ax.lines[2].get_data()[1], one.aak / one.hsv[0])
    assert labels[3] == "not drawn (NaN or Inf taps): (1, 2)"
    assert "2 flagged" in ax.get_title()
    assert {t.get_text() for t in ax.get_legend().get_texts()} >= set(labels[2:])


def test_hankel_spectrum_names_filters_by_the_given_index(batch):
    h = batch[1].copy()
    h[2, 0] = np.inf
    fig, ax = plot.hankel_spectrum(h, max_order=10, index=[[1, 0], [1, 1], [1, 2]])
    assert ax.lines[-1].get_label().endswith(": (1, 2)")


@pytest.mark.parametrize("h", [np.ones((3, 1)), np.full((2, 4), np.nan), np.array([np.nan])])
def test_hankel_spectrum_without_anything_to_draw(h):
    """Filters of length 1 (order 0 is exact) or only non-finite filters: said, not raised."""
    fig, ax = plot.hankel_spectrum(h, flagged=np.ones(h.shape[:-1], dtype=bool))
    _renders(fig)
    _labelled(ax)
    said = " ".join(t.get_text() for t in ax.texts)
    assert ("L = 1" in said) if h.shape[-1] == 1 else ("no filter" in said)
    assert ax.get_legend() is not None and "flagged" in ax.get_title()


def test_hankel_spectrum_checks_max_order(batch):
    with pytest.raises(ValueError, match="max_order"):
        plot.hankel_spectrum(batch, max_order=-1)
