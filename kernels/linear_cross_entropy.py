"""Final linear layer + softcapped cross-entropy, chunked over tokens: custom op, autograd.

    loss = softcap_cross_entropy(x @ weight.T, targets)     x [..., C], weight [V, C]

    from kernels import linear_softcap_cross_entropy
    loss = linear_softcap_cross_entropy(hidden, model.lm_head.weight, targets)

The [tokens, V] logits are never held at once. Tokens are processed in chunks; for each
chunk the logits come from one matmul, the cross-entropy kernel (cross_entropy.py) computes
the loss *and* writes the logit gradient over the logits in place in the same launch, and
two more matmuls turn it into this chunk's dx and its share of dweight (accumulated in
fp32). So the forward already holds the gradients; the backward only scales them by the
incoming gradient. Default chunk: about as many logits as x has elements
(tokens / ceil(V / C), rounded up to a power of two), e.g. 16384 tokens at C=512, V=8192.

Under autocast, x is cast to the autocast dtype first (as F.linear would be) and the
matmuls run in x's dtype; weight is cast to it per call, its gradient is accumulated in fp32
and returned in weight's own dtype. Without grad (no_grad, or neither input requires it)
only the loss is computed.

Training-only: this is the loss, not part of the model's forward (a genome's model must
still return logits, see program.md), so torch.export is not a goal. Custom op
`autoevolve::linear_softcap_cross_entropy` (fake impl, autograd) works under torch.compile.

Does not: support a bias, double backward, or reductions other than the mean.
"""

from __future__ import annotations

from typing import Optional

import torch

from kernels import cross_entropy, reference
from kernels._launch import backend, cdiv, next_power_of_2


def default_chunk(n_tokens: int, vocab: int, hidden: int) -> int:
    """Tokens per chunk so that a chunk's logits are about as large as x itself."""
    return max(1, next_power_of_2(cdiv(n_tokens, max(1, cdiv(vocab, hidden)))))


def _forward(x, weight, targets, cap, ignore_index, chunk, compute_grad):
    C = x.shape[-1]
    x2 = x.reshape(-1, C)
    t = targets.reshape(-1).contiguous()
    N, V = x2.shape[0], weight.shape[0]
    w = weight.to(x.dtype)
    n_valid = (t != ignore_index).sum()
    scale = (1.0 / n_valid.float()).reshape(1)  # d(mean)/d(row loss), stays on the device
    losses = torch.empty(N, dtype=torch.float32, device=x.device)
    lse = torch.empty(N, dtype=torch.float32, device=x.device)
    dx = torch.empty((N, C) if compute_grad else (0,), dtype=x.dtype, device=x.device)
    dw = torch.zeros((V, C) if compute_grad else (0,), dtype=torch.float32, device=x.device)
    with torch.autocast(x.device.type, enabled=False):
        for s in range(0, N, chunk):
            e = min(N, s + chunk)
            xc = x2[s:e]
            logits = xc @ w.t()  # [e - s, V], the only logits alive at any time
            cross_entropy.launch(logits, t[s:e], cap, ignore_index, loss=losses[s:e],
                                 lse=lse[s:e], scale=scale if compute_grad else None,
                                 grad=logits if compute_grad else None)
            if compute_grad:  # logits now hold dloss/dlogits
                torch.mm(logits, w, out=dx[s:e])
                if dw.dtype == logits.dtype:
                    dw.addmm_(logits.t(), xc)
                else:
                    dw += (logits.t() @ xc).float()
    loss = losses.sum() / n_valid
    if compute_grad:
        return loss, dx.view(x.shape), dw.to(weight.dtype)
    return loss, dx, dw.to(weight.dtype)


@torch.library.custom_op("autoevolve::linear_softcap_cross_entropy", mutates_args=())
def linear_softcap_cross_entropy_op(x: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                                    softcap: float, ignore_index: int, chunk: int,
                                    compute_grad: bool
                                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Returns (mean loss fp32, dloss/dx, dloss/dweight); the grads are empty without compute_grad."""
    if backend(x) == "reference":
        def f(x_, w_):
            return reference.linear_softcap_cross_entropy(x_, w_, targets, softcap, ignore_index)
        if not compute_grad:
            return f(x, weight), x.new_empty(0), weight.new_empty(0)
        loss, vjp = torch.func.vjp(f, x, weight)
        dx, dw = vjp(torch.ones_like(loss))
        return loss, dx.contiguous(), dw.contiguous()
    return _forward(x, weight, targets, softcap, ignore_index, chunk, compute_grad)


@linear_softcap_cross_entropy_op.register_fake
def _(x, weight, targets, softcap, ignore_index, chunk, compute_grad):
    loss = x.new_empty((), dtype=torch.float32)
    if compute_grad:
        return loss, x.new_empty(x.shape), weight.new_empty(weight.shape)
    return loss, x.new_empty(0), weight.new_empty(0)


def _setup_context(ctx, inputs, output):
    loss, dx, dw = output
    ctx.compute_grad = inputs[-1]
    ctx.save_for_backward(dx, dw)
    ctx.mark_non_differentiable(dx, dw)


def _autograd_backward(ctx, grad_loss, grad_dx, grad_dw):
    if not ctx.compute_grad:
        raise RuntimeError("linear_softcap_cross_entropy ran without grad; call it with grad enabled")
    dx, dw = ctx.saved_tensors
    return grad_loss * dx, grad_loss * dw, None, None, None, None, None


linear_softcap_cross_entropy_op.register_autograd(_autograd_backward, setup_context=_setup_context)


def linear_softcap_cross_entropy(x: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                                 softcap: float = 15.0, ignore_index: int = -100,
                                 chunk_tokens: Optional[int] = None) -> torch.Tensor:
    """Mean softcapped cross-entropy of x @ weight.T against targets, chunked over tokens.

    x [..., C] hidden states, weight [V, C] (an nn.Linear weight, no bias), targets [...]
    class ids (ignore_index rows are left out of the mean). Returns an fp32 scalar.
    chunk_tokens=None picks `default_chunk`. Triton on CUDA (and under TRITON_INTERPRET=1),
    the reference elsewhere. Training-only; works under torch.compile.
    """
    if not softcap > 0:
        raise ValueError(f"softcap must be > 0, got {softcap}")
    dev = x.device.type
    if backend(x) == "reference" or x.numel() == 0 or weight.dim() != 2:
        return reference.linear_softcap_cross_entropy(x, weight, targets, softcap, ignore_index)
    if torch.is_autocast_enabled(dev):
        x = x.to(torch.get_autocast_dtype(dev))
    n_tokens = x.numel() // x.shape[-1]
    chunk = chunk_tokens or default_chunk(n_tokens, weight.shape[0], x.shape[-1])
    grad = torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad)
    loss, _, _ = linear_softcap_cross_entropy_op(x, weight, targets, float(softcap),
                                                 int(ignore_index), int(chunk), grad)
    return loss
