"""Variant genome: baseline.py with a rotary base of 200,000.

Differs from baseline.py: ROPE_BASE 10,000 -> 200,000, so the slowest rotary frequencies
turn ~20x more slowly and distant positions in the 2048-token context stay distinguishable.
Why: RoPE base 200k was a kept improvement in published autoresearch runs on an H100
(CONTEXT.md, "Changes that helped").

Everything else is baseline.py, whose description follows.

What it is: a GPT (depth 8, model dim 512, 4 heads of 128, ~50 M parameters at vocabulary 8192)
with rotary embeddings, weightless RMSNorm (also on queries and keys), a ReLU^2 MLP, value
embeddings on alternating layers mixed in through a small input-dependent gate, per-layer
residual and x0-skip scalars, sliding-window attention ("SSSL": short = half the context), a tanh
logit softcap of 15 and an untied head. Optimiser: Muon (Nesterov momentum, Polar Express
Newton-Schulz orthogonalisation, per-row variance normalisation, cautious weight decay) on the
block matrices and AdamW on embeddings, head and scalars; 2**19 tokens per optimiser step by
gradient accumulation; LR warm-down over the last half of the wall-clock budget.

How to run: `python -m evolve eval seeds/baseline.py` (the harness hands out the data, keeps the
clock and scores the submitted model). Sized for one 80 GB H100; every size follows from the
constants below, so shrink DEPTH, ASPECT_RATIO, HEAD_DIM or DEVICE_BATCH_SIZE for smaller devices.

What it does not do: compute its own score, see validation data, or download kernels (attention
is torch's scaled_dot_product_attention, short windows with a cached boolean band mask, except
when training short windows on CUDA: FlexAttention with a block mask, compiled, skips the key
tiles outside the window. The exported model keeps the band mask, the same attention: torch
2.13 cannot save a FlexAttention graph, and FlexAttention has no backward on CPU).
"""
import gc
import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.attention.flex_attention import create_block_mask, flex_attention

from evolve import harness

# ---- model shape
DEPTH = 8  # transformer blocks
ASPECT_RATIO = 64  # model dim = DEPTH * ASPECT_RATIO, rounded up to a multiple of HEAD_DIM
HEAD_DIM = 128  # channels per attention head
MLP_RATIO = 4  # MLP hidden width / model dim
WINDOW_PATTERN = "SSSL"  # attention window per layer, cycled: S = short, L = full; last layer is always L
SHORT_WINDOW_FRAC = 0.5  # short window as a fraction of SEQ_LEN (tokens a query sees, itself included)
ROPE_BASE = 200_000.0  # rotary base period (positions); larger = slower low frequencies
LOGIT_SOFTCAP = 15.0  # logits squashed into (-15, 15) by tanh
VE_GATE_CHANNELS = 32  # leading channels of the block input that feed the value-embedding gate
X0_INIT = 0.1  # initial weight of the x0 skip (normed token embedding) into every block
INIT_SCALE = 1.0  # multiplies the uniform init bound sqrt(3 / dim) of block matrices
HEAD_INIT_STD = 0.001  # lm_head init std: near zero, so training starts at uniform logits
# ---- batch
TOTAL_BATCH_TOKENS = 2**19  # ~524K tokens per optimiser step, reached by gradient accumulation
DEVICE_BATCH_SIZE = 128  # rows per forward/backward pass (fits an 80 GB H100 at SEQ_LEN 2048)
# ---- optimiser
MATRIX_LR = 0.04  # Muon LR for the 2-D block matrices
EMBEDDING_LR = 0.6  # AdamW LR for token and value embeddings (at dim LR_REF_DIM)
UNEMBEDDING_LR = 0.004  # AdamW LR for lm_head (at dim LR_REF_DIM)
SCALAR_LR = 0.5  # AdamW LR for the x0-skip scalars
RESID_LR_FRAC = 0.01  # residual scalars train at SCALAR_LR times this (they multiply the whole stream)
LR_REF_DIM = 768  # AdamW LRs were tuned at this width and scale as (dim / LR_REF_DIM) ** -0.5
ADAM_BETAS = (0.8, 0.95)  # AdamW (beta1, beta2) for embeddings, head and residual scalars
X0_BETAS = (0.96, 0.95)  # AdamW (beta1, beta2) for the x0-skip scalars: smoother first moment
ADAM_EPS = 1e-10  # AdamW denominator floor
EMBEDDING_WD = 0.0  # AdamW decoupled weight decay on the token embedding
VALUE_EMBEDDING_WD = 0.0  # AdamW decoupled weight decay on the value embeddings
HEAD_WD = 0.0  # AdamW decoupled weight decay on lm_head
WEIGHT_DECAY = 0.2  # Muon cautious weight decay; decays linearly to 0 over the budget
MUON_BETA2 = 0.95  # EMA factor of the per-row mean square of the update (variance normalisation)
MUON_MOMENTUM_START = 0.85  # Muon momentum at step 0
MUON_MOMENTUM_END = 0.95  # Muon momentum after the ramp
MUON_MOMENTUM_STEPS = 300  # optimiser steps of the linear momentum ramp
# ---- schedule (fractions of the wall-clock budget, read from harness.progress())
WARMUP_RATIO = 0.0  # linear LR warm-up (published: warm-up hurts here)
WARMDOWN_RATIO = 0.5  # linear LR decay over the last half of the budget
FINAL_LR_FRAC = 0.0  # LR at the end of the budget, as a fraction of the peak
SEED = 42  # torch RNG seed for the initial weights
LOG_EVERY = 10  # optimiser steps between harness.log calls (each one syncs the device)

