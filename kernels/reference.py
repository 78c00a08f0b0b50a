"""Plain PyTorch references for every kernel in kernels/: the same functions, eager ops only.

These are the semantics each kernel must reproduce (tests compare both against a float64
run of these formulas), the fallback on devices without a Triton backend, and what a
genome typically writes before a mutation swaps in the kernel. They are differentiable
through autograd and export cleanly with torch.export (plain aten ops).

    from kernels import reference
    y = reference.rms_norm(x)          # == F.rms_norm(x, (x.size(-1),))

Does not: fuse, chunk, or save memory; that is what the kernels are for.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F


def rms_norm(x: torch.Tensor, eps: Optional[float] = None,
             weight: Optional[torch.Tensor] = None) -> torch.Tensor:
    """RMS norm over the last dim; eps=None means torch.finfo(x.dtype).eps (as F.rms_norm)."""
    return F.rms_norm(x, (x.size(-1),), weight, eps)


def rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Half-split rotary embedding of x [B, T, H, D]; cos, sin broadcast as [1, T, 1, D/2]."""
    d = x.shape[-1] // 2
    x1, x2 = x[..., :d], x[..., d:]
    y1 = x1 * cos + x2 * sin
    y2 = x1 * (-sin) + x2 * cos
    return torch.cat([y1, y2], dim=-1)


def capped(logits: torch.Tensor, cap: float) -> torch.Tensor:
    """cap * tanh(logits / cap) in float32: logits squashed smoothly into (-cap, cap)."""
    return cap * torch.tanh(logits.float() / cap)


def softcap_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, softcap: float = 15.0,
                          ignore_index: int = -100) -> torch.Tensor:
    """Mean cross-entropy (nats) of softcapped fp32 logits [..., V] against targets [...]."""
    z = capped(logits, softcap)
    return F.cross_entropy(z.reshape(-1, z.shape[-1]), targets.reshape(-1),
                           ignore_index=ignore_index)


def linear_softcap_cross_entropy(x: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                                 softcap: float = 15.0, ignore_index: int = -100) -> torch.Tensor:
    """softcap_cross_entropy(F.linear(x, weight), targets): x [..., C], weight [V, C]."""
    return softcap_cross_entropy(F.linear(x, weight), targets, softcap, ignore_index)


def relu2(x: torch.Tensor) -> torch.Tensor:
    """relu(x) squared (the ReLU^2 MLP activation)."""
    return F.relu(x).square()


def swiglu(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """silu(gate) * up (the SwiGLU MLP activation)."""
    return F.silu(gate) * up
