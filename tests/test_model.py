import torch

from interp.core.model import ModelSpec, build_model, param_count


def test_case_study_parameter_counts():
    m = build_model(ModelSpec())
    total = param_count(m)
    attention = sum(p.numel() for n, p in m.named_parameters() if ".attn." in n)
    assert total == 104_461  # "about 104K" (§3.3 footnote)
    assert attention == 66_048  # "about 65K"
    assert (
        m.cfg.n_layers == 1 and m.cfg.d_model == 128 and m.cfg.n_heads == 4 and m.cfg.d_head == 32
    )


def test_same_seed_same_weights_and_rng_untouched():
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = build_model(ModelSpec(), seed=7)
    after = torch.rand(1)
    assert torch.equal(before, after)  # initialisation does not consume the global RNG
    b = build_model(ModelSpec(), seed=7)
    c = build_model(ModelSpec(), seed=8)
    for (n, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters()):
        assert torch.equal(pa, pb), n
    assert any(not torch.equal(pa, pc) for pa, pc in zip(a.parameters(), c.parameters()))


def test_two_layer_override():
    m = build_model(ModelSpec(n_layers=2, d_model=64, n_heads=2, d_mlp=64))
    assert m.cfg.n_layers == 2 and m.cfg.d_head == 32
    assert m(torch.tensor([[1, 0, 5, 10]])).shape == (1, 4, 13)
