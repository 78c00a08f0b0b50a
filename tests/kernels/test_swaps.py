"""kernels.SWAPS: every entry resolves, and its pattern and replacement compute the same values.

Each pattern / replacement is filled in with operand names, parsed as a Python expression
and evaluated on small CPU tensors, both on the reference path and under the interpreter.
Run: python -m pytest -q tests/kernels/test_swaps.py
"""

from __future__ import annotations

import ast
import string

import pytest
import torch
import torch.nn.functional as F

import kernels

FORWARD_OPS = {"rms_norm", "rotary", "rotary_halves", "relu2", "swiglu"}


def _operands():
    torch.manual_seed(0)
    f = torch.outer(torch.arange(3.0), torch.rand(4))
    x = torch.randn(2, 3, 2, 8) * 4
    return {
        "x": x,
        "x1": x[..., :4],
        "x2": x[..., 4:],
        "cos": f.cos()[:, None, :],  # [T, 1, D/2], as the seeds broadcast it over heads
        "sin": f.sin()[:, None, :],
        "gate": torch.randn(2, 3, 8),
        "up": torch.randn(2, 3, 8),
        "logits": torch.randn(2, 3, 11) * 20,
        "targets": torch.randint(0, 11, (2, 3)),
        "weight": torch.randn(11, 8),
        "cap": 15.0,
    }


def _placeholders(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


def _evaluate(template: str, ops: dict):
    expr = template.format(**{k: k for k in _placeholders(template)})
    ast.parse(expr, mode="eval")  # a mutation operator can match / emit it with libcst
    return eval(expr, {"F": F, "torch": torch, "kernels": kernels}, dict(ops))


def test_table_shape():
    assert set(kernels.SWAPS) == FORWARD_OPS | {"softcap_cross_entropy",
                                                 "linear_softcap_cross_entropy"}
    for name, swap in kernels.SWAPS.items():
        assert swap.kernel_fn() is getattr(kernels, swap.kernel.rsplit(".", 1)[1])
        assert callable(swap.reference_fn())
        assert _placeholders(swap.pattern) == _placeholders(swap.replacement), name
        assert swap.in_forward == (name in FORWARD_OPS)
    with pytest.raises(TypeError):
        kernels.SWAPS["relu2"] = None  # read-only mapping


@pytest.mark.parametrize("mode", ["reference", "interpreter"])
@pytest.mark.parametrize("name", sorted(kernels.SWAPS))
def test_pattern_and_replacement_agree(name, mode, request, monkeypatch):
    launches = []
    if mode == "interpreter":
        launches = request.getfixturevalue("interpret")
    else:
        monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    swap = kernels.SWAPS[name]
    ops = _operands()
    if name == "linear_softcap_cross_entropy":  # hidden states [B, T, C], not [B, T, H, D]
        ops["x"] = torch.randn(2, 3, 8)
    before = _evaluate(swap.pattern, ops)
    after = _evaluate(swap.replacement, ops)
    assert (len(launches) > 0) == (mode == "interpreter")  # the kernel ran, not a fallback
    assert after.shape == before.shape and after.dtype == before.dtype
    torch.testing.assert_close(after, before, rtol=1e-5, atol=1e-5)
