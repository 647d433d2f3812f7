"""Every ```python block of the README runs, as pasted into a fresh IPython.

Each block is executed in a namespace of its own against the tiny trained policies: the
checkpoint root comes from $INTERP_CHECKPOINTS, and the README's policy names (the
`make report` pair) are read as the tiny root's, the one change made to the text.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"^```python\n(.*?)^```", README.read_text(), flags=re.S | re.M)
# The README's policies -> the tiny root's (conftest.tiny_root); "beta1" resolves as beta1.0.
AS_TINY = {"beta0.01": "tiny/beta0.1", "beta1.0": "tiny/beta1.0", "beta1": "tiny/beta1.0"}


def as_tiny(code: str) -> str:
    return re.sub(r"([\"'])(beta[0-9.]+)\1", lambda m: repr(AS_TINY[m.group(2)]), code)


def test_the_readme_has_python_blocks():
    assert len(BLOCKS) >= 2


@pytest.mark.parametrize("code", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_readme_block_runs(code, tiny_root, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("INTERP_CHECKPOINTS", str(tiny_root))
    monkeypatch.chdir(tmp_path)  # not the repository: the README says any directory works
    exec(compile(as_tiny(code), str(README), "exec"), {"__name__": "__readme__"})
