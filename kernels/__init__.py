"""Triton kernels for the training hot spots of a GPT genome, each with a PyTorch reference.

    import kernels
    y = kernels.rms_norm(x)                                  # RMS norm, last dim
    q = kernels.rotary(q, cos, sin)                          # half-split RoPE, [B, T, H, D]
    h = kernels.relu2(h);  h = kernels.swiglu(gate, up)      # MLP activations
    loss = kernels.softcap_cross_entropy(logits, targets, softcap=15.0)
    loss = kernels.linear_softcap_cross_entropy(hidden, lm_head.weight, targets, softcap=15.0)

Dispatch, decided per call (see _launch.py): CUDA tensors run the compiled Triton kernels;
with TRITON_INTERPRET=1 set, CPU tensors run the same kernels in Triton's interpreter (slow,
for checking without a GPU); anything else runs `kernels.reference`, the plain PyTorch
function of the same semantics. `kernels.backend(t)` says which. Importing this package
never fails, with or without CUDA or Triton.

Every kernel has a forward and a backward and is a torch.library custom op (namespace
`autoevolve`) with a fake impl and registered autograd, so it works under torch.compile.
rms_norm, rotary, relu2 and swiglu may sit in a model's forward: torch.export keeps the op,
and the exported program runs in any process that imports `kernels` first (on CPU without
the interpreter the op runs the reference). The two cross-entropies are training-only.

`SWAPS` lists which reference op each kernel replaces, for a genome mutation operator.
Run the timings with `python -m kernels.bench` (needs CUDA).

Does not: autotune, cover attention (use F.scaled_dot_product_attention), or train anything.
"""

from __future__ import annotations

import importlib
import types
from dataclasses import dataclass
from typing import Callable

from kernels._launch import HAVE_TRITON, backend
from kernels.activations import relu2, swiglu
from kernels.cross_entropy import softcap_cross_entropy
from kernels.linear_cross_entropy import linear_softcap_cross_entropy
from kernels.rmsnorm import rms_norm
from kernels.rope import rotary

__all__ = ["HAVE_TRITON", "SWAPS", "Swap", "backend", "linear_softcap_cross_entropy", "relu2",
           "rms_norm", "rotary", "softcap_cross_entropy", "swiglu"]


def _resolve(qualname: str) -> Callable:
    module, _, name = qualname.rpartition(".")
    return getattr(importlib.import_module(module), name)


@dataclass(frozen=True)
class Swap:
    """One reference op a genome may contain, and the kernel that replaces it.

    torch_op:    qualified name of the PyTorch callable at the heart of the pattern.
    pattern:     the expression a genome writes, with {placeholders} for its operands.
    kernel:      qualified name of the replacing kernel function.
    replacement: the kernel call for the same placeholders; pattern and replacement compute
                 the same values (tests evaluate both).
    reference:   qualified name of the plain PyTorch function with the kernel's signature.
    in_forward:  True if the kernel may sit in model.forward (exportable); False: loss only.
    note:        what a mutation operator must know beyond the pattern.
    """

    torch_op: str
    pattern: str
    kernel: str
    replacement: str
    reference: str
    in_forward: bool
    note: str = ""

    def kernel_fn(self) -> Callable:
        return _resolve(self.kernel)

    def reference_fn(self) -> Callable:
        return _resolve(self.reference)


_HALF = "{x}.shape[-1] // 2"

SWAPS: types.MappingProxyType = types.MappingProxyType({
    "rms_norm": Swap(
        torch_op="torch.nn.functional.rms_norm",
        pattern="F.rms_norm({x}, ({x}.size(-1),))",
        kernel="kernels.rms_norm",
        replacement="kernels.rms_norm({x})",
        reference="kernels.reference.rms_norm",
        in_forward=True,
        note="eps and weight map to kernels.rms_norm(x, eps=..., weight=...).",
    ),
    "rotary": Swap(
        torch_op="torch.cat",
        pattern=(f"torch.cat([{{x}}[..., :{_HALF}] * {{cos}} + {{x}}[..., {_HALF}:] * {{sin}}, "
                 f"{{x}}[..., :{_HALF}] * (-{{sin}}) + {{x}}[..., {_HALF}:] * {{cos}}], 3)"),
        kernel="kernels.rotary",
        replacement="kernels.rotary({x}, {cos}, {sin})",
        reference="kernels.reference.rotary",
        in_forward=True,
        note=("Genomes usually write this as a helper (d = x.shape[3] // 2; x1, x2 = x[..., :d], "
              "x[..., d:]; y1 = x1 * cos + x2 * sin; y2 = x1 * (-sin) + x2 * cos; "
              "return torch.cat([y1, y2], 3)): replace the helper's body. x is [B, T, H, D], "
              "cos/sin [1, T, 1, D/2] buffers (no gradient)."),
    ),
    "rotary_halves": Swap(
        torch_op="torch.cat",
        pattern="torch.cat(({x1} * {cos} + {x2} * {sin}, {x2} * {cos} - {x1} * {sin}), dim=-1)",
        kernel="kernels.rotary",
        replacement="kernels.rotary(torch.cat(({x1}, {x2}), dim=-1), {cos}, {sin})",
        reference="kernels.reference.rotary",
        in_forward=True,
        note=("The seeds' form (x1, x2 = x.chunk(2, dim=-1); cos, sin [T, 1, D/2]). Where x1, x2 "
              "are known to be x.chunk(2, dim=-1), kernels.rotary(x, cos, sin) saves the cat."),
    ),
    "relu2": Swap(
        torch_op="torch.nn.functional.relu",
        pattern="F.relu({x}).square()",
        kernel="kernels.relu2",
        replacement="kernels.relu2({x})",
        reference="kernels.reference.relu2",
        in_forward=True,
        note="Also written torch.relu(x).square(), F.relu(x) ** 2, F.relu(x).pow(2).",
    ),
    "swiglu": Swap(
        torch_op="torch.nn.functional.silu",
        pattern="F.silu({gate}) * {up}",
        kernel="kernels.swiglu",
        replacement="kernels.swiglu({gate}, {up})",
        reference="kernels.reference.swiglu",
        in_forward=True,
        note="gate and up of the same shape (otherwise the reference broadcasts).",
    ),
    "softcap_cross_entropy": Swap(
        torch_op="torch.nn.functional.cross_entropy",
        pattern=("F.cross_entropy(({cap} * torch.tanh({logits}.float() / {cap}))"
                 ".view(-1, {logits}.size(-1)), {targets}.view(-1))"),
        kernel="kernels.softcap_cross_entropy",
        replacement="kernels.softcap_cross_entropy({logits}, {targets}, {cap})",
        reference="kernels.reference.softcap_cross_entropy",
        in_forward=False,
        note=("Training loss only. The softcap must be taken out of the logits first: the kernel "
              "applies it. ignore_index=i maps to ignore_index=i."),
    ),
    "linear_softcap_cross_entropy": Swap(
        torch_op="torch.nn.functional.cross_entropy",
        pattern=("F.cross_entropy(({cap} * torch.tanh(F.linear({x}, {weight}).float() / {cap}))"
                 ".view(-1, {weight}.size(0)), {targets}.view(-1))"),
        kernel="kernels.linear_softcap_cross_entropy",
        replacement="kernels.linear_softcap_cross_entropy({x}, {weight}, {targets}, {cap})",
        reference="kernels.reference.linear_softcap_cross_entropy",
        in_forward=False,
        note=("Training loss only: the training loop needs the final hidden state and the head "
              "weight (lm_head.weight); model(inputs) must still return logits for the scorer."),
    ),
})
