"""Which implementation runs: the reference on CPU without TRITON_INTERPRET, kernels with it.

The seeds import `kernels` on CPU without the variable and must get exactly the reference
(same values, no Triton launch); the variable is read per call, so setting it later in the
same process switches to the interpreter.
Run: python -m pytest -q tests/kernels/test_dispatch.py
"""

from __future__ import annotations

import pytest
import torch

import kernels
from kernels import _launch, reference


def _all_public_calls():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 2, 8, requires_grad=True)
    w = torch.randn(8, requires_grad=True)
    cos, sin = torch.randn(1, 3, 1, 4), torch.randn(1, 3, 1, 4)
    lw = torch.randn(5, 8, requires_grad=True)
    t = torch.randint(0, 5, (2, 3, 2))
    return [
        ("rms_norm", (x, 1e-5, w)),
        ("rotary", (x, cos, sin)),
        ("relu2", (x,)),
        ("swiglu", (x, x * 2)),
        ("softcap_cross_entropy", (x[..., :5], t, 15.0)),
        ("linear_softcap_cross_entropy", (x, lw, t, 15.0)),
    ]


def test_cpu_without_the_variable_is_exactly_the_reference(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)

    def no_launch(self, grid, *args, **kwargs):
        raise AssertionError(f"{self.fn.__name__} launched on the reference path")

    monkeypatch.setattr(_launch.Kernel, "_launch", no_launch)
    assert kernels.backend(torch.zeros(1)) == "reference"
    for name, args in _all_public_calls():
        got = getattr(kernels, name)(*args)
        want = getattr(reference, name)(*args)
        assert torch.equal(got, want), name
        leaves = [a for a in args if isinstance(a, torch.Tensor) and a.requires_grad]
        g1 = torch.autograd.grad(got.sum(), leaves, retain_graph=True)
        g2 = torch.autograd.grad(want.sum(), leaves, retain_graph=True)
        assert all(torch.equal(a, b) for a, b in zip(g1, g2)), name


def test_the_variable_is_read_per_call(monkeypatch):
    if not kernels.HAVE_TRITON:
        pytest.skip("triton is not installed")
    x = torch.randn(4, 8)
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    assert kernels.backend(x) == "reference"
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert kernels.backend(x) == "interpreter"
    assert kernels.backend(x.to("meta")) == "reference"


def test_every_public_function_launches_a_kernel_under_the_interpreter(interpret):
    for name, args in _all_public_calls():
        before = len(interpret)
        getattr(kernels, name)(*args).sum().backward(retain_graph=True)
        # linear_softcap_cross_entropy computes its gradients in the forward launch
        expected = 1 if name == "linear_softcap_cross_entropy" else 2
        assert len(interpret) >= before + expected, f"{name}: too few kernel launches"


def test_fallbacks_for_shapes_the_kernels_do_not_take(interpret):
    """Broadcasting swiglu, rotary of a 3-D tensor, int relu2: the reference, no launch."""
    g, u = torch.randn(3, 4), torch.randn(4)
    assert torch.equal(kernels.swiglu(g, u), reference.swiglu(g, u))
    x3 = torch.randn(2, 3, 8)
    cos = torch.randn(3, 4)
    assert torch.equal(kernels.rotary(x3, cos, cos), reference.rotary(x3, cos, cos))
    xi = torch.arange(-3, 3)
    assert torch.equal(kernels.relu2(xi), reference.relu2(xi))
    assert interpret == []


def test_softcap_must_be_positive():
    with pytest.raises(ValueError, match="softcap"):
        kernels.softcap_cross_entropy(torch.randn(2, 3), torch.tensor([0, 1]), softcap=0.0)
