"""The kernels as custom ops: opcheck, torch.compile, torch.export (CPU, Triton's interpreter).

The export test follows the scorer: export a model whose forward uses rms_norm, rotary,
relu2 and swiglu with `torch.export.export(model, (inputs,), strict=False)`, save it, and
run the saved program in fresh processes that import `kernels` first: one with
TRITON_INTERPRET=1 set before import (the ops run the interpreted kernels), one where
Triton cannot be imported at all (the ops run the reference).
Run: python -m pytest -q tests/kernels/test_compile_export.py
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import kernels
from kernels import activations, cross_entropy, linear_cross_entropy, rmsnorm, rope

REPO = Path(__file__).resolve().parents[2]


class TinyGPT(nn.Module):
    """One pre-norm block of the seed's shape family, every forward hot spot a kernel."""

    def __init__(self, vocab=29, dim=16, heads=2, seq=6):
        super().__init__()
        self.heads, self.hd = heads, dim // heads
        self.emb = nn.Embedding(vocab, dim)
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.proj = nn.Linear(dim, dim, bias=False)
        self.fc = nn.Linear(dim, 4 * dim, bias=False)
        self.gate = nn.Linear(dim, 2 * dim, bias=False)
        self.up = nn.Linear(dim, 2 * dim, bias=False)
        self.down = nn.Linear(4 * dim, dim, bias=False)
        self.down2 = nn.Linear(2 * dim, dim, bias=False)
        self.norm_w = nn.Parameter(torch.rand(dim) + 0.5)
        self.head = nn.Linear(dim, vocab, bias=False)
        f = torch.outer(torch.arange(2 * seq, dtype=torch.float32),
                        1.0 / 100 ** (torch.arange(0, self.hd, 2) / self.hd))
        self.register_buffer("cos", f.cos()[None, :, None, :], persistent=False)
        self.register_buffer("sin", f.sin()[None, :, None, :], persistent=False)

    def hidden(self, idx):
        B, T = idx.shape
        x = kernels.rms_norm(self.emb(idx))
        q, k, v = self.qkv(x).view(B, T, 3, self.heads, self.hd).unbind(2)
        cos, sin = self.cos[:, :T], self.sin[:, :T]
        q = kernels.rms_norm(kernels.rotary(q, cos, sin))
        k = kernels.rms_norm(kernels.rotary(k, cos, sin))
        y = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2),
                                           v.transpose(1, 2), is_causal=True)
        x = x + self.proj(y.transpose(1, 2).reshape(B, T, -1))
        h = kernels.rms_norm(x)
        x = x + self.down(kernels.relu2(self.fc(h))) + self.down2(
            kernels.swiglu(self.gate(h), self.up(h)))
        return kernels.rms_norm(x, weight=self.norm_w)

    def forward(self, idx):
        return self.head(self.hidden(idx))


def _opchecks():
    x = torch.randn(2, 3, 2, 8, requires_grad=True)
    w = torch.randn(8, requires_grad=True)
    cos = torch.randn(1, 3, 1, 4)
    lg = torch.randn(6, 11, requires_grad=True)
    t = torch.randint(0, 11, (6,))
    lse = torch.logsumexp(lg.detach(), -1)
    return [
        (rmsnorm.rms_norm_op, (x, w, 1e-6)),
        (rmsnorm.rms_norm_op, (x, None, 1e-6)),
        (rmsnorm.rms_norm_backward_op, (torch.randn(2, 3, 2, 8), x.detach(), w.detach(), 1e-6)),
        (rope.rotary_op, (x, cos, cos, False)),
        (cross_entropy.softcap_cross_entropy_op, (lg, t, 15.0, -100)),
        (cross_entropy.softcap_cross_entropy_backward_op,
         (torch.tensor(1.0), lg.detach(), t, lse, 15.0, -100)),
        (linear_cross_entropy.linear_softcap_cross_entropy_op,
         (torch.randn(6, 8, requires_grad=True), torch.randn(11, 8, requires_grad=True), t,
          15.0, -100, 4, True)),
        (activations.relu2_op, (x,)),
        (activations.relu2_backward_op, (torch.randn(2, 3, 2, 8), x.detach())),
        (activations.swiglu_op, (x, torch.randn(2, 3, 2, 8, requires_grad=True))),
        (activations.swiglu_backward_op, (torch.randn(2, 3, 2, 8), x.detach(),
                                          torch.randn(2, 3, 2, 8))),
    ]


def test_opcheck_every_custom_op(interpret):
    for op, args in _opchecks():
        torch.library.opcheck(op, args)  # raises OpCheckError with the failing check
    assert len(interpret) > 0


