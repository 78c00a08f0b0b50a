"""The op allow-list: pure tensor programs pass; each family of dangerous ops is refused by name.

Programs are exported here with torch.export exactly as harness.submit does (non-strict, eval
shape). The seeds pass through the real path in tests/seeds (every shrunk seed must score, so
its graph passed this check); the kernel swaps are checked in tests/kernels.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from evolve.evaluation.allowlist import ATEN, check_program

V, T, B = 32, 8, 2


def export(model: nn.Module):
    model.eval()
    with torch.no_grad():
        return torch.export.export(model, (torch.randint(0, V, (B, T)),), strict=False)


class Block(nn.Module):
    """A small causal transformer block using the common ops of a GPT forward."""

    def __init__(self, dim=16):
        super().__init__()
        self.emb = nn.Embedding(V, dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, V)
        self.drop = nn.Dropout(0.1)

    def forward(self, x):
        h = self.norm(self.emb(x))
        q, k, v = self.qkv(h).view(B, T, 3, 2, 8).unbind(2)
        a = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                           is_causal=True)
        h = h + self.drop(a.transpose(1, 2).reshape(B, T, 16))
        h = F.rms_norm(F.gelu(h) * torch.sigmoid(h), (16,))
        return 15 * torch.tanh(self.head(h).float() / 15)


def test_a_pure_transformer_block_passes():
    assert check_program(export(Block())) is None


def test_the_groups_are_real_aten_ops():
    missing = [name for name in ATEN if not hasattr(torch.ops.aten, name)]
    assert not missing, missing


class FromFile(nn.Module):
    def forward(self, x):
        raw = torch.from_file("/etc/hostname", shared=False, size=4, dtype=torch.uint8)
        return torch.zeros(B, T, V) + raw.float().sum()


class Random(nn.Module):
    def forward(self, x):
        return torch.randn(B, T, V)


class Strided(nn.Module):
    def forward(self, x):
        return torch.as_strided(x.float(), (B, T - 1), (T, 1), 1).sum() + torch.zeros(B, T, V)


class Uninitialised(nn.Module):
    def forward(self, x):
        return torch.empty(B, T, V)


class WritesBuffer(nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("seen", torch.zeros(V))

    def forward(self, x):
        self.seen.add_(1.0)
        return torch.zeros(B, T, V) + self.seen


class DropoutOn(nn.Module):
    def forward(self, x):
        return F.dropout(torch.zeros(B, T, V), 0.5, training=True)


class AttentionDropout(nn.Module):
    def forward(self, x):
        q = torch.ones(B, 1, T, 4)
        return F.scaled_dot_product_attention(q, q, q, dropout_p=0.5).sum() + torch.zeros(B, T, V)


@torch.library.custom_op("genome_test::peek", mutates_args=())
def peek(x: torch.Tensor) -> torch.Tensor:
    return x.clone()


@peek.register_fake
def _(x):
    return torch.empty_like(x)


class CustomOp(nn.Module):
    def forward(self, x):
        return torch.zeros(B, T, V) + peek(x.float()).sum()


@torch.library.register_fake("aten::from_file")
def _fake_from_file(filename, shared=None, size=0, *, dtype=None, layout=None, device=None,
                    pin_memory=None):
    return torch.empty(size, dtype=dtype or torch.float32)


class Bitcast(nn.Module):
    def __init__(self):
        super().__init__()
        self.packed = torch.zeros(4, dtype=torch.float64)

    def forward(self, x):
        return torch.zeros(B, T, V) + self.packed.view(torch.float16).float().sum()


@pytest.mark.parametrize("model, words", [
    (Bitcast(), "reinterprets bits"),
    (FromFile(), "aten::from_file"),
    (Random(), "aten::randn"),
    (Strided(), "aten::as_strided"),
    (Uninitialised(), "aten::empty"),
    (WritesBuffer(), "writes"),
    (DropoutOn(), "dropout"),
    (AttentionDropout(), "dropout_p"),
    (CustomOp(), "genome_test::peek"),
])
def test_a_denied_family_is_refused_by_name(model, words):
    problem = check_program(export(model))
    assert problem and words in problem, problem


def test_nested_graphs_are_walked():
    class Autocast(nn.Module):
        def forward(self, x):
            with torch.autocast("cpu", dtype=torch.bfloat16):    # a wrap_with_autocast subgraph
                noise = torch.randn(B, T, V)
            return noise.float() + x.unsqueeze(-1)

    problem = check_program(export(Autocast()))
    assert problem and "aten::randn" in problem, problem


def test_a_branch_on_a_tensor_is_refused():
    """cond makes the graph's cost depend on its input (adversary round 16 ran a cheap branch
    on the batch the scorer timed): refused by name, even with two pure branches."""
    class Branch(nn.Module):
        def forward(self, x):
            def yes(x):
                return torch.zeros(B, T, V) + x.unsqueeze(-1)

            def no(x):
                return torch.ones(B, T, V) + x.unsqueeze(-1)
            return torch.cond(x.sum() > 0, yes, no, (x,))

    problem = check_program(export(Branch()))
    assert problem and "cond" in problem, problem


class _IntCarrier(nn.Module):
    """Learned-looking values as integer literals: n nodes torch.full((1,), code)."""

    def __init__(self, n: int, code: int):
        super().__init__()
        self.n, self.code = n, code

    def forward(self, x):
        t = torch.cat([torch.full((1,), self.code + i, dtype=torch.int64) for i in range(self.n)])
        return x + t.sum().to(x.dtype)


def test_the_information_in_literals_is_bounded_not_only_floats():
    from evolve.evaluation.allowlist import MAX_LITERAL_BITS

    assert check_program(export(_IntCarrier(8, 2 ** 55))) is None       # a few big ints: fine
    n = MAX_LITERAL_BITS // 57 + 1                                       # 57 bits each
    problem = check_program(export(_IntCarrier(n, 2 ** 55)))
    assert problem and "literal arguments hold" in problem, problem


class _RefCarrier(nn.Module):
    """Values chosen by reference: one cat over n picks among 16 one-element buffers."""

    def __init__(self, n: int):
        super().__init__()
        for i in range(16):
            self.register_buffer(f"lv{i}", torch.tensor([float(i)]))
        self.codes = [(i * 7) % 16 for i in range(n)]

    def forward(self, x):
        levels = [getattr(self, f"lv{i}") for i in range(16)]
        return x.float() + torch.cat([levels[c] for c in self.codes]).sum()


def test_references_chosen_inside_a_list_count_as_information():
    from evolve.evaluation.allowlist import MAX_LITERAL_BITS

    assert check_program(export(_RefCarrier(8))) is None
    problem = check_program(export(_RefCarrier(MAX_LITERAL_BITS // 5)))
    assert problem and "literal arguments hold" in problem, problem


class _Decodes(nn.Module):
    """One use of a weight (or of an input) by an op that turns numbers into digits."""

    def __init__(self, mode: str):
        super().__init__()
        self.mode = mode
        self.w = nn.Parameter(torch.randn(V, 4))
        self.register_buffer("packed", torch.zeros(V, 4, dtype=torch.int64))
        self.register_buffer("mask", torch.ones(T, T, dtype=torch.bool))

    def forward(self, x):
        e = self.w[x]
        if self.mode == "floor":
            e = torch.floor(e * 3)
        elif self.mode == "floor_under_autocast":        # inside a wrap_with_autocast subgraph
            with torch.autocast("cpu", dtype=torch.bfloat16):
                e = torch.floor(self.w[x] * 3)
        elif self.mode == "div_floor":
            e = e + torch.div(self.packed[x], 4, rounding_mode="floor").float()
        elif self.mode == "remainder":
            e = e + torch.remainder(self.packed[x], 4).float()
        elif self.mode == "bitwise_and":
            e = e + torch.bitwise_and(self.packed[x], 3).float()
        elif self.mode == "to_integer":
            e = e + (e * 4).long().float()
        elif self.mode == "inputs":                      # allowed: hashing and rounding inputs
            e = e + (x % 3).unsqueeze(-1) + torch.floor(x.float() / 2).unsqueeze(-1)
        elif self.mode == "inputs_under_autocast":
            with torch.autocast("cpu", dtype=torch.bfloat16):
                e = e + (x % 3).unsqueeze(-1)
        elif self.mode == "integer_arithmetic":          # allowed: charged per bit instead
            e = e + (self.packed[x] * 3 + 1).float()
        elif self.mode == "bool_mask":                   # allowed: a bit per element
            e = e + torch.logical_and(self.mask, self.mask).float().sum()
        return e.sum(-1, keepdim=True) + torch.zeros(B, T, V)


@pytest.mark.parametrize("mode, op", [("floor", "floor"), ("floor_under_autocast", "floor"),
                                      ("div_floor", "div"), ("remainder", "remainder"),
                                      ("bitwise_and", "bitwise_and"), ("to_integer", "to")])
def test_digits_may_not_be_taken_from_values_computed_from_the_weights(mode, op):
    """Adversary round 20 decoded 2-bit weights packed 32 to an int64 with these ops."""
    problem = check_program(export(_Decodes(mode)))
    assert problem and f"op aten::{op} is applied to a value computed from the weights" in problem


@pytest.mark.parametrize("mode", ["inputs", "inputs_under_autocast", "integer_arithmetic",
                                  "bool_mask"])
def test_inputs_positions_masks_and_integer_arithmetic_stay_allowed(mode):
    assert check_program(export(_Decodes(mode))) is None



class _FlexScore(nn.Module):
    """Flex attention with a score function that rounds the score (computed from the weights)
    or only the positions, under a causal block mask made outside the graph."""

    T = 128

    def __init__(self, rounds_score: bool):
        from torch.nn.attention.flex_attention import create_block_mask

        super().__init__()
        self.rounds_score = rounds_score
        self.emb = nn.Embedding(V, 16)
        self.mask = create_block_mask(lambda b, h, q, kv: q >= kv, None, None, self.T, self.T,
                                      device="cpu")

    def forward(self, x):
        from torch.nn.attention.flex_attention import flex_attention

        if self.rounds_score:
            def mod(score, b, h, q, kv):
                return torch.floor(score * 4)
        else:
            def mod(score, b, h, q, kv):
                return score - torch.floor((q - kv) / 2)
        q = self.emb(x).view(1, 1, self.T, 16)
        return flex_attention(q, q, q, score_mod=mod, block_mask=self.mask).view(1, self.T, 16)


@pytest.mark.parametrize("rounds_score", [True, False])
def test_a_flex_score_function_may_round_positions_but_not_scores(rounds_score):
    model = _FlexScore(rounds_score).eval()
    with torch.no_grad():
        ep = torch.export.export(model, (torch.randint(0, V, (1, model.T)),), strict=False)
    problem = check_program(ep)
    if rounds_score:
        assert problem and "op aten::floor is applied to a value computed from the weights" in problem
    else:
        assert problem is None, problem
