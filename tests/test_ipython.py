"""A loaded policy behaves like any TransformerLens model in IPython: string helpers,
generate (with its key/value cache), test_prompt, a name that says what it is, and the
checkpoint root and step conventions of `load`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformer_lens.utilities import test_prompt as tl_test_prompt  # not a pytest test

from interp.analysis.interventions import hybrid_name, interpolate, swap, swapped
from interp.core.numberline import VOCAB, get_task
from interp.core.sampling import greedy
from interp.core.tokenizer import char_tokenizer
from interp.errors import PolicyNotFound
from interp.runs import files
from interp.runs.store import load, load_checkpoint, trajectory

TASK = get_task("tiny")
PROMPTS = ["123=", "150=", "101="]


@pytest.fixture(scope="module")
def model(tiny_root):
    return load("tiny/beta0.1", root=tiny_root)


def test_tokenizer_ids_are_the_tasks():
    tok = TASK.hf_tokenizer()
    for text in ["305=", "305=303.", "0123456789=."]:
        assert tok(text).input_ids == TASK.encode(text)
    assert tok.decode(TASK.encode("305=303.")) == "305=303."
    assert (tok.eos_token_id, tok.pad_token_id, tok.bos_token) == (TASK.eos, TASK.pad, None)
    assert tok.encode("") == []  # no BOS
    assert tok(" 303.").input_ids == TASK.encode("303.")  # whitespace is dropped
    with pytest.raises(ValueError):
        char_tokenizer(("ab", "c"), 0, 1)


def test_string_helpers(model):
    assert model.cfg.default_prepend_bos is False
    assert model.to_tokens("305=").tolist() == [TASK.encode("305=")]
    assert model.to_str_tokens("305=") == ["3", "0", "5", "="]
    assert model.to_str_tokens(torch.tensor(TASK.encode("12."))) == ["1", "2", "."]
    assert model.to_string(model.to_tokens("305=303.")[0]) == "305=303."
    assert model.to_single_token("3") == VOCAB.index("3")
    assert model.to_single_token(".") == TASK.eos
    batch = model.to_tokens(["305=", "5="])
    assert batch[1].tolist() == TASK.encode("5=") + [TASK.pad, TASK.pad]  # padded on the right


@pytest.mark.parametrize("prompt", PROMPTS)
def test_generate_is_greedy_with_the_kv_cache(model, prompt):
    answer = greedy(model, TASK, [int(prompt[:-1])], TASK.max_new_tokens)
    expected = TASK.encode(prompt) + answer.tokens[0, : int(answer.lengths[0])].tolist()
    kw = dict(max_new_tokens=TASK.max_new_tokens, do_sample=False, verbose=False)
    toks = model.generate(model.to_tokens(prompt), use_past_kv_cache=True, **kw)
    assert toks[0].tolist()[: len(expected)] == expected
    assert model.generate(model.to_tokens(prompt), use_past_kv_cache=False, **kw).equal(toks)
    text = model.generate(prompt, **kw)  # string in, string out; EOS is a special token
    assert text == prompt + answer.text(TASK, 0).rstrip(".")


def test_generate_batched_strings(model):
    kw = dict(max_new_tokens=TASK.max_new_tokens, do_sample=False, verbose=False)
    out = model.generate(["123=", "5="], **kw)
    assert out[0] == model.generate("123=", **kw)


def test_test_prompt_runs(model, capsys):
    tl_test_prompt("123=", "123.", model)  # also `transformer_lens.utils.test_prompt`
    printed = capsys.readouterr().out
    assert "Ranks of the answer tokens" in printed and "('.'," in printed


def test_names_say_policy_step_and_swap(tiny_root, model):
    steps = load_checkpoint("tiny/beta1.0", root=tiny_root)
    b = load("tiny/beta1.0", root=tiny_root)
    assert model.cfg.model_name == f"tiny/beta0.1@step{steps.step}"
    hybrid = swap(model, b, "attention")
    assert hybrid.cfg.model_name == f"tiny/beta0.1[attention←tiny/beta1.0]@step{steps.step}"
    assert model.cfg.model_name == f"tiny/beta0.1@step{steps.step}"  # A keeps its name
    assert hybrid.to_tokens("12=").tolist() == [TASK.encode("12=")]  # and its tokenizer
    half = interpolate(model, b, ["attention", "pos"], 0.5)
    assert half.cfg.model_name.endswith("[attention+pos←tiny/beta1.0 α=0.5]" + f"@step{steps.step}")
    b0 = load("tiny/beta1.0", step=0, root=tiny_root)
    with swapped(model, b0, "attention") as h:
        assert h.cfg.model_name == (f"tiny/beta0.1[attention←tiny/beta1.0@step0]@step{steps.step}")
    assert model.cfg.model_name == f"tiny/beta0.1@step{steps.step}"
    assert hybrid_name("x", "y", []) == "x[←y]"


def test_names_change_no_numbers(tiny_root, model):
    b = load("tiny/beta1.0", root=tiny_root)
    toks = TASK.tokens("123=")
    plain = model(toks)
    with swapped(model, b, "attention") as h:
        assert torch.equal(h(toks), swap(model, b, "attention")(toks))
    assert torch.equal(model(toks), plain)


def test_negative_steps_and_nearest_neighbours(tiny_root):
    run_steps = [c.step for c in trajectory("tiny/beta1.0", root=tiny_root)]
    assert load("tiny/beta1.0", step=-1, root=tiny_root).cfg.model_name.endswith(
        f"@step{run_steps[-1]}"
    )
    assert load_checkpoint("tiny/beta1.0", step=-len(run_steps), root=tiny_root).step == 0
    with pytest.raises(PolicyNotFound, match=f"nearest saved: 0 and {run_steps[1]}"):
        load("tiny/beta1.0", step=1, root=tiny_root)
    with pytest.raises(PolicyNotFound, match=f"nearest saved: {run_steps[-1]}\\b"):
        load("tiny/beta1.0", step=run_steps[-1] + 1, root=tiny_root)
    with pytest.raises(PolicyNotFound, match="saved steps"):
        load("tiny/beta1.0", step=-len(run_steps) - 1, root=tiny_root)


def test_default_root_is_the_projects_not_the_cwd(monkeypatch, tmp_path):
    monkeypatch.delenv(files.ROOT_ENV, raising=False)
    repo = Path(files.__file__).resolve().parents[2]
    monkeypatch.chdir(tmp_path)
    assert files.default_root() == repo / "checkpoints"
    monkeypatch.setenv(files.ROOT_ENV, "rel")
    assert files.default_root() == tmp_path / "rel"


def test_unknown_policy_names_the_absolute_root(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(PolicyNotFound, match=str(tmp_path / "empty")):
        load("beta0.5", root=Path("empty"))


def test_load_works_from_a_notebooks_folder(tiny_root, tmp_path):
    """From another working directory, with $INTERP_CHECKPOINTS, in a fresh process."""
    env = {**os.environ, files.ROOT_ENV: str(tiny_root)}
    code = "from interp import load; print(load('tiny/ref', step=-1).cfg.model_name)"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().startswith("tiny/ref@step")
