"""Every kernel against a float64 reference under Triton's interpreter (CPU).

Outputs and input gradients, fp32 and bf16, odd sizes, non-contiguous inputs and output
gradients, all allocations poisoned with NaN. Each test also asserts that a Triton kernel
really ran (a silent fallback to the reference would pass otherwise).
Run: python -m pytest -q tests/kernels/test_parity.py
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import kernels
from kernels import _launch, cross_entropy

pytestmark = pytest.mark.usefixtures("poison")

DTYPES = [torch.float32, torch.bfloat16]
# (rtol, atol as a fraction of the largest reference magnitude): one rounding of the output.
TOL = {torch.float32: (2e-5, 2e-6), torch.bfloat16: (2 ** -7, 2 ** -8)}


def assert_close64(actual, expected, dtype, slack=1.0, what=""):
    a, e = actual.detach().double(), expected.detach().double()
    assert a.shape == e.shape, f"{what}: shape {tuple(a.shape)} != {tuple(e.shape)}"
    assert torch.isfinite(a).all(), f"{what}: non-finite element (unwritten output?)"
    rtol, atol = (t * slack for t in TOL[dtype])
    err = (a - e).abs()
    bad = err > rtol * e.abs() + atol * e.abs().max().clamp(min=1e-30)
    assert not bad.any(), f"{what}: max err {err.max().item():.3e}, {int(bad.sum())} bad"


def random_grad(shape, dtype):
    """A non-contiguous output gradient of `shape` (transposed storage)."""
    if len(shape) < 2:
        return torch.randn(shape, dtype=torch.float64).to(dtype)
    g = torch.randn(*reversed(shape), dtype=torch.float64).to(dtype)
    return g.permute(*reversed(range(len(shape))))


def check(kernel_call, ref_call, leaves, dtype, launches, slack=1.0):
    """kernel_call(*leaves in dtype) vs ref_call(*the same values in float64), value and grads."""
    k_leaves = [t.to(dtype).detach().requires_grad_() for t in leaves]
    r_leaves = [t.to(dtype).double().detach().requires_grad_() for t in leaves]
    before = len(launches)
    y = kernel_call(*k_leaves)
    assert len(launches) > before, "no Triton kernel ran"
    r = ref_call(*r_leaves)
    assert_close64(y, r, dtype, slack, "output")
    g = random_grad(tuple(y.shape), y.dtype)
    y.backward(g)
    r.backward(g.double())
    for i, (a, b) in enumerate(zip(k_leaves, r_leaves)):
        assert a.grad is not None and a.grad.dtype == a.dtype
        assert_close64(a.grad, b.grad, dtype, slack, f"grad {i}")


def rms64(x, eps, w=None):
    y = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
    return y * w if w is not None else y


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", ["contiguous", "row-slice", "bthd-transposed", "5d",
                                    "5d-permuted", "1d"])
@pytest.mark.parametrize("with_weight", [False, True])
def test_rms_norm(interpret, dtype, layout, with_weight):
    D = 37
    make = {
        "contiguous": (lambda: torch.randn(3, 50, D), lambda x: x),
        "row-slice": (lambda: torch.randn(2, 300, D + 5), lambda x: x[..., :D]),  # 2 blocks/program
        "bthd-transposed": (lambda: torch.randn(2, 3, 9, D), lambda x: x.transpose(1, 2)),
        "5d": (lambda: torch.randn(2, 2, 3, 2, D), lambda x: x),
        "5d-permuted": (lambda: torch.randn(2, 3, 2, 3, D), lambda x: x.permute(3, 1, 0, 2, 4)),
        "1d": (lambda: torch.randn(D), lambda x: x),
    }[layout]
    base, view = make
    eps = torch.finfo(dtype).eps
    leaves = [base() * 3]
    if with_weight:
        leaves.append(torch.randn(D))
        check(lambda x, w: kernels.rms_norm(view(x), weight=w),
              lambda x, w: rms64(view(x), eps, w), leaves, dtype, interpret)
    else:
        check(lambda x: kernels.rms_norm(view(x)), lambda x: rms64(view(x), eps), leaves,
              dtype, interpret)


def test_rms_norm_explicit_eps_and_wide_rows(interpret):
    x = torch.randn(5, 300)
    check(lambda x: kernels.rms_norm(x, eps=1e-6), lambda x: rms64(x, 1e-6), [x],
          torch.float32, interpret)


def rotary64(x, cos, sin):
    d = x.shape[-1] // 2
    x1, x2 = x[..., :d], x[..., d:]
    return torch.cat([x1 * cos + x2 * sin, -x1 * sin + x2 * cos], -1)


def _angles(T, half, dtype):
    """cos, sin [1, T, 1, half] in dtype."""
    f = torch.outer(torch.arange(T, dtype=torch.float64), torch.rand(half, dtype=torch.float64) * 3)
    return f.cos().to(dtype)[None, :, None, :], f.sin().to(dtype)[None, :, None, :]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", ["contiguous", "qkv-slice", "bhtd-transposed"])
def test_rotary(interpret, dtype, layout):
    B, T, H, D = 2, 7, 3, 10  # D/2 = 5: not a power of two
    base, view = {
        "contiguous": (torch.randn(B, T, H, D), lambda x: x),
        "qkv-slice": (torch.randn(B, T, 3, H, D), lambda x: x[:, :, 1]),
        "bhtd-transposed": (torch.randn(B, H, T, D), lambda x: x.transpose(1, 2)),
    }[layout]
    cos, sin = _angles(T, D // 2, dtype)
    check(lambda x: kernels.rotary(view(x), cos, sin),
          lambda x: rotary64(view(x), cos.double(), sin.double()), [base], dtype, interpret)


def test_rotary_sliced_table_and_mixed_dtypes(interpret):
    """cos/sin sliced from a longer fp32 table, x in bf16: output promotes to fp32 like eager."""
    T, D = 5, 8
    cos_full, sin_full = _angles(3 * T, D // 2, torch.float32)
    cos, sin = cos_full[:, :T], sin_full[:, :T]
    x = torch.randn(2, T, 2, D).bfloat16()
    y = kernels.rotary(x, cos, sin)
    assert interpret and y.dtype == torch.float32
    assert_close64(y, rotary64(x.double(), cos.double(), sin.double()), torch.float32)


def softcap_ce64(logits, targets, cap=15.0, ignore_index=-100):
    z = cap * torch.tanh(logits / cap)
    return F.cross_entropy(z.reshape(-1, z.shape[-1]), targets.reshape(-1),
                           ignore_index=ignore_index)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("V", [37, cross_entropy.MAX_BLOCK + 3])  # one block / two, ragged
def test_softcap_cross_entropy(interpret, dtype, V):
    logits = torch.randn(13, V) * 12  # wide enough that the cap matters
    targets = torch.randint(0, V, (13,))
    targets[[2, 7]] = -100
    check(lambda lg: kernels.softcap_cross_entropy(lg, targets),
          lambda lg: softcap_ce64(lg, targets), [logits], dtype, interpret)


def test_softcap_cross_entropy_strided_3d(interpret):
    """[B, T, V] logits sliced from a wider vocab, strided targets, other ignore id, and a
    cap above MAX_SHIFT_CAP (the online-logsumexp branch)."""
    big = torch.randn(2, 5, 50) * 80
    tg = torch.randint(0, 41, (2, 10))[:, ::2]
    tg[0, 1] = -1
    cap = 2 * cross_entropy.MAX_SHIFT_CAP
    check(lambda b: kernels.softcap_cross_entropy(b[..., :41], tg, softcap=cap, ignore_index=-1),
          lambda b: softcap_ce64(b[..., :41], tg, cap, -1), [big], torch.float32, interpret)


def test_softcap_cross_entropy_bad_target_is_nan(interpret):
    loss = kernels.softcap_cross_entropy(torch.randn(3, 7), torch.tensor([0, 9, 1]))
    assert torch.isnan(loss)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("chunk", [5, None])
def test_linear_softcap_cross_entropy(interpret, dtype, chunk):
    N, C, V = 18, 16, 37
    x = torch.randn(N, C)
    w = torch.randn(V, C) * 0.8
    targets = torch.randint(0, V, (N,))
    targets[4] = -100
    # bf16: the logits themselves are bf16 (as in eager), so allow a few roundings.
    check(lambda x, w: kernels.linear_softcap_cross_entropy(x, w, targets, chunk_tokens=chunk),
          lambda x, w: softcap_ce64(x @ w.T, targets), [x, w], dtype, interpret,
          slack=1.0 if dtype == torch.float32 else 4.0)


def test_linear_softcap_cross_entropy_strided_and_no_grad(interpret):
    xt = torch.randn(3, 16, 4)  # x = xt.transpose(1, 2): [3, 4, 16], non-contiguous
    wt = torch.randn(16, 29)    # weight = wt.t(): [29, 16], non-contiguous
    targets = torch.randint(0, 29, (3, 4))
    check(lambda a, b: kernels.linear_softcap_cross_entropy(a.transpose(1, 2), b.t(), targets,
                                                            chunk_tokens=4),
          lambda a, b: softcap_ce64(a.transpose(1, 2) @ b, targets), [xt, wt], torch.float32,
          interpret)
    with torch.no_grad():
        loss = kernels.linear_softcap_cross_entropy(xt.transpose(1, 2), wt.t(), targets)
    expected = softcap_ce64(xt.transpose(1, 2).double() @ wt.double(), targets)
    assert_close64(loss, expected, torch.float32)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("transposed", [False, True])
def test_relu2(interpret, dtype, transposed):
    x = torch.randn(3, 7, 333)  # 6993 elements: 7 programs, the last one ragged
    view = (lambda t: t.transpose(0, 2)) if transposed else (lambda t: t)
    check(lambda x: kernels.relu2(view(x)), lambda x: torch.relu(view(x)) ** 2, [x], dtype,
          interpret)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("transposed", [False, True])
def test_swiglu(interpret, dtype, transposed):
    g, u = torch.randn(3, 7, 333) * 3, torch.randn(3, 7, 333)
    view = (lambda t: t.transpose(0, 2)) if transposed else (lambda t: t)
    check(lambda g, u: kernels.swiglu(view(g), view(u)),
          lambda g, u: F.silu(view(g)) * view(u), [g, u], dtype, interpret)


def test_poison_catches_an_unwritten_element(interpret):
    """Negative control: launch relu2 over all but the last element; that one stays NaN."""
    from kernels import activations

    x = torch.randn(10)
    y = torch.empty(10)
    activations._relu2_fwd[(1,)](x, y, 9, BLOCK=16)
    assert torch.isnan(y[9]) and torch.isfinite(y[:9]).all()
    assert _launch.backend(x) == "interpreter"
