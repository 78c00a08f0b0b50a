"""Where a kernel runs: compiled Triton, Triton's interpreter, or the PyTorch reference.

The choice is made per call, from the tensor's device and the *current* environment:

    backend(t) == "triton"       t is a CUDA tensor (and Triton is importable)
    backend(t) == "interpreter"  TRITON_INTERPRET=1 is set now (CPU or CUDA tensor)
    backend(t) == "reference"    anything else: CPU without the variable, MPS, no Triton

Why per call: `triton.jit` fixes compiled-vs-interpreted when a kernel is decorated, so a
process that imported `kernels` without TRITON_INTERPRET (a seed, another test) could never
interpret, and one that had it set could never compile. Here each kernel keeps its plain
Python function and builds a `JITFunction` or an `InterpretedFunction` from it on first
use; nested `triton.jit` helpers (ours and triton.language's own `tl.sum`, `tl.sigmoid`,
...) are interpreted by routing `JITFunction.__call__` to the interpreter for the duration
of an interpreted launch only.

Importing this module never fails: without Triton, HAVE_TRITON is False, `tl` is None and
every backend is "reference". `compile_for_cuda` compiles a kernel to a cubin for a given
architecture without a GPU (the bundled ptxas is enough): a cheap check that the compiled
path builds, used by the tests.

Does not: autotune, cache launches, or pick block sizes (each kernel family does that).
"""

from __future__ import annotations

import contextlib
import functools
import os
from typing import Any, Callable, Iterator

import torch

try:  # Why: importing kernels must work on machines without Triton (reference path only).
    import triton
    import triton.language as tl
    from triton.runtime.interpreter import InterpretedFunction
    from triton.runtime.jit import JITFunction

    HAVE_TRITON = True
except Exception:  # ImportError, or a broken install that fails while importing
    triton = None
    tl = None
    InterpretedFunction = None
    JITFunction = None
    HAVE_TRITON = False

_TRUE = ("1", "true", "yes", "on")


def interpret_requested() -> bool:
    """True when TRITON_INTERPRET is set to a true value right now."""
    return os.environ.get("TRITON_INTERPRET", "").strip().lower() in _TRUE


def _triton_imported_interpreted() -> bool:
    # Why: if triton itself was imported under TRITON_INTERPRET=1, tl.sum & co. are
    # InterpretedFunctions and cannot be compiled; then only the interpreter works.
    return HAVE_TRITON and not isinstance(tl.standard.sum, JITFunction)


def backend(t: torch.Tensor) -> str:
    """Which implementation a kernel called on tensor `t` runs: triton, interpreter or reference."""
    if not HAVE_TRITON:
        return "reference"
    if interpret_requested() and t.device.type in ("cpu", "cuda"):
        return "interpreter"
    if t.device.type == "cuda":
        return "interpreter" if _triton_imported_interpreted() else "triton"
    return "reference"


def device_function(fn: Callable) -> Callable:
    """Decorator for a Triton helper called from kernels (never launched on its own).

    Always a JITFunction (so compiled kernels can call it); interpreted launches reach it
    through the `JITFunction.__call__` routing below. Without Triton: the plain function.
    """
    return JITFunction(fn) if HAVE_TRITON else fn


@functools.lru_cache(maxsize=None)
def _interpreted(fn: Callable) -> Any:
    return InterpretedFunction(fn)


@contextlib.contextmanager
def _nested_calls_interpreted() -> Iterator[None]:
    originals = (JITFunction.__call__, InterpretedFunction.__call__)

    def call(self, *args, **kwargs):
        # Like InterpretedFunction.__call__, but the language patches it applies for the
        # callee's module (tl.core for tl.sum & co.) are undone on return; left in place
        # they would break later compiled launches in this process.
        from triton.runtime.interpreter import _patch_lang

        scope = _patch_lang(self.fn)
        try:
            return _interpreted(self.fn).rewrite()(*args, **kwargs)
        finally:
            scope.restore()

    JITFunction.__call__ = InterpretedFunction.__call__ = call
    try:
        yield
    finally:
        JITFunction.__call__, InterpretedFunction.__call__ = originals