# ---- derived sizes
CUDA = harness.DEVICE == "cuda"
MODEL_DIM = math.ceil(DEPTH * ASPECT_RATIO / HEAD_DIM) * HEAD_DIM
N_HEAD = MODEL_DIM // HEAD_DIM
SHORT_WINDOW = max(1, int(SHORT_WINDOW_FRAC * harness.SEQ_LEN))
GRAD_ACCUM = max(1, TOTAL_BATCH_TOKENS // (DEVICE_BATCH_SIZE * harness.SEQ_LEN))


def rms_norm(x):
    """RMSNorm over the last dimension, without a learned weight."""
    return F.rms_norm(x, (x.size(-1),))


def rotary_tables(seq_len, head_dim, base):
    """cos and sin of the rotation angle for each (position, frequency), each [seq_len, head_dim / 2]."""
    inv_freq = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
    angles = torch.outer(torch.arange(seq_len, dtype=torch.float32), inv_freq)
    return angles.cos(), angles.sin()


def apply_rotary(x, cos, sin):
    """Rotate pairs (x[i], x[i + D/2]) of x [B, T, H, D] by the angle of their position."""
    x1, x2 = x.chunk(2, dim=-1)
    cos, sin = cos[:, None, :].to(x.dtype), sin[:, None, :].to(x.dtype)  # broadcast over heads
    return torch.cat((x1 * cos + x2 * sin, x2 * cos - x1 * sin), dim=-1)


def window_block_mask(window, seq_len, device):
    """FlexAttention's block mask for causal attention over the last `window` tokens (a query
    sees itself and window - 1 keys before it): tiles of 128 x 128 tokens wholly outside that
    band are skipped, tiles wholly inside it are not masked."""

    def visible(b, h, q, k):
        return torch.logical_and(q >= k, q - k < window)

    return create_block_mask(visible, None, None, seq_len, seq_len, device=device)


def has_value_embedding(layer):
    """Alternating layers carry a value embedding, always including the last one."""
    return layer % 2 == (DEPTH - 1) % 2


class Attention(nn.Module):
    def __init__(self, layer):
        super().__init__()
        self.c_q = nn.Linear(MODEL_DIM, MODEL_DIM, bias=False)
        self.c_k = nn.Linear(MODEL_DIM, MODEL_DIM, bias=False)
        self.c_v = nn.Linear(MODEL_DIM, MODEL_DIM, bias=False)
        self.c_proj = nn.Linear(MODEL_DIM, MODEL_DIM, bias=False)
        self.gate_channels = min(VE_GATE_CHANNELS, MODEL_DIM)
        self.ve_gate = nn.Linear(self.gate_channels, N_HEAD, bias=False) if has_value_embedding(layer) else None

    def forward(self, x, ve, cos, sin, mask, block_mask):
        B, T, _ = x.shape
        q = self.c_q(x).view(B, T, N_HEAD, HEAD_DIM)
        k = self.c_k(x).view(B, T, N_HEAD, HEAD_DIM)
        v = self.c_v(x).view(B, T, N_HEAD, HEAD_DIM)
        if ve is not None:  # per-head gate in (0, 2), computed from this token's input only
            gate = 2 * torch.sigmoid(self.ve_gate(x[..., : self.gate_channels]))
            v = v + gate.unsqueeze(-1) * ve.view(B, T, N_HEAD, HEAD_DIM)
        q = apply_rotary(rms_norm(q), cos, sin)  # norm and rotation commute: rotation keeps the norm
        k = apply_rotary(rms_norm(k), cos, sin)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # [B, H, T, D]
        if mask is None:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        elif block_mask is not None and torch.is_grad_enabled():  # training on CUDA
            y = flex_attention(q, k, v, block_mask=block_mask)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.c_proj(y.transpose(1, 2).reshape(B, T, MODEL_DIM))


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.c_fc = nn.Linear(MODEL_DIM, MLP_RATIO * MODEL_DIM, bias=False)
        self.c_proj = nn.Linear(MLP_RATIO * MODEL_DIM, MODEL_DIM, bias=False)

    def forward(self, x):
        return self.c_proj(F.relu(self.c_fc(x)).square())


class Block(nn.Module):
    def __init__(self, layer):
        super().__init__()
        short = WINDOW_PATTERN[layer % len(WINDOW_PATTERN)] == "S" and layer != DEPTH - 1
        self.window = SHORT_WINDOW if short else harness.SEQ_LEN  # tokens a query sees, itself included
        self.attn = Attention(layer)
        self.mlp = MLP()

    def forward(self, x, ve, cos, sin, mask, block_mask=None):
        x = x + self.attn(rms_norm(x), ve, cos, sin, mask, block_mask)
        return x + self.mlp(rms_norm(x))


class GPT(nn.Module):
    def __init__(self, vocab_size, seq_len):
        super().__init__()
        self.wte = nn.Embedding(vocab_size, MODEL_DIM)
        self.value_embeds = nn.ModuleDict(
            {str(i): nn.Embedding(vocab_size, MODEL_DIM) for i in range(DEPTH) if has_value_embedding(i)}
        )
        self.blocks = nn.ModuleList([Block(i) for i in range(DEPTH)])
        self.lm_head = nn.Linear(MODEL_DIM, vocab_size, bias=False)
        self.resid_lambdas = nn.Parameter(torch.ones(DEPTH))
        self.x0_lambdas = nn.Parameter(torch.full((DEPTH,), X0_INIT))
        cos, sin = rotary_tables(seq_len, HEAD_DIM, ROPE_BASE)
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)
        # allowed[i, j]: query i may attend key j (causal, and at most SHORT_WINDOW tokens back)
        pos = torch.arange(seq_len)
        offset = pos[:, None] - pos[None, :]
        self.register_buffer("short_mask", (offset >= 0) & (offset < SHORT_WINDOW), persistent=False)
        # the same band for FlexAttention, on CUDA (built once: the sequence length is fixed)
        self.short_block_mask = window_block_mask(SHORT_WINDOW, seq_len, harness.DEVICE) if CUDA else None
        self.init_weights()

    @torch.no_grad()
    def init_weights(self):
        bound = INIT_SCALE * (3.0 / MODEL_DIM) ** 0.5  # uniform(-b, b) has std b / sqrt(3)
        nn.init.normal_(self.wte.weight, std=1.0)
        nn.init.normal_(self.lm_head.weight, std=HEAD_INIT_STD)
        for emb in self.value_embeds.values():
            nn.init.uniform_(emb.weight, -bound, bound)
        for block in self.blocks:
            for lin in (block.attn.c_q, block.attn.c_k, block.attn.c_v, block.mlp.c_fc):
                nn.init.uniform_(lin.weight, -bound, bound)
            nn.init.zeros_(block.attn.c_proj.weight)  # every block starts as the identity
            nn.init.zeros_(block.mlp.c_proj.weight)
            if block.attn.ve_gate is not None:
                nn.init.zeros_(block.attn.ve_gate.weight)  # gate starts at 1 for every head

    def forward(self, idx):
        T = idx.size(1)
        cos, sin = self.cos[:T], self.sin[:T]
        x = x0 = rms_norm(self.wte(idx))
        for i, block in enumerate(self.blocks):
            x = self.resid_lambdas[i] * x + self.x0_lambdas[i] * x0
            ve = self.value_embeds[str(i)](idx) if str(i) in self.value_embeds else None
            mask = None if block.window >= T else self.short_mask[:T, :T]
            flex = self.short_block_mask if T == self.short_mask.size(0) else None
            x = block(x, ve, cos, sin, mask, flex)
        logits = self.lm_head(rms_norm(x)).float()
        return LOGIT_SOFTCAP * torch.tanh(logits / LOGIT_SOFTCAP)


