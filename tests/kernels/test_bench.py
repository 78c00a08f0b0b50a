"""`python -m kernels.bench`: exits 0 saying it needs CUDA on CPU; prints its table on a GPU.

Run: python -m pytest -q tests/kernels/test_bench.py
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from kernels import bench

REPO = Path(__file__).resolve().parents[2]


def _run_bench(*args: str, hide_gpus: bool) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    if hide_gpus:
        env["CUDA_VISIBLE_DEVICES"] = ""
    return subprocess.run([sys.executable, "-m", "kernels.bench", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)


def test_without_cuda_it_says_so_and_exits_0():
    proc = _run_bench(hide_gpus=True)
    assert proc.returncode == 0, proc.stderr
    assert "needs CUDA" in proc.stdout


def test_table_has_one_aligned_line_per_row():
    rows = [bench.Row("rms_norm", "[2,3,4]", "eager", 0.5, 1.25, 12.0, float("nan")),
            bench.Row("rms_norm", "[2,3,4]", "kernel", 0.25, 0.75, 4.0, 1e-3)]
    lines = bench.format_table(rows).splitlines()
    assert len(lines) == 4 and lines[0].startswith("kernel")
    assert lines[3].split() == ["rms_norm", "[2,3,4]", "kernel", "0.250", "0.750", "4",
                                "1.00e-03"]
    assert lines[2].split()[-1] == "-"  # eager has nothing to differ from


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_on_a_gpu_it_times_every_kernel():
    proc = _run_bench("--batch", "2", "--seq", "256", "--warmup", "1", "--repeats", "3",
                      hide_gpus=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for case in ("rms_norm", "rms_norm_qk", "rotary", "relu2", "swiglu",
                 "softcap_cross_entropy", "linear_softcap_ce"):
        impls = [line.split()[2] for line in proc.stdout.splitlines()
                 if line.split()[:1] == [case]]
        assert impls == ["eager", "torch.compile", "kernel"], (case, proc.stdout)
