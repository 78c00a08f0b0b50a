"""Compiled Triton kernels on CUDA against a float64 reference, at the GPU seed's widths.

Marked `gpu` and skipped without CUDA. Outputs and input gradients, fp32 and bf16,
contiguous and strided inputs, NaN-poisoned allocations.
Run: python -m pytest -q -m gpu tests/kernels
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import kernels

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
              pytest.mark.usefixtures("poison")]

DEV = "cuda"
TOL = {torch.float32: (2e-5, 2e-6), torch.bfloat16: (2 ** -7, 2 ** -8)}


def close(actual, expected, dtype, slack=1.0, what=""):
    a, e = actual.detach().double(), expected.detach().double()
    assert torch.isfinite(a).all(), f"{what}: non-finite element"
    rtol, atol = (t * slack for t in TOL[dtype])
    err = (a - e).abs()
    bad = err > rtol * e.abs() + atol * e.abs().max().clamp(min=1e-30)
    assert not bad.any(), f"{what}: max err {err.max().item():.3e}, {int(bad.sum())} bad"


def check(kernel_call, ref_call, leaves, dtype, slack=1.0):
    assert kernels.backend(leaves[0]) == "triton"
    k = [t.to(dtype).detach().requires_grad_() for t in leaves]
    r = [t.to(dtype).double().detach().requires_grad_() for t in leaves]
    y, y64 = kernel_call(*k), ref_call(*r)
    close(y, y64, dtype, slack, "output")
    g = torch.randn(y.shape, device=DEV, dtype=torch.float64).to(y.dtype)
    y.backward(g)
    y64.backward(g.double())
    for i, (a, b) in enumerate(zip(k, r)):
        close(a.grad, b.grad, dtype, slack, f"grad {i}")


def randn(*shape, scale=1.0):
    return torch.randn(*shape, device=DEV, dtype=torch.float64) * scale


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_rms_norm_model_and_head_widths(dtype):
    def rms(x, w=None, eps=torch.finfo(dtype).eps):
        y = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
        return y * w if w is not None else y

    check(lambda x, w: kernels.rms_norm(x, weight=w), rms, [randn(4, 256, 512), randn(512)],
          dtype)
    qkv = randn(4, 256, 3, 4, 128)
    check(lambda t: kernels.rms_norm(t[:, :, 1]), lambda t: rms(t[:, :, 1]), [qkv], dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_rotary_head_dim_128(dtype):
    T = 256
    f = torch.outer(torch.arange(T, device=DEV, dtype=torch.float64),
                    1.0 / 10000 ** (torch.arange(0, 128, 2, device=DEV) / 128))
    cos, sin = f.cos().to(dtype)[None, :, None], f.sin().to(dtype)[None, :, None]

    def rope64(x):
        x1, x2 = x[..., :64], x[..., 64:]
        c, s = cos.double(), sin.double()
        return torch.cat([x1 * c + x2 * s, -x1 * s + x2 * c], -1)

    check(lambda x: kernels.rotary(x[:, :, 0], cos, sin), lambda x: rope64(x[:, :, 0]),
          [randn(4, T, 3, 4, 128)], dtype)


def ce64(logits, targets, cap=15.0):
    return F.cross_entropy(cap * torch.tanh(logits / cap), targets)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_softcap_cross_entropy_vocab_8192(dtype):
    targets = torch.randint(0, 8192, (1024,), device=DEV)
    check(lambda lg: kernels.softcap_cross_entropy(lg, targets), lambda lg: ce64(lg, targets),
          [randn(1024, 8192, scale=10)], dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_linear_softcap_cross_entropy_chunks(dtype):
    targets = torch.randint(0, 8192, (2048,), device=DEV)
    check(lambda x, w: kernels.linear_softcap_cross_entropy(x, w, targets, chunk_tokens=512),
          lambda x, w: ce64(x @ w.T, targets), [randn(2048, 512), randn(8192, 512, scale=0.05)],
          dtype, slack=1.0 if dtype == torch.float32 else 4.0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_activations_mlp_width(dtype):
    check(kernels.relu2, lambda x: torch.relu(x) ** 2, [randn(4, 256, 2048)], dtype)
    check(kernels.swiglu, lambda g, u: F.silu(g) * u,
          [randn(4, 256, 2048, scale=3), randn(4, 256, 2048)], dtype)


def test_large_logits_do_not_overflow_int32_offsets():
    """2**31 / 8192 = 262144 rows: the last rows sit past int32 element offsets."""
    n = 262144 + 8
    logits = torch.zeros(n, 8192, device=DEV, dtype=torch.bfloat16)
    logits[-1, 7] = 30.0
    logits.requires_grad_()
    targets = torch.full((n,), 7, device=DEV)
    loss = kernels.softcap_cross_entropy(logits, targets)
    last = logits[-1:].detach().double().requires_grad_()
    last_loss = ce64(last, targets[-1:])
    last_loss.backward()
    expected = (math.log(8192) * (n - 1) + last_loss.item()) / n  # the other rows are uniform
    assert abs(loss.item() - expected) < 1e-4
    loss.backward()
    close(logits.grad[-1:] * n, last.grad, torch.bfloat16, what="last row grad")
