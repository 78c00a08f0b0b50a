"""The hand-written seeds through the real evaluation path.

- seeds/cpu.py must learn something real on the CPU task: a finite val_bpb clearly below an
  untrained (uniform) model's.
- The GPU seed baseline.py runs a smoke path on CPU: its size constants are shrunk by rewriting
  those lines, then it trains for a few seconds, exports and scores. Its variants differ from it
  only in constants (checked on the syntax tree), so that run covers their code. On a machine
  with CUDA, the `gpu`-marked test evaluates baseline.py for real.
- The GPU seeds' FlexAttention windows equal their band mask and skip the tiles outside it
  (forward on CPU; values and gradients on CUDA in a `gpu`-marked test).
- Every seed passes the contract check.
"""

from __future__ import annotations

import ast
import math
import re
from pathlib import Path

import numpy as np
import pytest

from evolve.evaluation.result import Status
from tests.conftest import REPO, small_task

SEEDS = REPO / "seeds"
GPU_SEEDS = sorted(p for p in SEEDS.glob("*.py") if p.name != "cpu.py")
SHRINK = {"DEPTH": "2", "ASPECT_RATIO": "32", "HEAD_DIM": "32", "DEVICE_BATCH_SIZE": "4",
          "TOTAL_BATCH_TOKENS": "512", "VE_GATE_CHANNELS": "8", "LR_REF_DIM": "64"}


def shrink(source: str) -> str:
    for name, value in SHRINK.items():
        source, n = re.subn(rf"^{name} = [^#\n]*", f"{name} = {value} ", source, flags=re.M)
        assert n <= 1
    return source


def uniform_bpb(sup) -> float:
    w = sup.token_bytes[sup.eval_rows[:, 1:].astype(np.int64)]
    return (w > 0).sum() * math.log(sup.task.vocab_size) / (math.log(2) * w.sum())


def test_every_seed_passes_the_contract():
    from genome.contract import check_source

    assert (SEEDS / "cpu.py").is_file() and len(GPU_SEEDS) >= 3
    for path in SEEDS.glob("*.py"):
        report = check_source(path.read_text())
        assert report.ok, report.lines(path.name)


def test_cpu_seed_learns(prepared):
    from evolve.evaluation.supervisor import Supervisor

    sup = Supervisor(small_task(budget_s=8.0, seq_len=256, eval_tokens=16 * 256,
                                eval_batch_size=16), prepared)
    r = sup.evaluate((SEEDS / "cpu.py").read_text())
    assert r.status is Status.OK, r.summary()
    # An untrained cpu.py predicts ~uniformly (lm_head starts near zero). "Clearly below" with
    # a margin that holds on an idle 2-core machine (~7 optimiser steps in 8 s).
    assert r.val_bpb < 0.9 * uniform_bpb(sup), (r.val_bpb, uniform_bpb(sup))
    assert r.losses and r.losses[-1][1] < r.losses[0][1]


def test_gpu_seed_smoke_on_cpu(prepared):
    from evolve.evaluation.supervisor import Supervisor

    sup = Supervisor(small_task(budget_s=3.0), prepared)
    r = sup.evaluate(shrink((SEEDS / "baseline.py").read_text()))
    assert r.status is Status.OK, r.summary()
    assert math.isfinite(r.val_bpb) and r.num_params > 0


def _code_and_constants(source: str):
    """The module's statements with the docstring and the top-level UPPER_CASE constants taken
    out (as ast dumps), and those constants' values."""
    body = ast.parse(source).body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]
    code, constants = [], {}
    for node in body:
        if (isinstance(node, ast.Assign) and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name) and node.targets[0].id.isupper()
                and isinstance(node.value, (ast.Constant, ast.BinOp, ast.Tuple, ast.UnaryOp))):
            constants[node.targets[0].id] = ast.unparse(node.value)
        else:
            code.append(ast.dump(node))
    return code, constants


@pytest.mark.parametrize("path", [p for p in GPU_SEEDS if p.name != "baseline.py"],
                         ids=lambda p: p.name)
def test_gpu_variants_are_baseline_with_other_constants(path):
    """The variants change only constants of baseline.py, so the smoke run of baseline.py above
    runs their code; each changed constant is still a number the seed can compute with."""
    base_code, base_constants = _code_and_constants((SEEDS / "baseline.py").read_text())
    code, constants = _code_and_constants(path.read_text())
    assert code == base_code, f"{path.name} changes code, not only constants: smoke it on its own"
    assert constants.keys() == base_constants.keys()
    changed = {k for k in constants if constants[k] != base_constants[k]}
    assert changed, f"{path.name} is baseline.py itself"
    for k in changed:
        assert isinstance(eval(constants[k], {}), (int, float, str, tuple)), k


