"""RMS norm over the last dimension: Triton forward and backward, custom op, autograd.

    y = x / sqrt(mean(x^2, -1) + eps) [* weight]      computed in fp32, stored in x.dtype

    from kernels import rms_norm
    y = rms_norm(x)                     # x [..., D]; also q, k at [B, T, H, D]

One program normalises BLOCK_ROWS rows held in registers. Rows are addressed through up to
three leading strides, so q/k slices of a fused qkv projection are read in place (no copy).
The backward recomputes 1/rms from the row it loads anyway, so nothing but x (and weight)
is saved for it; the weight gradient is reduced per program into an fp32 [programs, D]
buffer and summed by torch.

Registered as the custom ops `autoevolve::rms_norm` / `autoevolve::rms_norm_backward`
(fake impls for torch.compile, autograd for training); exported programs contain the op
and run wherever `kernels` is imported first. On devices without a Triton backend the
public function is the reference (`F.rms_norm`), so CPU exports contain plain aten ops.

Does not: handle rows wider than MAX_COLS (they go to the reference), or fuse a residual add.
"""

from __future__ import annotations

from typing import Optional

import torch

from kernels import reference
from kernels._launch import backend, cdiv, kernel, next_power_of_2, row_layout, sm_count, tl

MAX_COLS = 65536  # one row must fit in one program's registers (fp32: 256 KiB per row)
MAX_ROWS = 2 ** 31 - 2 ** 16  # row indices are int32 in the kernels


