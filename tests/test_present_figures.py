"""Figure rules: difference maps on a symmetric scale fitted to the data, axis titles on
every heatmap, distinct head colours, and patching panels with one colour meaning."""

import numpy as np
import torch

from interp.present.figures.common import attention_grid
from interp.present.figures.patching import Scale, patch_heatmaps, share_scale
from interp.present.figures.scales import QUALITATIVE, symmetric_limits


def test_symmetric_limits_fit_the_largest_difference():
    lo, hi = symmetric_limits([np.array([0.01, -0.05]), np.array([[0.03, np.nan]])])
    assert hi == 0.05 and lo == -hi
    assert symmetric_limits([np.zeros(3)])[1] > 0  # an all-zero map still has a scale


def test_difference_rows_share_one_fitted_diverging_scale():
    rng = np.random.default_rng(0)
    pat = rng.dirichlet(np.ones(3), size=(1, 2, 3))  # [layer, head, query, key]
    diff = 0.04 * (pat - pat[:, ::-1])
    fig = attention_grid({"A": pat, "A − B": diff}, ["a", "b", "c"], diverging={"A − B"})
    axes = [ax for ax in fig.axes if ax.get_title()]
    m = float(np.abs(diff).max())
    for ax in axes:
        assert ax.get_xlabel() == "key" and ax.get_ylabel() == "query"
        lo, hi = ax.collections[0].get_clim()
        if "−" in ax.get_title():
            assert np.isclose(hi, m) and np.isclose(lo, -m)
        else:
            assert (lo, hi) == (0, 1)
    labels = [ax.get_ylabel() for ax in fig.axes if not ax.get_title()]
    assert "attention" in labels and any("Δ attention" in s for s in labels)


def test_qualitative_palette_is_distinct_and_avoids_a_b_ref():
    from interp.present.figures.common import COLORS

    assert len(set(QUALITATIVE)) == len(QUALITATIVE)
    assert not set(QUALITATIVE) & set(COLORS.values())


def test_patch_panels_have_axis_titles_and_one_colour_direction():
    g = torch.tensor([[0.1, 0.9], [0.5, 0.0]])
    kl = torch.tensor([[2.0, 0.1], [1.0, 3.0]])
    scales = {
        "gap": share_scale("share of gap closed", [g]),
        "kl": Scale("KL", 0.0, 3.0, lower_is_better=True, percent=False),
    }
    fig = patch_heatmaps({"gap": g, "kl": kl}, ["r0", "r1"], ["p0", "p1"], scales)
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert all(ax.get_xlabel() for ax in panels) and panels[0].get_ylabel()
    assert [t.get_text() for t in panels[1].get_yticklabels()] == []  # row labels once
    cmaps = [ax.collections[0].get_cmap().name for ax in panels]
    assert cmaps == ["viridis", "viridis_r"]  # yellow = like the donor in both
    bars = [ax for ax in fig.axes if not ax.get_title()]
    assert {ax.get_xlabel() for ax in bars} == {"share of gap closed", "KL"}
    width_px = fig.get_figwidth() * 110
    assert width_px <= 1000  # embedded at 110 dpi: no downscaling in a 1000 px window
