"""Rotary position embedding (RoPE, half-split convention): Triton kernel, custom op, autograd.

(Named rope.py because `kernels.rotary` is the public function.)

    x1, x2 = x[..., :D/2], x[..., D/2:]
    y = cat(x1*cos + x2*sin, -x1*sin + x2*cos)          x [B, T, H, D]; cos, sin [1, T, 1, D/2]

    from kernels import rotary
    q = rotary(q, cos, sin)

One program rotates BLOCK_ROWS (b, t, h) rows; x is read through its three leading strides,
so a q/k slice of a fused qkv projection (or a [B, H, T, D] tensor transposed to
[B, T, H, D]) is not copied first. cos and sin are [1, T, 1, D/2] (or anything that
broadcasts to it, e.g. a slice of a longer table), in any float dtype; math is fp32 and the
output dtype is the type promotion of x, cos and sin (as in the reference). The backward is the inverse
rotation (sin -> -sin), the same kernel with INVERSE set.

Custom op `autoevolve::rotary` (fake impl for torch.compile, autograd; export keeps the op).
On devices without a Triton backend the public function is the reference.

Does not: produce gradients for cos and sin (they are treated as constants, as the
buffers they are in a GPT); support the interleaved (GPT-J) convention.
"""

from __future__ import annotations

import torch

from kernels import reference
from kernels._launch import backend, cdiv, kernel, next_power_of_2, tl

MAX_ROWS = 2 ** 31 - 2 ** 16  # row indices are int32 in the kernel


@kernel
def _rotary_kernel(x_ptr, cos_ptr, sin_ptr, y_ptr, n_rows, xs0, xs1, xs2,
                   cs_t, cs_d, ss_t, ss_d, half, T: tl.constexpr, H: tl.constexpr,
                   INVERSE: tl.constexpr, BLOCK_ROWS: tl.constexpr, BLOCK_HALF: tl.constexpr):
    rows = tl.program_id(0) * BLOCK_ROWS + tl.arange(0, BLOCK_ROWS)  # int32: n_rows < 2**31
    d = tl.arange(0, BLOCK_HALF)
    mask = (rows < n_rows)[:, None] & (d < half)[None, :]
    # Why T, H constexpr and int32 index math: a division by a runtime value costs ~20
    # instructions per element (64-bit: ~70), more than the memory traffic it serves;
    # by a constant power of two it is a shift. One compile per (T, H) is cheap.
    h = rows % H
    t = (rows // H) % T
    b = (rows // (H * T)).to(tl.int64)
    t64 = t.to(tl.int64)
    x_off = (b * xs0 + t64 * xs1 + h.to(tl.int64) * xs2)[:, None] + d[None, :]
    x1 = tl.load(x_ptr + x_off, mask=mask, other=0.0).to(tl.float32)
    x2 = tl.load(x_ptr + x_off + half, mask=mask, other=0.0).to(tl.float32)
    c = tl.load(cos_ptr + t64[:, None] * cs_t + d[None, :] * cs_d, mask=mask, other=0.0)
    s = tl.load(sin_ptr + t64[:, None] * ss_t + d[None, :] * ss_d, mask=mask, other=0.0)
    c = c.to(tl.float32)
    s = s.to(tl.float32)
    if INVERSE:  # the transpose of a rotation is the rotation by the opposite angle
        s = -s
    y1 = x1 * c + x2 * s
    y2 = x2 * c - x1 * s
    y_off = rows.to(tl.int64)[:, None] * (2 * half) + d[None, :]
    tl.store(y_ptr + y_off, y1.to(y_ptr.dtype.element_ty), mask=mask)
    tl.store(y_ptr + y_off + half, y2.to(y_ptr.dtype.element_ty), mask=mask)


def _launch(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, inverse: bool,
            out_dtype: torch.dtype) -> torch.Tensor:
    B, T, H, D = x.shape
    half = D // 2
    y = torch.empty(x.shape, dtype=out_dtype, device=x.device)
    if x.shape[-1] > 1 and x.stride(-1) != 1:
        x = x.contiguous()
    c = torch.broadcast_to(cos, (1, T, 1, half))
    s = torch.broadcast_to(sin, (1, T, 1, half))
    n_rows = B * T * H
    block_half = next_power_of_2(half)
    block_rows = max(1, min(64, 2048 // block_half))
    _rotary_kernel[(cdiv(n_rows, block_rows),)](
        x, c, s, y, n_rows, x.stride(0), x.stride(1), x.stride(2),
        c.stride(1), c.stride(3), s.stride(1), s.stride(3), half, T=T, H=H,
        INVERSE=inverse, BLOCK_ROWS=block_rows, BLOCK_HALF=block_half, num_warps=4)
    return y


def _out_dtype(x, cos, sin) -> torch.dtype:
    return torch.promote_types(torch.promote_types(x.dtype, cos.dtype), sin.dtype)


@torch.library.custom_op("autoevolve::rotary", mutates_args=())
def rotary_op(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
              inverse: bool) -> torch.Tensor:
    if backend(x) == "reference":
        return reference.rotary(x, cos, -sin if inverse else sin).contiguous()
    return _launch(x, cos, sin, inverse, _out_dtype(x, cos, sin))


@rotary_op.register_fake
def _(x, cos, sin, inverse):
    return x.new_empty(x.shape, dtype=_out_dtype(x, cos, sin))


def _setup_context(ctx, inputs, output):
    x, cos, sin, inverse = inputs
    ctx.save_for_backward(cos, sin)
    ctx.inverse = inverse
    ctx.x_dtype = x.dtype


def _autograd_backward(ctx, dy):
    cos, sin = ctx.saved_tensors
    dx = rotary_op(dy, cos, sin, not ctx.inverse)
    return dx.to(ctx.x_dtype), None, None, None


rotary_op.register_autograd(_autograd_backward, setup_context=_setup_context)


def rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Half-split rotary embedding of x [B, T, H, D] (D even); cos, sin broadcast as [1, T, 1, D/2].

    Same values as `reference.rotary` (computed in fp32, rounded once). Triton on CUDA (and
    under TRITON_INTERPRET=1); the reference elsewhere or for other shapes. cos and sin get
    no gradient. Works under torch.compile and torch.export (custom op `autoevolve::rotary`).
    """
    ok = (x.dim() == 4 and x.shape[-1] % 2 == 0 and 0 < x.numel() // max(1, x.shape[-1]) < MAX_ROWS
          and backend(x) != "reference" and _broadcasts(cos, x) and _broadcasts(sin, x))
    if not ok:
        return reference.rotary(x, cos, sin)
    return rotary_op(x, cos.detach(), sin.detach(), False)


def _broadcasts(c: torch.Tensor, x: torch.Tensor) -> bool:
    target = (1, x.shape[1], 1, x.shape[3] // 2)
    if c.dim() > 4 or c.device != x.device:
        return False
    shape = (1,) * (4 - c.dim()) + tuple(c.shape)
    return all(s == t or s == 1 for s, t in zip(shape, target))
