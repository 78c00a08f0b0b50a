"""Softcapped cross-entropy: Triton kernel, custom op, autograd.

    z = softcap * tanh(logits / softcap)              (fp32, never stored)
    loss = mean over rows with target != ignore_index of logsumexp(z) - z[target]

    from kernels import softcap_cross_entropy
    loss = softcap_cross_entropy(logits, targets)      # logits [..., V] any float dtype

One program per row streams the row in BLOCK-wide slices twice at most. The forward sums
exp(z - softcap) (z <= softcap, so for softcap <= 40 no running max is needed; above that a
per-lane online logsumexp whose running max starts at -softcap <= z) and stores the row's
loss and logsumexp (4 bytes each). The backward re-reads the row and writes
dlogits = (softmax(z) - onehot) * (1 - tanh^2) * grad / n_valid in the logits' dtype. The eager reference materialises the fp32 copy, the
tanh and the log-softmax (three [N, V] fp32 tensors); this reads the logits as they are.

The same kernel, with both passes in one launch and the gradient written over the logits
in place, is the core of `linear_cross_entropy.py`.

A target outside [0, V) that is not ignore_index gives a NaN loss (the reference raises).
Custom op `autoevolve::softcap_cross_entropy` (fake impl, autograd) works under
torch.compile; it is a training loss, not part of a model's forward, so export is not a goal.

Does not: support label smoothing, class weights, or reductions other than the mean.
"""

from __future__ import annotations

from typing import Optional

import torch

from kernels import reference
from kernels._launch import backend, device_function, kernel, next_power_of_2, tl

MAX_BLOCK = 4096  # logits per loop step (fp32 registers: 16 per thread at 8 warps)
MAX_SHIFT_CAP = 40.0  # exp(-2 * 40) = 1.8e-35 is still a normal fp32 (min 1.2e-38)


@device_function
def _tanh(u):
    # Why not libdevice: the interpreter lacks it. exp(-2|u|) is in (0, 1], so no overflow.
    e = tl.exp(-2.0 * tl.abs(u))
    t = (1.0 - e) / (1.0 + e)
    return tl.where(u < 0, -t, t)