def _seed_function(name: str):
    """A top-level function of seeds/baseline.py, run alone (the seed trains when imported)."""
    import torch
    from torch.nn.attention import flex_attention as flex

    tree = ast.parse((SEEDS / "baseline.py").read_text())
    (node,) = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == name]
    namespace = {"torch": torch, "math": math, "create_block_mask": flex.create_block_mask}
    exec(compile(ast.Module([node], []), "baseline.py", "exec"), namespace)
    return namespace[name]


def _band(window: int, T: int):
    import torch

    pos = torch.arange(T)
    offset = pos[:, None] - pos[None, :]
    return (offset >= 0) & (offset < window)         # the seeds' short_mask


@pytest.mark.parametrize("window, T", [(32, 64), (100, 384), (128, 256), (1, 256), (256, 256)])
def test_flex_attention_windows_match_the_band_mask_and_skip_tiles(window, T):
    """The GPU seeds train short windows with FlexAttention: the same attention as the band
    mask of their exported model (on CPU, forward only: FlexAttention has no backward there),
    visiting only the 128 x 128 tiles that meet the band."""
    import torch
    import torch.nn.functional as F
    from torch.nn.attention.flex_attention import flex_attention

    block_mask = _seed_function("window_block_mask")(window, T, "cpu")
    g = torch.Generator().manual_seed(window * 1000 + T)
    q, k, v = (torch.randn(2, 3, T, 16, generator=g) for _ in range(3))
    with torch.no_grad():
        want = F.scaled_dot_product_attention(q, k, v, attn_mask=_band(window, T))
        got = flex_attention(q, k, v, block_mask=block_mask)
    assert (got - want).abs().max().item() < 1e-5
    tiles = -(-T // 128)
    band = _band(window, T)
    meets = sum(bool(band[i * 128:(i + 1) * 128, j * 128:(j + 1) * 128].any())
                for i in range(tiles) for j in range(tiles))
    visited = int(block_mask.kv_num_blocks.sum() + block_mask.full_kv_num_blocks.sum())
    assert visited == meets                           # no tile outside the band is visited
    if (window, T) == (100, 384):
        assert visited < tiles * (tiles + 1) // 2     # fewer than causal attention visits


@pytest.mark.gpu
@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs CUDA")
def test_flex_attention_windows_train_like_the_band_mask_on_gpu():
    """On CUDA the seeds train through FlexAttention (compiled): values and gradients as the
    band mask's, in fp32."""
    import torch
    import torch.nn.functional as F
    from torch.nn.attention.flex_attention import flex_attention

    T, window = 1024, 512
    block_mask = _seed_function("window_block_mask")(window, T, "cuda")
    q, k, v = (torch.randn(2, 4, T, 64, device="cuda", requires_grad=True) for _ in range(3))
    got = torch.compile(flex_attention)(q, k, v, block_mask=block_mask)
    grads = torch.autograd.grad(got.square().sum(), (q, k, v))
    want = F.scaled_dot_product_attention(q, k, v, attn_mask=_band(window, T).cuda())
    ref = torch.autograd.grad(want.square().sum(), (q, k, v))
    assert (got - want).abs().max().item() < 1e-3
    assert all((a - b).abs().max().item() < 1e-2 for a, b in zip(grads, ref))


@pytest.mark.gpu
@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs CUDA")
def test_baseline_on_gpu(autoevolve_home):
    from evolve.data.prepare import ensure_prepared
    from evolve.evaluation.supervisor import Supervisor
    from evolve.evaluation.task import Task

    task = Task.for_device("cuda", budget_s=60.0, dataset="stdlib")   # a smoke test: no download
    data = ensure_prepared(task, progress=False)
    r = Supervisor(task, data).evaluate((SEEDS / "baseline.py").read_text())
    print(r.summary())
    assert r.status is Status.OK, r.summary()


def test_mutated_children_of_the_cpu_seed_train(prepared):
    """AST-mutated children of seeds/cpu.py go through the real evaluation path until one trains.
    (benchmarks/mutant_survival.py measures the OK fraction over a larger sample.)"""
    import random

    from genome.operators import mutate

    from evolve.evaluation.supervisor import Supervisor

    sup = Supervisor(small_task(budget_s=2.0), prepared)
    parent = (SEEDS / "cpu.py").read_text()
    statuses = []
    for seed in (1, 2):
        name, res = mutate(parent, random.Random(seed))
        assert res.applied, res.reason
        r = sup.evaluate(res.child)
        statuses.append((name, res.description, r.status.value, r.reason))
        if r.ok:                  # one trained child is the point; the second is a fallback
            break
    assert sum(s == "ok" for _, _, s, _ in statuses) >= 1, statuses
