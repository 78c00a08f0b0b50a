"""MLP activations ReLU^2 and SwiGLU: Triton elementwise kernels, custom ops, autograd.

    relu2(x)         = relu(x)^2                 d/dx = 2 * relu(x)
    swiglu(gate, up) = silu(gate) * up           d/dgate = up * s * (1 + gate * (1 - s)),
                                                 d/dup = silu(gate), s = sigmoid(gate)

    from kernels import relu2, swiglu
    h = relu2(fc(x));  h = swiglu(w1(x), w3(x))

Each is one read and one write per element in fp32 registers, output in the input dtype.
The backward saves only the inputs (eager relu(x).square() also keeps relu(x); eager
silu(gate) * up also keeps silu(gate)) and recomputes the rest. Inputs that are not
contiguous are copied first (elementwise kernels address a flat buffer).

Custom ops `autoevolve::relu2`, `autoevolve::swiglu` and their backwards (fake impls for
torch.compile, autograd); exported programs keep the op. On devices without a Triton
backend, and for gate/up of different shapes (broadcasting), the reference runs.

Does not: fuse the surrounding matmuls, or support in-place operation.
"""

from __future__ import annotations

import torch

from kernels import reference
from kernels._launch import backend, cdiv, kernel, tl

BLOCK = 1024  # elements per program (4 warps: 8 per thread)


@kernel
def _relu2_fwd(x_ptr, y_ptr, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    ok = offs < n
    r = tl.maximum(tl.load(x_ptr + offs, mask=ok, other=0.0).to(tl.float32), 0.0)
    tl.store(y_ptr + offs, (r * r).to(y_ptr.dtype.element_ty), mask=ok)


@kernel
def _relu2_bwd(dy_ptr, x_ptr, dx_ptr, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    ok = offs < n
    r = tl.maximum(tl.load(x_ptr + offs, mask=ok, other=0.0).to(tl.float32), 0.0)
    dy = tl.load(dy_ptr + offs, mask=ok, other=0.0).to(tl.float32)
    tl.store(dx_ptr + offs, (2.0 * r * dy).to(dx_ptr.dtype.element_ty), mask=ok)


@kernel
def _swiglu_fwd(g_ptr, u_ptr, y_ptr, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    ok = offs < n
    g = tl.load(g_ptr + offs, mask=ok, other=0.0).to(tl.float32)
    u = tl.load(u_ptr + offs, mask=ok, other=0.0).to(tl.float32)
    y = g * tl.sigmoid(g) * u
    tl.store(y_ptr + offs, y.to(y_ptr.dtype.element_ty), mask=ok)


@kernel
def _swiglu_bwd(dy_ptr, g_ptr, u_ptr, dg_ptr, du_ptr, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    ok = offs < n
    g = tl.load(g_ptr + offs, mask=ok, other=0.0).to(tl.float32)
    u = tl.load(u_ptr + offs, mask=ok, other=0.0).to(tl.float32)
    dy = tl.load(dy_ptr + offs, mask=ok, other=0.0).to(tl.float32)
    s = tl.sigmoid(g)
    dg = dy * u * s * (1.0 + g * (1.0 - s))
    du = dy * g * s
    tl.store(dg_ptr + offs, dg.to(dg_ptr.dtype.element_ty), mask=ok)
    tl.store(du_ptr + offs, du.to(du_ptr.dtype.element_ty), mask=ok)


def _flat(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous()


def _grid(n: int) -> tuple[int]:
    return (cdiv(n, BLOCK),)


@torch.library.custom_op("autoevolve::relu2", mutates_args=())
def relu2_op(x: torch.Tensor) -> torch.Tensor:
    if backend(x) == "reference":
        return reference.relu2(x).contiguous()
    y = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    _relu2_fwd[_grid(x.numel())](_flat(x), y, x.numel(), BLOCK=BLOCK, num_warps=4)
    return y


@relu2_op.register_fake
def _(x):
    return x.new_empty(x.shape)


@torch.library.custom_op("autoevolve::relu2_backward", mutates_args=())
def relu2_backward_op(dy: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    if backend(x) == "reference":
        return (2.0 * torch.relu(x) * dy).to(x.dtype).contiguous()
    dx = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    _relu2_bwd[_grid(x.numel())](_flat(dy), _flat(x), dx, x.numel(), BLOCK=BLOCK, num_warps=4)
    return dx


@relu2_backward_op.register_fake
def _(dy, x):
    return x.new_empty(x.shape)


def _relu2_setup(ctx, inputs, output):
    ctx.save_for_backward(inputs[0])


def _relu2_backward(ctx, dy):
    (x,) = ctx.saved_tensors
    return relu2_backward_op(dy, x)


relu2_op.register_autograd(_relu2_backward, setup_context=_relu2_setup)


def _swiglu_dtype(gate, up) -> torch.dtype:
    return torch.promote_types(gate.dtype, up.dtype)


@torch.library.custom_op("autoevolve::swiglu", mutates_args=())
def swiglu_op(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    if backend(gate) == "reference":
        return reference.swiglu(gate, up).contiguous()
    y = torch.empty(gate.shape, dtype=_swiglu_dtype(gate, up), device=gate.device)
    _swiglu_fwd[_grid(gate.numel())](_flat(gate), _flat(up), y, gate.numel(), BLOCK=BLOCK,
                                     num_warps=4)
    return y


@swiglu_op.register_fake
def _(gate, up):
    return gate.new_empty(gate.shape, dtype=_swiglu_dtype(gate, up))


@torch.library.custom_op("autoevolve::swiglu_backward", mutates_args=())
def swiglu_backward_op(dy: torch.Tensor, gate: torch.Tensor,
                       up: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if backend(gate) == "reference":
        _, vjp = torch.func.vjp(reference.swiglu, gate, up)
        dg, du = vjp(dy.to(_swiglu_dtype(gate, up)))
        return dg.contiguous(), du.contiguous()
    dg = torch.empty(gate.shape, dtype=gate.dtype, device=gate.device)
    du = torch.empty(up.shape, dtype=up.dtype, device=up.device)
    _swiglu_bwd[_grid(gate.numel())](_flat(dy), _flat(gate), _flat(up), dg, du, gate.numel(),
                                     BLOCK=BLOCK, num_warps=4)
    return dg, du


@swiglu_backward_op.register_fake
def _(dy, gate, up):
    return gate.new_empty(gate.shape), up.new_empty(up.shape)


def _swiglu_setup(ctx, inputs, output):
    ctx.save_for_backward(*inputs)


def _swiglu_backward(ctx, dy):
    gate, up = ctx.saved_tensors
    return swiglu_backward_op(dy, gate, up)


swiglu_op.register_autograd(_swiglu_backward, setup_context=_swiglu_setup)


def relu2(x: torch.Tensor) -> torch.Tensor:
    """relu(x)^2 elementwise, output in x.dtype; Triton on CUDA (and under TRITON_INTERPRET=1).

    Works under torch.compile and torch.export (custom op `autoevolve::relu2`).
    """
    if backend(x) == "reference" or x.numel() == 0 or not x.is_floating_point():
        return reference.relu2(x)
    return relu2_op(x)


def swiglu(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """silu(gate) * up elementwise; Triton on CUDA (and under TRITON_INTERPRET=1).

    gate and up of the same shape and device; otherwise (broadcasting) the reference runs.
    Works under torch.compile and torch.export (custom op `autoevolve::swiglu`).
    """
    if (backend(gate) == "reference" or gate.shape != up.shape or gate.device != up.device
            or gate.numel() == 0 or not gate.is_floating_point()):
        return reference.swiglu(gate, up)
    return swiglu_op(gate, up)
