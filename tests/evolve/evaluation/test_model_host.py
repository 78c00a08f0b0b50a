"""The model process's walls: after containment it can open no file, not even to read.

The allow-list keeps I/O ops out of every graph; these tests check the second wall on its own,
by applying the same containment in a real subprocess and trying what a graph could not.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from evolve.evaluation.sandbox import landlock_abi

PROBE = r'''
import json, os, sys
from evolve.evaluation import model_host
model_host._contain({"landlock": True}, read=[], write=[])
out = {}
for path in ("/etc/hostname", sys.argv[1], "/proc/self/environ"):
    try:
        open(path, "rb").read(1)
        out[path] = "read"
    except OSError as e:
        out[path] = type(e).__name__
try:
    open(os.path.join(sys.argv[2], "w.txt"), "wb").write(b"x")
    out["write"] = "wrote"
except OSError as e:
    out["write"] = type(e).__name__
print(json.dumps(out))
'''


@pytest.mark.skipif(landlock_abi() < 1, reason="landlock unavailable on this kernel")
def test_after_containment_nothing_can_be_opened(tmp_path):
    import json

    secret = tmp_path / "eval_rows.npy"
    secret.write_bytes(b"targets")
    r = subprocess.run([sys.executable, "-c", PROBE, str(secret), str(tmp_path)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert set(out.values()) == {"PermissionError"}, out


class _Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = torch.nn.Embedding(16, 8)
        self.head = torch.nn.Linear(8, 16)

    def forward(self, x):
        return self.head(self.emb(x))


def test_timed_pass_trains_nothing_and_leaves_no_gradient():
    from evolve.evaluation.model_host import _timed_pass

    x = torch.randint(0, 16, (2, 8))
    with torch.no_grad():
        module = torch.export.export(_Net(), (x,), strict=False).module()
    for p in module.parameters():
        p.requires_grad_(False)
    before = {k: v.clone() for k, v in module.state_dict().items()}
    with torch.no_grad():
        assert _timed_pass(module, x, backward=False) is None
        assert _timed_pass(module, x, backward=True) is None
    after = module.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(p.grad is None and not p.requires_grad for p in module.parameters())


def test_the_timed_pass_charges_adamw_over_the_whole_snapshot():
    """Weights moved into buffers are trained like parameters in the timed pass (an adversary
    hid its weights there), and the pass includes AdamW's work over every element of the
    weights snapshot (round 17: a 33.5 M-entry table trained with AdamW was recorded at 3.3x
    its twin's tokens/s while the optimiser went untimed; round 18: weights kept out of the
    gradient's reach, 3.5-4x); nothing is written to a weight."""
    from evolve.evaluation.model_host import _timed_pass

    class Hidden(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("table", torch.randn(16, 16))
            self.register_buffer("steps", torch.zeros((), dtype=torch.int64))
            self.gain = torch.nn.Parameter(torch.ones(()))

        def forward(self, x):
            return self.table[x] * self.gain

    x = torch.randint(0, 16, (2, 8))
    with torch.no_grad():
        module = torch.export.export(Hidden(), (x,), strict=False).module()
    before = {k: v.clone() for k, v in module.state_dict().items()}
    # the snapshot held 1,000 elements (say, int32 weights decoded in the graph): the 743 the
    # backward did not reach (257 did: the table and the scalar) are charged on stand-ins
    state = {"snapshot_elements": 1000}
    with torch.no_grad():
        assert _timed_pass(module, x, backward=True, state=state) is None
    assert sorted(tuple(m.shape) for m in state["m"]) == [(), (16, 16), (743,)]
    assert state["rest"].numel() == 743
    reached = [v for v in state["v"] if v.numel() != 743]
    assert all(v.abs().sum() > 0 for v in reached)
    after = module.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(t.grad is None and not t.requires_grad
               for t in (*module.parameters(), *module.buffers()))


def test_timed_pass_of_a_parameterless_model_is_a_problem():
    from evolve.evaluation.model_host import _timed_pass

    class Table(torch.nn.Module):
        def forward(self, x):
            return torch.nn.functional.one_hot(x, 16).float()

    x = torch.randint(0, 16, (2, 8))
    module = torch.export.export(Table(), (x,), strict=False).module()
    assert "does not depend on its parameters" in _timed_pass(module, x, backward=True)


def _shared_bytes(n: int, maps: int = 1):
    """`maps` mappings of one n-byte memfd, as the model process and the scorer each map the
    logits slots: (a uint8 view of each, the mmap objects)."""
    import mmap
    import os

    fd = os.memfd_create("test-logits", os.MFD_CLOEXEC)
    os.ftruncate(fd, n)
    shared = [mmap.mmap(fd, n) for _ in range(maps)]
    os.close(fd)
    return [torch.frombuffer(m, dtype=torch.uint8) for m in shared], shared


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU path; the GPU one is a gpu test")
def test_without_cuda_pinning_is_refused_and_the_copy_unchanged():
    from evolve.evaluation.model_host import pin

    (view,), (shared,) = _shared_bytes(1 << 16)
    assert pin(view) is False and pin(view[:0]) is False
    view[:4].view(torch.float32).copy_(torch.tensor([1.5]))
    assert view[:4].view(torch.float32).item() == 1.5 and not view.is_pinned()
    del view
    shared.close()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_a_logits_slot_is_page_locked_and_copies_both_ways():
    """The model process and the scorer pin their own mappings of the same slot; GPU logits
    copied into one are read back on the GPU through the other, bit for bit."""
    from evolve.evaluation.model_host import pin, prepare_pin, unpin

    n = 64 << 20
    (host, scorer), maps = _shared_bytes(n, maps=2)
    assert host.data_ptr() != scorer.data_ptr()
    assert pin(host) and pin(scorer) and host.is_pinned() and scorer.is_pinned()
    logits = torch.randn(n // 4, device="cuda")
    host.view(torch.float32).copy_(logits)
    assert torch.equal(scorer.view(torch.float32).to("cuda"), logits)
    # a refused pin (this range is pinned already) leaves no error for the next kernel's check
    prepare_pin()
    assert not pin(host)
    assert torch.ones(4, device="cuda").sum().item() == 4
    unpin(host.data_ptr())
    unpin(scorer.data_ptr())
    del host, scorer
    for m in maps:
        m.close()


def test_the_optimiser_is_charged_per_two_bytes_of_floats_and_per_bit_of_integers():
    """Adversary round 19 packed four 15-bit weights into each int64 element and was charged a
    quarter of its table; round 20 packed 32 2-bit weights into each and was charged an eighth
    of the fp32 cost: a floating tensor is charged its elements or one per 2 bytes, the larger,
    an integer tensor one per bit, a bool one per element."""
    import json

    from evolve.evaluation.model_host import _snapshot_elements

    header = [["w", "float32", [10]], ["packed", "int64", [3]], ["half", "bfloat16", [4]],
              ["mask", "bool", [8]], ["scale", "float64", []], ["idx", "uint8", [2]]]
    assert _snapshot_elements(json.dumps(header).encode()) == 20 + 3 * 64 + 4 + 8 + 4 + 2 * 8