# ---- optimiser: Muon for block matrices, AdamW for everything else

# Polar Express (Amsel et al. 2025) coefficients (a, b, c) of X <- aX + b(XX^T)X + c(XX^T)^2 X, one per step
polar_express = (
    (8.156554524902461, -22.48329292557795, 15.878769915207462),
    (4.042929935166739, -2.808917465908714, 0.5000178451051316),
    (3.8916678022926607, -2.772484153217685, 0.5060648178503393),
    (3.285753657755655, -2.3681294933425376, 0.46449024233003106),
    (2.3465413258596377, -1.7097828382687081, 0.42323551169305323),
)


def orthogonalise(g):
    """Approximately replace the singular values of each matrix in g [N, rows, cols] by 1."""
    x = g.bfloat16() if g.is_cuda else g.float()
    tall = x.size(-2) > x.size(-1)
    if tall:  # iterate on the wide orientation: X X^T is then the smaller Gram matrix
        x = x.mT
    x = x / (x.norm(dim=(-2, -1), keepdim=True) * 1.02 + 1e-6)  # spectral norm <= 1, 2% margin
    for a, b, c in polar_express:
        gram = x @ x.mT
        x = a * x + (b * gram + c * gram @ gram) @ x
    return (x.mT if tall else x).to(g.dtype)