@kernel
def _softcap_ce_kernel(logits_ptr, targets_ptr, loss_ptr, lse_ptr, scale_ptr, grad_ptr,
                       n_cols, stride_row, grad_stride_row, cap, ignore_index,
                       COMPUTE_LSE: tl.constexpr, WRITE_GRAD: tl.constexpr,
                       SHIFT_BY_CAP: tl.constexpr, BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    base = logits_ptr + row * stride_row
    target = tl.load(targets_ptr + row).to(tl.int64)
    valid = target != ignore_index
    in_range = (target >= 0) & (target < n_cols)
    if COMPUTE_LSE:
        acc = tl.zeros([BLOCK], dtype=tl.float32)
        if SHIFT_BY_CAP:
            # z - cap lies in [-2 cap, 0]: for cap <= 40 exp() neither overflows nor leaves
            # the normal fp32 range, so no running max is needed (one exp per logit, not two).
            for start in range(0, n_cols, BLOCK):
                cols = start + tl.arange(0, BLOCK)
                ok = cols < n_cols
                lg = tl.load(base + cols, mask=ok, other=0.0).to(tl.float32)
                acc += tl.where(ok, tl.exp(cap * _tanh(lg / cap) - cap), 0.0)
            lse = cap + tl.log(tl.sum(acc, axis=0))
        else:  # online logsumexp, per lane; z >= -cap, so the running max starts finite
            m = tl.zeros([BLOCK], dtype=tl.float32) - cap
            for start in range(0, n_cols, BLOCK):
                cols = start + tl.arange(0, BLOCK)
                ok = cols < n_cols
                lg = tl.load(base + cols, mask=ok, other=0.0).to(tl.float32)
                z = tl.where(ok, cap * _tanh(lg / cap), -cap)
                m_new = tl.maximum(m, z)
                acc = acc * tl.exp(m - m_new) + tl.where(ok, tl.exp(z - m_new), 0.0)
                m = m_new
            m_row = tl.max(m, axis=0)
            lse = m_row + tl.log(tl.sum(acc * tl.exp(m - m_row), axis=0))
        lt = tl.load(base + target, mask=valid & in_range, other=0.0).to(tl.float32)
        loss = tl.where(in_range, lse - cap * _tanh(lt / cap), float("nan"))
        tl.store(loss_ptr + row, tl.where(valid, loss, 0.0))
        tl.store(lse_ptr + row, lse)
    else:
        lse = tl.load(lse_ptr + row)
    if WRITE_GRAD:
        scale = tl.where(valid, tl.load(scale_ptr), 0.0)
        gbase = grad_ptr + row * grad_stride_row
        for start in range(0, n_cols, BLOCK):
            cols = start + tl.arange(0, BLOCK)
            ok = cols < n_cols
            lg = tl.load(base + cols, mask=ok, other=0.0).to(tl.float32)
            th = _tanh(lg / cap)
            p = tl.exp(cap * th - lse)
            g = tl.where(cols == target, p - 1.0, p) * (1.0 - th * th) * scale
            tl.store(gbase + cols, g.to(grad_ptr.dtype.element_ty), mask=ok)


def launch(logits: torch.Tensor, targets: torch.Tensor, cap: float, ignore_index: int, *,
           loss: Optional[torch.Tensor], lse: torch.Tensor, scale: Optional[torch.Tensor],
           grad: Optional[torch.Tensor]) -> None:
    """Run the kernel on logits [N, V] (unit stride on V) and targets [N] (contiguous).

    loss given: compute per-row loss and logsumexp into loss [N], lse [N] (fp32).
    loss None: read lse. grad given ([N, V], may be `logits` itself): write the gradient
    scaled by scale[0] (fp32, on device: grad_output / n_valid).
    """
    n_rows, n_cols = logits.shape
    if n_rows == 0:
        return
    block = min(next_power_of_2(n_cols), MAX_BLOCK)
    _softcap_ce_kernel[(n_rows,)](
        logits, targets, loss if loss is not None else lse, lse,
        scale if scale is not None else lse, grad if grad is not None else logits,
        n_cols, logits.stride(0), grad.stride(0) if grad is not None else 0, cap, ignore_index,
        COMPUTE_LSE=loss is not None, WRITE_GRAD=grad is not None,
        SHIFT_BY_CAP=loss is not None and cap <= MAX_SHIFT_CAP, BLOCK=block,
        num_warps=8 if block >= 2048 else 4)


def _rows(logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    l2 = logits.reshape(-1, logits.shape[-1])
    if l2.shape[-1] > 1 and l2.stride(-1) != 1:
        l2 = l2.contiguous()
    return l2, targets.reshape(-1).contiguous()


@torch.library.custom_op("autoevolve::softcap_cross_entropy", mutates_args=())
def softcap_cross_entropy_op(logits: torch.Tensor, targets: torch.Tensor, softcap: float,
                             ignore_index: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns (mean loss, per-row logsumexp of the capped logits) in fp32."""
    l2, t = _rows(logits, targets)
    if backend(logits) == "reference":
        lse = torch.logsumexp(reference.capped(l2, softcap), dim=-1)
        return reference.softcap_cross_entropy(l2, t, softcap, ignore_index), lse
    losses = torch.empty(l2.shape[0], dtype=torch.float32, device=l2.device)
    lse = torch.empty(l2.shape[0], dtype=torch.float32, device=l2.device)
    launch(l2, t, softcap, ignore_index, loss=losses, lse=lse, scale=None, grad=None)
    return losses.sum() / (t != ignore_index).sum(), lse


@softcap_cross_entropy_op.register_fake
def _(logits, targets, softcap, ignore_index):
    n = logits.numel() // logits.shape[-1]
    return (logits.new_empty((), dtype=torch.float32),
            logits.new_empty((n,), dtype=torch.float32))


@torch.library.custom_op("autoevolve::softcap_cross_entropy_backward", mutates_args=())
def softcap_cross_entropy_backward_op(grad: torch.Tensor, logits: torch.Tensor,
                                      targets: torch.Tensor, lse: torch.Tensor, softcap: float,
                                      ignore_index: int) -> torch.Tensor:
    if backend(logits) == "reference":
        _, vjp = torch.func.vjp(
            lambda lg: reference.softcap_cross_entropy(lg, targets, softcap, ignore_index), logits)
        return vjp(grad.to(torch.float32))[0].contiguous()
    l2, t = _rows(logits, targets)
    dlogits = torch.empty(logits.shape, dtype=logits.dtype, device=logits.device)
    scale = (grad.float() / (t != ignore_index).sum()).reshape(1)
    launch(l2, t, softcap, ignore_index, loss=None, lse=lse, scale=scale,
           grad=dlogits.view(l2.shape))
    return dlogits


@softcap_cross_entropy_backward_op.register_fake
def _(grad, logits, targets, lse, softcap, ignore_index):
    return logits.new_empty(logits.shape)


def _setup_context(ctx, inputs, output):
    logits, targets, softcap, ignore_index = inputs
    ctx.save_for_backward(logits, targets, output[1])
    ctx.mark_non_differentiable(output[1])
    ctx.softcap, ctx.ignore_index = softcap, ignore_index


def _autograd_backward(ctx, grad_loss, grad_lse):
    logits, targets, lse = ctx.saved_tensors
    dlogits = softcap_cross_entropy_backward_op(grad_loss, logits, targets, lse, ctx.softcap,
                                                ctx.ignore_index)
    return dlogits, None, None, None


softcap_cross_entropy_op.register_autograd(_autograd_backward, setup_context=_setup_context)


def softcap_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, softcap: float = 15.0,
                          ignore_index: int = -100) -> torch.Tensor:
    """Mean cross-entropy of softcap * tanh(logits / softcap) against targets; fp32 scalar.

    logits [..., V] in any float dtype, targets [...] integer class ids; rows whose target
    equals ignore_index are left out of the mean (as F.cross_entropy). The capped fp32
    logits are never materialised. Triton on CUDA (and under TRITON_INTERPRET=1), the
    reference elsewhere. Training-only (a loss); works under torch.compile.
    """
    if not softcap > 0:
        raise ValueError(f"softcap must be > 0, got {softcap}")
    if backend(logits) == "reference" or logits.numel() == 0:
        return reference.softcap_cross_entropy(logits, targets, softcap, ignore_index)
    loss, _ = softcap_cross_entropy_op(logits, targets, float(softcap), int(ignore_index))
    return loss