def test_torch_compile_fullgraph_matches_eager(interpret):
    torch.manual_seed(0)
    model = TinyGPT()
    idx = torch.randint(0, 29, (2, 6))
    targets = torch.randint(0, 29, (2, 6))

    def loss_fn(idx, targets):
        h = model.hidden(idx)
        return (kernels.softcap_cross_entropy(model.head(h), targets)
                + kernels.linear_softcap_cross_entropy(h, model.head.weight, targets,
                                                       chunk_tokens=5))

    def run(fn):
        model.zero_grad()
        loss = fn(idx, targets)
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in model.parameters()]

    eager_loss, eager_grads = run(loss_fn)
    n_eager = len(interpret)
    compiled_loss, compiled_grads = run(torch.compile(loss_fn, backend="aot_eager",
                                                      fullgraph=True))
    assert len(interpret) > 2 * n_eager - 1  # the compiled graph launched the kernels too
    torch.testing.assert_close(compiled_loss, eager_loss)
    for a, b in zip(compiled_grads, eager_grads):
        torch.testing.assert_close(a, b)


_LOADER = r"""
import sys, torch
if sys.argv[2] == "no-triton":
    sys.modules["triton"] = None  # import triton now raises ImportError
import kernels
from kernels import _launch, reference
launches = []
if kernels.HAVE_TRITON:
    original = _launch.Kernel._launch
    _launch.Kernel._launch = lambda self, *a, **k: (launches.append(1), original(self, *a, **k))
ep = torch.export.load(sys.argv[1] + "/model.pt2")
idx, expected = torch.load(sys.argv[1] + "/io.pt")
out = ep.module()(idx)
torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
if sys.argv[2] == "no-triton":  # every public function still works, on the reference
    x = torch.randn(2, 3, 2, 8, requires_grad=True)
    cos = torch.randn(1, 3, 1, 4)
    y = kernels.rms_norm(kernels.rotary(x, cos, cos)) + kernels.swiglu(x, kernels.relu2(x))
    t = torch.randint(0, 8, (2, 3, 2))
    loss = kernels.softcap_cross_entropy(y, t) + kernels.linear_softcap_cross_entropy(
        y, torch.randn(8, 8), t)
    loss.backward()
    assert torch.isfinite(x.grad).all() and len(kernels.SWAPS) == 7
print(f"ok have_triton={kernels.HAVE_TRITON} backend={kernels.backend(idx)} "
      f"launches={len(launches)}")
"""


def _load_in_fresh_process(tmp_path: Path, mode: str, env_interpret: bool) -> str:
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    if env_interpret:
        env["TRITON_INTERPRET"] = "1"
    proc = subprocess.run([sys.executable, "-c", _LOADER, str(tmp_path), mode], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.strip().splitlines()[-1]


def test_export_keeps_the_ops_and_runs_in_other_processes(interpret, tmp_path):
    torch.manual_seed(0)
    model = TinyGPT().eval()
    idx = torch.randint(0, 29, (2, 6))
    ep = torch.export.export(model, (idx,), strict=False)
    targets = {str(n.target) for n in ep.graph.nodes if n.op == "call_function"}
    for op in ("rms_norm", "rotary", "relu2", "swiglu"):
        assert f"autoevolve.{op}.default" in targets, sorted(targets)
    from evolve.evaluation.allowlist import check_program

    assert check_program(ep) is None          # the scorer accepts every kernel swap
    expected = model(idx).detach()
    torch.testing.assert_close(ep.module()(idx), expected)
    torch.export.save(ep, tmp_path / "model.pt2")
    torch.save((idx, expected), tmp_path / "io.pt")

    line = _load_in_fresh_process(tmp_path, "interpreter-at-import", env_interpret=True)
    assert line.startswith("ok have_triton=True backend=interpreter launches=")
    assert int(line.rsplit("=", 1)[1]) >= 7  # 5 rms_norm, 2 rotary, relu2, swiglu

    line = _load_in_fresh_process(tmp_path, "no-triton", env_interpret=True)
    assert line == "ok have_triton=False backend=reference launches=0"


def test_export_on_cpu_without_interpreter_is_plain_aten(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    model = TinyGPT().eval()
    idx = torch.randint(0, 29, (2, 6))
    ep = torch.export.export(model, (idx,), strict=False)
    assert not any("autoevolve" in str(n.target) for n in ep.graph.nodes)
    from evolve.evaluation.allowlist import check_program

    assert check_program(ep) is None
    torch.testing.assert_close(ep.module()(idx), model(idx))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_export_and_inductor_on_cuda(tmp_path):
    torch.manual_seed(0)
    model = TinyGPT().cuda()
    idx = torch.randint(0, 29, (2, 6), device="cuda")
    ep = torch.export.export(model.eval(), (idx,), strict=False)
    assert any("autoevolve" in str(n.target) for n in ep.graph.nodes)
    torch.testing.assert_close(ep.module()(idx), model(idx))
    compiled = torch.compile(model, fullgraph=True)
    compiled(idx).sum().backward()
    torch.testing.assert_close(compiled(idx), model(idx), rtol=1e-4, atol=1e-4)