def normalise_rows(u, second_moment, beta2):
    """Divide each row (of the longer side) of u by the root of its EMA mean square, keeping the total norm."""
    u = u.float()
    row_ms = u.square().mean(dim=-1 if u.size(-2) >= u.size(-1) else -2, keepdim=True)
    second_moment.lerp_(row_ms, 1 - beta2)
    scaled = u * second_moment.clamp_min(1e-10).rsqrt()
    ratio = u.norm(dim=(-2, -1), keepdim=True) / scaled.norm(dim=(-2, -1), keepdim=True).clamp_min(1e-10)
    return scaled * ratio


class MuonAdamW(torch.optim.Optimizer):
    """Each param group has kind "muon" (params of one shape, updated stacked) or "adamw"."""

    def __init__(self, groups):
        super().__init__(groups, defaults={})
        for group in self.param_groups:
            group["initial_lr"] = group["lr"]

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            if group["kind"] == "muon":
                self.muon_step(group)
            else:
                self.adamw_step(group)

    def adamw_step(self, group):
        beta1, beta2 = group["betas"]
        for p in group["params"]:
            if p.grad is None:  # a parameter the forward pass did not use
                continue
            state = self.state[p]
            if not state:
                state.update(t=0, m=torch.zeros_like(p), v=torch.zeros_like(p))
            state["t"] += 1
            state["m"].lerp_(p.grad, 1 - beta1)
            state["v"].lerp_(p.grad.square(), 1 - beta2)
            denom = (state["v"] / (1 - beta2 ** state["t"])).sqrt_().add_(ADAM_EPS)
            p.mul_(1 - group["lr"] * group["weight_decay"])
            p.addcdiv_(state["m"], denom, value=-group["lr"] / (1 - beta1 ** state["t"]))

    def muon_step(self, group):
        params = group["params"]
        grads = torch.stack([p.grad for p in params])
        state = self.state[params[0]]
        rows, cols = grads.shape[-2:]
        if not state:
            stat_shape = (len(params), rows, 1) if rows >= cols else (len(params), 1, cols)
            state.update(momentum=torch.zeros_like(grads), second=grads.new_zeros(stat_shape, dtype=torch.float32))
        momentum = group["momentum"]
        state["momentum"].lerp_(grads, 1 - momentum)
        update = grads.lerp_(state["momentum"], momentum)  # Nesterov: look one momentum step ahead
        update = normalise_rows(orthogonalise(update), state["second"], MUON_BETA2)
        lr = group["lr"] * max(1.0, rows / cols) ** 0.5  # tall matrices get a larger step
        weights = torch.stack(params)
        agree = (update * weights >= 0).to(weights.dtype)  # cautious: decay only where the update shrinks |w|
        weights.sub_(lr * group["weight_decay"] * weights * agree).sub_(lr * update.to(weights.dtype))
        for p, w in zip(params, weights.unbind(0)):
            p.copy_(w)


