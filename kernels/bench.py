"""Time each kernel against eager PyTorch and torch.compile at the GPU seed's shapes.

    python -m kernels.bench                      # all kernels, B=128 x T=2048
    python -m kernels.bench --batch 16 --only rms_norm,rotary --repeats 20

Shapes follow the GPU seed: B rows of T=2048 tokens, model dim 512, 4 heads of 128, MLP
width 4 x 512, vocabulary 8192, softcap 15, bf16 activations. The two cross-entropies use at
most --ce-batch rows (default 32), because the eager reference holds several fp32
[tokens, 8192] tensors (about 40 GB at B=128). For every kernel and implementation it
prints the median milliseconds of the forward and of forward+backward (CUDA events, after
warm-up and compilation), the peak memory that forward+backward adds above its inputs, and
the largest difference of the kernel's output from eager's, as a table.

Without CUDA it prints that it needs CUDA and exits 0.

Does not: train a model, check gradients (the tests do), or compare against Liger-Kernel.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from dataclasses import dataclass
from typing import Callable

import torch

import kernels
from kernels import reference

DIM, HEADS, HEAD_DIM, VOCAB, SOFTCAP = 512, 4, 128, 8192, 15.0


@dataclass(frozen=True)
class Case:
    """One kernel at one shape: inputs maker and the kernel / reference functions."""

    name: str
    shape: str
    make: Callable[[], tuple]       # -> (args, grad_indices) on CUDA
    kernel: Callable
    reference: Callable


@dataclass(frozen=True)
class Row:
    case: str
    shape: str
    impl: str
    fwd_ms: float
    fwd_bwd_ms: float
    peak_mib: float
    max_diff: float


def _cases(B: int, T: int, ce_B: int) -> list[Case]:
    dev, bf = "cuda", torch.bfloat16

    def act(*shape):
        return torch.randn(*shape, device=dev, dtype=bf, requires_grad=True)

    def rope():
        t = torch.arange(T, device=dev, dtype=torch.float32)
        inv = 1.0 / (10000 ** (torch.arange(0, HEAD_DIM, 2, device=dev) / HEAD_DIM))
        f = torch.outer(t, inv)
        return f.cos().to(bf)[None, :, None, :], f.sin().to(bf)[None, :, None, :]

    def ce_inputs():
        logits = (torch.randn(ce_B * T, VOCAB, device=dev, dtype=bf) * 4).requires_grad_()
        return (logits, torch.randint(0, VOCAB, (ce_B * T,), device=dev)), (0,)

    def lce_inputs():
        x = act(ce_B * T, DIM)
        w = (torch.randn(VOCAB, DIM, device=dev) * DIM ** -0.5).requires_grad_()
        return (x, w, torch.randint(0, VOCAB, (ce_B * T,), device=dev)), (0, 1)

    def lce_reference(x, w, targets):
        return reference.linear_softcap_cross_entropy(x, w.to(x.dtype), targets, SOFTCAP)

    return [
        Case("rms_norm", f"[{B},{T},{DIM}]", lambda: ((act(B, T, DIM),), (0,)),
             kernels.rms_norm, reference.rms_norm),
        Case("rms_norm_qk", f"[{B},{T},{HEADS},{HEAD_DIM}]",
             lambda: ((act(B, T, HEADS, HEAD_DIM),), (0,)), kernels.rms_norm, reference.rms_norm),
        Case("rotary", f"[{B},{T},{HEADS},{HEAD_DIM}]",
             lambda: ((act(B, T, HEADS, HEAD_DIM), *rope()), (0,)), kernels.rotary,
             reference.rotary),
        Case("relu2", f"[{B},{T},{4 * DIM}]", lambda: ((act(B, T, 4 * DIM),), (0,)),
             kernels.relu2, reference.relu2),
        Case("swiglu", f"[{B},{T},{4 * DIM}]x2",
             lambda: ((act(B, T, 4 * DIM), act(B, T, 4 * DIM)), (0, 1)), kernels.swiglu,
             reference.swiglu),
        Case("softcap_cross_entropy", f"[{ce_B * T},{VOCAB}]", ce_inputs,
             lambda lg, t: kernels.softcap_cross_entropy(lg, t, SOFTCAP),
             lambda lg, t: reference.softcap_cross_entropy(lg, t, SOFTCAP)),
        Case("linear_softcap_ce", f"[{ce_B * T},{DIM}]x[{VOCAB},{DIM}]", lce_inputs,
             lambda x, w, t: kernels.linear_softcap_cross_entropy(x, w, t, SOFTCAP),
             lce_reference),
    ]


def _median_ms(fn: Callable[[], object], warmup: int, repeats: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def _measure(case: Case, impl: str, f: Callable, args: tuple, grad_idx: tuple, expected,
             warmup: int, repeats: int) -> tuple[Row, torch.Tensor]:
    wrt = [args[i] for i in grad_idx]

    def fwd():
        with torch.no_grad():
            return f(*args)

    def fwd_bwd():
        out = f(*args)
        return torch.autograd.grad(out, wrt, torch.ones_like(out))

    fwd_ms = _median_ms(fwd, warmup, repeats)
    fwd_bwd_ms = _median_ms(fwd_bwd, warmup, repeats)
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    grads = fwd_bwd()
    torch.cuda.synchronize()
    peak = (torch.cuda.max_memory_allocated() - base) / 2 ** 20
    del grads
    out = fwd()
    diff = float("nan") if expected is None else (out.float() - expected.float()).abs().max().item()
    return Row(case.name, case.shape, impl, fwd_ms, fwd_bwd_ms, peak, diff), out


def run(batch: int, seq: int, ce_batch: int, only: set[str], warmup: int,
        repeats: int) -> list[Row]:
    rows = []
    for case in _cases(batch, seq, min(ce_batch, batch)):
        if only and case.name not in only:
            continue
        args, grad_idx = case.make()
        impls = [("eager", case.reference), ("torch.compile", torch.compile(case.reference)),
                 ("kernel", case.kernel)]
        expected = None
        for impl, f in impls:
            row, out = _measure(case, impl, f, args, grad_idx, expected, warmup, repeats)
            expected = out if expected is None else expected
            rows.append(row)
            print(f"  done {row.case} {row.impl}", file=sys.stderr, flush=True)
        del args, expected
        torch.cuda.empty_cache()
    return rows


def format_table(rows: list[Row]) -> str:
    head = ("kernel", "shape", "impl", "fwd ms", "fwd+bwd ms", "peak MiB", "max|diff|")
    body = [(r.case, r.shape, r.impl, f"{r.fwd_ms:.3f}", f"{r.fwd_bwd_ms:.3f}",
             f"{r.peak_mib:.0f}", "-" if r.max_diff != r.max_diff else f"{r.max_diff:.2e}")
            for r in rows]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body)]
    lines = ["  ".join(str(x).ljust(w) for x, w in zip(line, widths)).rstrip()
             for line in [head, *body]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m kernels.bench", description=__doc__.split("\n")[0])
    p.add_argument("--batch", type=int, default=128, help="rows of --seq tokens (default 128)")
    p.add_argument("--seq", type=int, default=2048, help="tokens per row (default 2048)")
    p.add_argument("--ce-batch", type=int, default=32, help="rows for the cross-entropies")
    p.add_argument("--only", default="", help="comma-separated kernel names")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--repeats", type=int, default=50)
    a = p.parse_args(argv)
    if not torch.cuda.is_available():
        print("kernels.bench: needs CUDA (no CUDA device found); nothing was timed.")
        return 0
    if not kernels.HAVE_TRITON:
        print("kernels.bench: Triton is not importable; the kernels would be the reference.")
        return 0
    torch.manual_seed(0)
    only = {s.strip() for s in a.only.split(",") if s.strip()}
    print(f"device: {torch.cuda.get_device_name()}  torch {torch.__version__}  "
          f"batch {a.batch} x seq {a.seq}, ce batch {min(a.ce_batch, a.batch)}, "
          f"median of {a.repeats} runs")
    print(format_table(run(a.batch, a.seq, a.ce_batch, only, a.warmup, a.repeats)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
