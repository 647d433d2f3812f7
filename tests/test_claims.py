"""The verdict rules of interp.analysis.claims on hand-made numbers: one rule each, shared by
the per-comparison reports and the paper."""

import pytest

from interp.analysis import claims as rules


@pytest.mark.parametrize(
    "ck,co,tames,want",
    [
        (0.6, 0.9, True, "holds"),
        (0.6, 0.1, True, "partly holds"),
        (0.1, 0.2, True, "does not hold"),
        (0.1, 0.2, False, "holds"),
        (0.8, 1.0, False, "does not hold"),
        (None, 0.9, True, "undetermined"),
        (0.5, 0.5, True, "holds"),  # half the gap counts as closing it
    ],
)
def test_swap_verdict(ck, co, tames, want):
    assert rules.swap_verdict(ck, co, tames) == want


@pytest.mark.parametrize(
    "frac,share,want",
    [
        (0.25, 0.63, "holds"),
        (0.49, 0.63, "partly holds"),
        (0.70, 0.63, "does not hold"),
        # attention under half the parameters (e.g. --d-mlp 512): never "holds", in the
        # surgery report and in the paper alike
        (0.25, 0.40, "partly holds"),
    ],
)
def test_attention_share_verdict(frac, share, want):
    assert rules.attention_share_verdict(frac, share) == want


def test_f3_f4_need_their_premise():
    assert not rules.premise_holds(0.10, 0.06)
    assert rules.premise_holds(0.50, 0.10)
    assert rules.attention_claim_verdict(0.02, 3.0, premise=False) == "undetermined"
    assert rules.attention_claim_verdict(0.02, 3.0, premise=True) == "holds"
    assert rules.attention_claim_verdict(0.02, 1.2, premise=True) == "partly holds"
    assert rules.attention_claim_verdict(0.30, None, premise=True) == "does not hold"
    assert rules.surgery_claim_verdict("holds", "holds", premise=False) == "undetermined"
    assert rules.surgery_claim_verdict("holds", "holds", premise=True) == "holds"
    assert rules.surgery_claim_verdict("holds", "does not hold", premise=True) == "partly holds"
    assert rules.surgery_claim_verdict("does not hold", "does not hold", True) == "does not hold"
    assert rules.surgery_claim_verdict("partly holds", "undetermined", True) == "undetermined"


def test_f1_f2_rules():
    went = {"went_ood": True, "came_back": False, "rising": True}
    back = {"went_ood": True, "came_back": True, "rising": True}
    never = {"went_ood": False, "came_back": False, "rising": None}
    assert rules.no_grokking_verdict([never, never]) == "undetermined"
    assert rules.no_grokking_verdict([went, never]) == "holds"
    assert rules.no_grokking_verdict([went, back]) == "does not hold"
    assert rules.no_grokking_verdict([went, went | {"rising": False}]) == "partly holds"
    assert rules.one_band_verdict(0.3, True) == "holds"
    assert rules.one_band_verdict(0.7, True) == "partly holds"
    assert rules.one_band_verdict(None, False) == "does not hold"
    assert rules.kept_rising([0, 1], [1.0, 2.0]) is None  # fewer than MIN_EPOCHS points
    assert rules.kept_rising([0, 1, 2], [1.0, 1.0, 1.0]) is True  # flat: did not fall
    assert rules.kept_rising([0, 1, 2], [3.0, 2.0, 1.0]) is False


def test_combined_verdict_counts_each_seed():
    assert rules.combined_verdict([]) == "undetermined"
    assert rules.combined_verdict(["holds", "holds"]) == "holds"
    assert (
        rules.combined_verdict(["holds", "undetermined", "holds"])
        == "holds in 2 of 3 seeds, undetermined in 1 of 3 seeds"
    )