class Kernel:
    """A Triton kernel launched as `k[grid](*args, **constexprs)` on CUDA or interpreted."""

    def __init__(self, fn: Callable) -> None:
        self.fn = fn
        functools.update_wrapper(self, fn)

    @functools.cached_property
    def compiled(self) -> Any:
        return JITFunction(self.fn)

    def __getitem__(self, grid: tuple) -> Callable[..., None]:
        return functools.partial(self._launch, grid)

    def _launch(self, grid: tuple, *args: Any, **kwargs: Any) -> None:
        first = next(a for a in args if isinstance(a, torch.Tensor))
        mode = backend(first)
        if mode == "triton":
            self.compiled[grid](*args, **kwargs)
        elif mode == "interpreter":
            with _nested_calls_interpreted():
                _interpreted(self.fn)[grid](*args, **kwargs)
        else:
            raise RuntimeError(f"{self.fn.__name__}: no Triton backend for {first.device}")


def kernel(fn: Callable) -> Kernel:
    """Decorator for a launchable Triton kernel (see `Kernel`)."""
    return Kernel(fn)


def compile_for_cuda(k: Kernel, args: tuple, constexprs: dict, arch: int = 90) -> Any:
    """Compile `k` for sm_`arch` with the argument types of `args` (no GPU needed).

    `args` are the positional runtime arguments as they would be launched (tensors,
    ints, floats); `constexprs` the keyword constexpr values, plus optionally the launch
    options num_warps / num_stages. Returns Triton's compiled kernel (its `.asm` holds
    ttir/ptx/cubin); raises Triton's compile error otherwise.
    """
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
    from triton.runtime.jit import mangle_type

    jit = k.compiled
    constexprs = dict(constexprs)
    names = [p.name for p in jit.params if not p.is_constexpr]
    signature = {}
    for name, a in zip(names, args):
        if isinstance(a, int) and not isinstance(a, bool) and a == 1:
            signature[name], constexprs[name] = "constexpr", 1  # as Triton's launcher does
        else:
            signature[name] = mangle_type(a)
    for p in jit.params:
        if p.is_constexpr:
            signature[p.name] = "constexpr"
    options = {opt: constexprs.pop(opt) for opt in ("num_warps", "num_stages") if opt in constexprs}
    src = ASTSource(fn=jit, signature=signature, constexprs=constexprs)
    return triton.compile(src, target=GPUTarget("cuda", arch, 32), options=options)


def cdiv(a: int, b: int) -> int:
    return -(-a // b)


def next_power_of_2(n: int) -> int:
    return 1 << max(0, int(n) - 1).bit_length()


def row_layout(*tensors: torch.Tensor) -> tuple[list[torch.Tensor], tuple[int, int, int],
                                                list[tuple[int, int, int]]]:
    """View same-shaped tensors `t[..., D]` as rows addressed by three leading (size, stride) pairs.

    Returns (tensors', sizes, strides per tensor); every t' has t'.stride(-1) == 1 (or
    D == 1), and sizes are shared, padded with trailing 1s. Leading dims laid out as one in
    every tensor (stride[i] == stride[i+1] * size[i+1]) are merged, so contiguous tensors
    have a single leading dim and the kernels divide by sizes of 1 only (Triton specialises
    those away). q/k slices of a fused qkv projection keep their strides and are read in
    place; a layout needing more than three leading dims is copied to contiguous.
    """
    ts = [t.reshape(1) if t.dim() == 0 else t for t in tensors]
    ts = [t.contiguous() if t.shape[-1] > 1 and t.stride(-1) != 1 else t for t in ts]
    lead = [(i, n) for i, n in enumerate(ts[0].shape[:-1]) if n != 1]
    groups: list[tuple[int, list[int]]] = []  # (size, stride per tensor)
    for i, n in lead:
        strides = [t.stride(i) for t in ts]
        if groups and all(g == s * n for g, s in zip(groups[-1][1], strides)):
            groups[-1] = (groups[-1][0] * n, strides)
        else:
            groups.append((n, strides))
    if len(groups) > 3:
        ts = [t.contiguous() for t in ts]
        groups = [(ts[0].numel() // ts[0].shape[-1], [t.shape[-1] for t in ts])]
    groups = groups + [(1, [0] * len(ts))] * (3 - len(groups))  # i1, i2 become 0 for free
    sizes = tuple(g[0] for g in groups)
    strides = [tuple(g[1][k] for g in groups) for k in range(len(ts))]
    return ts, sizes, strides


def sm_count(device: torch.device) -> int:
    """Streaming multiprocessors on a CUDA device; 2 stands in for CPU (interpreter)."""
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).multi_processor_count
    return 2
