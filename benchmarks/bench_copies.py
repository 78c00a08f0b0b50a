"""How fast GPU logits cross the shared memory file, pageable against page-locked.

    python benchmarks/bench_copies.py [--gib G] [--repeat N]

The scorer's logits travel GPU -> shared memory file (the model process) -> GPU (the scorer):
~2 GiB a batch, 320 batches, on the GPU task (evolve.evaluation.model_host.pin says why they
are page-locked). This prints GB/s for both directions between the GPU and a memfd mapping
like the scorer's, before and after model_host.pin, and the seconds both copies of a GPU
task's logits (21 M tokens x 8192 fp32 logits) would take at each speed, one after the
other. Figures only. Without CUDA it says so on one line and exits 2.
"""

from __future__ import annotations

import argparse
import mmap
import os
import sys
import time


def main() -> None:
    import torch

    from evolve.evaluation.model_host import pin, unpin

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gib", type=float, default=2.0, help="bytes a copy, in GiB (a batch: 2)")
    ap.add_argument("--repeat", type=int, default=3, help="copies each way; the best counts")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("bench_copies: no CUDA device is visible; nothing measured")
        sys.exit(2)
    n = int(args.gib * 2 ** 30) // 4096 * 4096
    fd = os.memfd_create("bench-logits", os.MFD_CLOEXEC)
    os.ftruncate(fd, n)
    shared = mmap.mmap(fd, n)
    host = torch.frombuffer(shared, dtype=torch.uint8)
    gpu = torch.empty(n, dtype=torch.uint8, device="cuda")
    host.fill_(1)                                   # materialise the pages first
    task_bytes = 40 * 524_288 * 8192 * 4            # the GPU task's eval logits, fp32

    def best(copy) -> float:
        times = []
        for _ in range(args.repeat):
            torch.cuda.synchronize()
            t = time.perf_counter()
            copy()
            torch.cuda.synchronize()
            times.append(time.perf_counter() - t)
        return n / min(times) / 1e9

    print(f"{'memory':<12}{'GPU->host GB/s':>16}{'host->GPU GB/s':>16}{'task logits, both ways (s)':>28}")
    for label in ("pageable", "page-locked"):
        if label == "page-locked" and not pin(host):
            print(f"{label:<12} refused by the driver")
            break
        down = best(lambda: host.copy_(gpu))
        up = best(lambda: gpu.copy_(host))
        both = task_bytes / 1e9 / down + task_bytes / 1e9 / up
        print(f"{label:<12}{down:16.1f}{up:16.1f}{both:28.1f}")
    else:
        unpin(host.data_ptr())
    del host
    shared.close()
    os.close(fd)


if __name__ == "__main__":
    main()
