"""Shared fixtures: tiny models and tiny trained runs, built from config (never downloaded)."""

from __future__ import annotations

import os

import pytest
import torch

from interp.core.model import ModelSpec
from interp.runs.ensure import ensure_trained
from interp.runs.names import PolicyKey

torch.set_num_threads(min(2, os.cpu_count() or 1))

TINY_MODEL = ModelSpec(n_layers=1, d_model=32, n_heads=2, d_mlp=32)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory: pytest.TempPathFactory):
    """A checkpoint root with tiny/ref, tiny/beta0.1 and tiny/beta1.0 trained (a few seconds)."""
    root = tmp_path_factory.mktemp("ckpts")
    keys = [PolicyKey("tiny", "dpo", b, 0) for b in (0.1, 1.0)]
    ensure_trained(keys, root, TINY_MODEL, 4, progress=False, announce=False, exact_threshold=1e-2)
    return root