def build_optimiser(model):
    adam_scale = (MODEL_DIM / LR_REF_DIM) ** -0.5
    matrices = [p for p in model.blocks.parameters()]
    assert all(p.ndim == 2 for p in matrices), "Muon takes only 2-D block parameters"
    groups = [
        dict(kind="muon", params=[p for p in matrices if p.shape == shape], lr=MATRIX_LR, momentum=MUON_MOMENTUM_START, weight_decay=WEIGHT_DECAY)
        for shape in sorted({p.shape for p in matrices})
    ]

    def adamw(params, lr, weight_decay=0.0, betas=ADAM_BETAS):
        return dict(kind="adamw", params=list(params), lr=lr, betas=betas, weight_decay=weight_decay)

    groups += [
        adamw(model.wte.parameters(), EMBEDDING_LR * adam_scale, EMBEDDING_WD),
        adamw(model.value_embeds.parameters(), EMBEDDING_LR * adam_scale, VALUE_EMBEDDING_WD),
        adamw(model.lm_head.parameters(), UNEMBEDDING_LR * adam_scale, HEAD_WD),
        adamw([model.resid_lambdas], SCALAR_LR * RESID_LR_FRAC),
        adamw([model.x0_lambdas], SCALAR_LR, betas=X0_BETAS),
    ]
    return MuonAdamW([g for g in groups if g["params"]])


def lr_multiplier(progress):
    """Piecewise-linear LR factor: warm-up, flat, then warm-down to FINAL_LR_FRAC at progress 1."""
    if progress < WARMUP_RATIO:
        return progress / WARMUP_RATIO  # only reached when WARMUP_RATIO > 0
    if progress < 1.0 - WARMDOWN_RATIO:
        return 1.0
    left = max(0.0, 1.0 - progress) / max(WARMDOWN_RATIO, 1e-9)
    return FINAL_LR_FRAC + (1.0 - FINAL_LR_FRAC) * left


# ---- training
torch.manual_seed(SEED)
if CUDA:
    torch.set_float32_matmul_precision("high")  # TF32 for the few fp32 matmuls outside autocast
model = GPT(harness.VOCAB_SIZE, harness.SEQ_LEN).to(harness.DEVICE)
optimiser = build_optimiser(model)


def train_loss(inputs, targets):
    logits = model(inputs)
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten())  # targets may be a strided view


loss_fn = torch.compile(train_loss, dynamic=False) if CUDA else train_loss  # export uses the plain module
gc.collect()
gc.freeze()  # what exists now is never scanned again: no collector pauses inside the loop
step, micro = 0, 0
for inputs, targets in harness.train_batches(DEVICE_BATCH_SIZE):
    with torch.autocast(device_type=harness.DEVICE, dtype=torch.bfloat16, enabled=CUDA):
        loss = loss_fn(inputs, targets)
    (loss / GRAD_ACCUM).backward()
    micro += 1
    if micro % GRAD_ACCUM:
        continue
    progress = harness.progress()
    lr_mult = lr_multiplier(progress)
    ramp = min(step / max(1, MUON_MOMENTUM_STEPS), 1.0)
    for group in optimiser.param_groups:
        group["lr"] = group["initial_lr"] * lr_mult
        if group["kind"] == "muon":
            group["momentum"] = (1 - ramp) * MUON_MOMENTUM_START + ramp * MUON_MOMENTUM_END
            group["weight_decay"] = WEIGHT_DECAY * (1.0 - progress)
    optimiser.step()
    model.zero_grad(set_to_none=True)
    if step % LOG_EVERY == 0:
        harness.log(step, loss.item())
    step += 1

harness.submit(model)
