"""Token attribution against a model whose dependency is known by construction."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from credo.methods.attribution import attention_attribution, integrated_gradients, target_score


class LagCopyModel(nn.Module):
    """A causal 'LM' whose output at position p reads only the token at p - lag (p itself when
    p < lag): every layer and head attends one-hot there, and the logits are a nonlinear function of
    that token's embedding alone."""

    def __init__(self, vocab=11, dim=8, lag=2, layers=2, heads=3, decoy=False):
        super().__init__()
        torch.manual_seed(0)
        self.embed = nn.Embedding(vocab, dim)
        self.hidden = nn.Linear(dim, 16)
        self.out = nn.Linear(16, vocab)
        self.lag, self.layers, self.heads, self.decoy = lag, layers, heads, decoy

    def get_input_embeddings(self):
        return self.embed

    def forward(self, input_ids=None, inputs_embeds=None, output_attentions=False):
        x = self.embed(input_ids) if inputs_embeds is None else inputs_embeds
        batch, length, _ = x.shape
        attn = torch.zeros(length, length)
        for p in range(length):
            attn[p, p - self.lag if p >= self.lag else p] = 1.0
        logits = self.out(torch.tanh(self.hidden(attn @ x)))
        if self.decoy:  # report uniform causal attention, though the computation reads one token
            attn = torch.tril(torch.ones(length, length))
            attn = attn / attn.sum(-1, keepdim=True)
        attentions = tuple(attn.expand(batch, self.heads, length, length) for _ in range(self.layers))
        return SimpleNamespace(logits=logits, attentions=attentions if output_attentions else None)


IDS = torch.tensor([3, 1, 4, 1, 5, 9, 2, 6])


@pytest.mark.parametrize("position", [2, 5, 7])
def test_attention_points_at_the_read_token(position):
    scores = attention_attribution(LagCopyModel(), IDS, position)
    expected = torch.zeros(len(IDS))
    expected[position - 2] = 1.0
    torch.testing.assert_close(scores, expected)


@pytest.mark.parametrize("target", ["logprob", "logit"])
@pytest.mark.parametrize("position", [3, 6])
def test_integrated_gradients_find_the_dependency_and_are_complete(position, target):
    model = LagCopyModel()
    scores = integrated_gradients(model, IDS, position, target_token=4, steps=128, target=target)
    others = torch.ones(len(IDS), dtype=torch.bool)
    others[position - 2] = False
    assert (scores[others] == 0).all()
    assert scores[position - 2] != 0
    # completeness: the scores add up to f(x) - f(baseline)
    with torch.no_grad():
        zeros = torch.zeros(1, len(IDS), 8)
        logits = model(inputs_embeds=zeros).logits[0, position]
        f0 = torch.log_softmax(logits, -1)[4] if target == "logprob" else logits[4]
    total = target_score(model, IDS, position, 4, target) - float(f0)
    assert abs(float(scores.sum()) - total) < 1e-3 * max(1.0, abs(total))


def test_bad_inputs():
    model = LagCopyModel()
    with pytest.raises(ValueError, match="position must lie"):
        attention_attribution(model, IDS, 8)
    with pytest.raises(TypeError, match="input_ids must be an integer"):
        integrated_gradients(model, IDS.float(), 3, 0)
    with pytest.raises(ValueError, match="target_token must lie"):
        integrated_gradients(model, IDS, 3, 99)
    with pytest.raises(ValueError, match="target must be"):
        integrated_gradients(model, IDS, 3, 0, target="prob")


def test_attention_can_mislead_where_integrated_gradients_do_not():
    model = LagCopyModel(decoy=True)
    attention = attention_attribution(model, IDS, 6)
    torch.testing.assert_close(attention[:7], torch.full((7,), 1 / 7))
    ig = integrated_gradients(model, IDS, 6, target_token=2)
    assert ig.abs().argmax() == 4 and (ig[torch.arange(8) != 4] == 0).all()


def test_on_a_randomly_initialised_gpt2():
    transformers = pytest.importorskip("transformers")
    config = transformers.GPT2Config(n_layer=2, n_head=2, n_embd=16, vocab_size=50, n_positions=16)
    config._attn_implementation = "eager"
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(config).eval()
    ids = torch.tensor([5, 7, 11, 13, 17, 19])
    attention = attention_attribution(model, ids, 3)
    assert attention.shape == (6,) and (attention[4:] == 0).all()
    torch.testing.assert_close(attention.sum(), torch.tensor(1.0))
    ig = integrated_gradients(model, ids, 3, target_token=8, steps=256)
    assert (ig[4:] == 0).all()  # causal: later tokens cannot matter
    with torch.no_grad():
        f0 = torch.log_softmax(model(inputs_embeds=torch.zeros(1, 6, 16)).logits[0, 3], -1)[8]
    total = target_score(model, ids, 3, 8) - float(f0)
    assert abs(float(ig.sum()) - total) < 0.02 * max(1.0, abs(total))