@kernel
def _rms_norm_fwd(x_ptr, w_ptr, y_ptr, n_rows, n_cols, size1, size2, stride0, stride1, stride2,
                  eps, HAS_WEIGHT: tl.constexpr, BLOCK_ROWS: tl.constexpr,
                  BLOCK_COLS: tl.constexpr):
    rows = tl.program_id(0) * BLOCK_ROWS + tl.arange(0, BLOCK_ROWS)  # int32: n_rows < 2**31
    cols = tl.arange(0, BLOCK_COLS)
    mask = (rows < n_rows)[:, None] & (cols < n_cols)[None, :]
    # Row r of the [size0, size1, size2] leading grid sits at i0*stride0 + i1*stride1 + i2*stride2.
    # Why int32 here and int64 below: 64-bit division is emulated (~70 instructions) on GPUs;
    # sizes of 1 are specialised away by Triton, so contiguous inputs divide by nothing.
    i2 = rows % size2
    i1 = (rows // size2) % size1
    i0 = rows // (size2 * size1)
    x_off = i0.to(tl.int64) * stride0 + i1.to(tl.int64) * stride1 + i2.to(tl.int64) * stride2
    x = tl.load(x_ptr + x_off[:, None] + cols[None, :], mask=mask, other=0.0).to(tl.float32)
    rstd = 1.0 / tl.sqrt(tl.sum(x * x, axis=1) / n_cols + eps)
    y = x * rstd[:, None]
    if HAS_WEIGHT:
        w = tl.load(w_ptr + cols, mask=cols < n_cols, other=0.0).to(tl.float32)
        y = y * w[None, :]
    y_off = rows.to(tl.int64)[:, None] * n_cols + cols[None, :]
    tl.store(y_ptr + y_off, y.to(y_ptr.dtype.element_ty), mask=mask)


@kernel
def _rms_norm_bwd(dy_ptr, x_ptr, w_ptr, dx_ptr, dw_ptr, n_rows, n_cols, size1, size2,
                  xs0, xs1, xs2, gs0, gs1, gs2, eps, blocks_per_program,
                  HAS_WEIGHT: tl.constexpr, BLOCK_ROWS: tl.constexpr, BLOCK_COLS: tl.constexpr):
    pid = tl.program_id(0)
    cols = tl.arange(0, BLOCK_COLS)
    col_ok = cols < n_cols
    if HAS_WEIGHT:
        w = tl.load(w_ptr + cols, mask=col_ok, other=0.0).to(tl.float32)
    else:
        w = tl.full([BLOCK_COLS], 1.0, dtype=tl.float32)
    dw = tl.zeros([BLOCK_COLS], dtype=tl.float32)
    for i in range(0, blocks_per_program):
        rows = (pid * blocks_per_program + i) * BLOCK_ROWS + tl.arange(0, BLOCK_ROWS)
        mask = (rows < n_rows)[:, None] & col_ok[None, :]
        i2 = rows % size2  # int32 index math, int64 offsets (see the forward)
        i1 = (rows // size2) % size1
        i0 = (rows // (size2 * size1)).to(tl.int64)
        i1 = i1.to(tl.int64)
        i2 = i2.to(tl.int64)
        x_off = i0 * xs0 + i1 * xs1 + i2 * xs2
        g_off = i0 * gs0 + i1 * gs1 + i2 * gs2
        x = tl.load(x_ptr + x_off[:, None] + cols[None, :], mask=mask, other=0.0).to(tl.float32)
        dy = tl.load(dy_ptr + g_off[:, None] + cols[None, :], mask=mask, other=0.0).to(tl.float32)
        rstd = 1.0 / tl.sqrt(tl.sum(x * x, axis=1) / n_cols + eps)
        # Why the where: with eps == 0 a padding row has rstd = inf and 0 * inf = nan.
        xhat = tl.where(mask, x * rstd[:, None], 0.0)
        g = dy * w[None, :]
        if HAS_WEIGHT:
            dw += tl.sum(dy * xhat, axis=0)
        # d/dx of x*rstd: rstd * (g - xhat * mean(xhat * g)), per row.
        c = tl.sum(xhat * g, axis=1) / n_cols
        dx = tl.where(mask, (g - xhat * c[:, None]) * rstd[:, None], 0.0)
        dx_off = rows.to(tl.int64)[:, None] * n_cols + cols[None, :]
        tl.store(dx_ptr + dx_off, dx.to(dx_ptr.dtype.element_ty), mask=mask)
    if HAS_WEIGHT:
        tl.store(dw_ptr + pid * n_cols + cols, dw, mask=col_ok)


def _tiles(n_cols: int) -> tuple[int, int, int]:
    """(BLOCK_ROWS, BLOCK_COLS, num_warps): ~4K fp32 elements per program."""
    block_cols = next_power_of_2(n_cols)
    block_rows = max(1, min(64, 4096 // block_cols))
    num_warps = min(16, max(4, block_rows * block_cols // 1024))
    return block_rows, block_cols, num_warps


def _forward(x: torch.Tensor, weight: Optional[torch.Tensor], eps: float) -> torch.Tensor:
    y = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    (xr,), (_, s1, s2), [(st0, st1, st2)] = row_layout(x)
    n_cols = x.shape[-1]
    n_rows = x.numel() // n_cols
    block_rows, block_cols, num_warps = _tiles(n_cols)
    w = weight.contiguous() if weight is not None else xr
    _rms_norm_fwd[(cdiv(n_rows, block_rows),)](
        xr, w, y, n_rows, n_cols, s1, s2, st0, st1, st2, eps,
        HAS_WEIGHT=weight is not None, BLOCK_ROWS=block_rows, BLOCK_COLS=block_cols,
        num_warps=num_warps)
    return y


def _backward(dy: torch.Tensor, x: torch.Tensor, weight: Optional[torch.Tensor],
              eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    dx = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    (xr, dyr), (_, s1, s2), (xs, gs) = row_layout(x, dy)  # one row grid for both
    n_cols = x.shape[-1]
    n_rows = x.numel() // n_cols
    block_rows, block_cols, num_warps = _tiles(n_cols)
    n_blocks = cdiv(n_rows, block_rows)
    programs = n_blocks
    if weight is not None:  # Why: few programs, each summing many rows, keep the dw buffer small
        programs = min(n_blocks, 4 * sm_count(x.device))
    per_program = cdiv(n_blocks, programs)
    programs = cdiv(n_blocks, per_program)
    has_w = weight is not None
    dw_part = torch.empty((programs if has_w else 0, n_cols), dtype=torch.float32, device=x.device)
    _rms_norm_bwd[(programs,)](
        dyr, xr, weight.contiguous() if has_w else xr, dx, dw_part, n_rows, n_cols, s1, s2,
        *xs, *gs, eps, per_program,
        HAS_WEIGHT=has_w, BLOCK_ROWS=block_rows, BLOCK_COLS=block_cols, num_warps=num_warps)
    dw = dw_part.sum(0).to(weight.dtype) if has_w else x.new_empty(0)
    return dx, dw


def _reference_vjp(dy, x, weight, eps):
    if weight is None:
        _, vjp = torch.func.vjp(lambda x_: reference.rms_norm(x_, eps), x)
        return vjp(dy)[0], x.new_empty(0)
    _, vjp = torch.func.vjp(lambda x_, w_: reference.rms_norm(x_, eps, w_), x, weight)
    return vjp(dy)


@torch.library.custom_op("autoevolve::rms_norm", mutates_args=())
def rms_norm_op(x: torch.Tensor, weight: Optional[torch.Tensor], eps: float) -> torch.Tensor:
    if backend(x) == "reference":
        return reference.rms_norm(x, eps, weight).contiguous()
    return _forward(x, weight, eps)


@rms_norm_op.register_fake
def _(x, weight, eps):
    return x.new_empty(x.shape)


@torch.library.custom_op("autoevolve::rms_norm_backward", mutates_args=())
def rms_norm_backward_op(dy: torch.Tensor, x: torch.Tensor, weight: Optional[torch.Tensor],
                         eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    if backend(x) == "reference":
        dx, dw = _reference_vjp(dy, x, weight, eps)
        return dx.contiguous(), dw
    return _backward(dy, x, weight, eps)


@rms_norm_backward_op.register_fake
def _(dy, x, weight, eps):
    return x.new_empty(x.shape), (weight.new_empty(weight.shape) if weight is not None
                                  else x.new_empty(0))


def _setup_context(ctx, inputs, output):
    x, weight, eps = inputs
    ctx.save_for_backward(x, weight)
    ctx.eps = eps


def _autograd_backward(ctx, dy):
    x, weight = ctx.saved_tensors
    dx, dw = rms_norm_backward_op(dy, x, weight, ctx.eps)
    return dx, (dw if weight is not None else None), None


rms_norm_op.register_autograd(_autograd_backward, setup_context=_setup_context)


def rms_norm(x: torch.Tensor, eps: Optional[float] = None,
             weight: Optional[torch.Tensor] = None) -> torch.Tensor:
    """RMS norm of x over its last dim, same semantics as F.rms_norm(x, (D,), weight, eps).

    eps=None means torch.finfo(x.dtype).eps. Output dtype is x.dtype. Triton on CUDA (and
    under TRITON_INTERPRET=1); the reference elsewhere and for rows wider than MAX_COLS.
    Works under torch.compile and torch.export (custom op `autoevolve::rms_norm`).
    """
    if eps is None:
        eps = torch.finfo(x.dtype).eps
    d = x.shape[-1] if x.dim() else 0
    if (backend(x) == "reference" or x.numel() == 0 or d > MAX_COLS
            or x.numel() // d >= MAX_ROWS
            or (weight is not None and tuple(weight.shape) != (d,))):
        return reference.rms_norm(x, eps, weight)
    return rms_norm_op(x, weight, float(eps))
