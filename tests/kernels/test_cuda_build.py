"""Every kernel launch the seed's shapes produce compiles to an sm_90 cubin, without a GPU.

The interpreter is more forgiving than the compiler (loop-carried types, constexpr
branches, pointer types), so interpreter parity alone does not prove the CUDA path builds.
Here each public function runs once under the interpreter at the GPU seed's widths (dim
512, head dim 128, vocabulary 8192, MLP width 2048) with few rows; every distinct launch
(kernel, argument types, constexprs, num_warps) is also compiled by Triton for sm_90 with
its bundled ptxas. Nothing is executed on a GPU.
Run: python -m pytest -q tests/kernels/test_cuda_build.py
"""

from __future__ import annotations

import pytest
import torch

import kernels
from kernels import _launch


@pytest.fixture
def launches_compiled_for_sm90(interpret, monkeypatch):
    if _launch._triton_imported_interpreted():
        pytest.skip("triton was imported with TRITON_INTERPRET=1: it cannot compile here")
    from triton.runtime.jit import mangle_type

    built: dict = {}
    original = _launch.Kernel._launch

    def build_then_launch(self, grid, *args, **kwargs):
        key = (self.fn.__name__, tuple(mangle_type(a) for a in args),
               tuple(sorted(kwargs.items())))
        if key not in built:
            built[key] = _launch.compile_for_cuda(self, args, kwargs, arch=90)
        return original(self, grid, *args, **kwargs)

    monkeypatch.setattr(_launch.Kernel, "_launch", build_then_launch)
    return built


@pytest.mark.filterwarnings("ignore:TRITON_DEFAULT_FP_FUSION")
def test_seed_shapes_compile_for_sm90(launches_compiled_for_sm90):
    built = launches_compiled_for_sm90
    bf = torch.bfloat16

    def leaf(*shape, dtype=bf):
        return torch.randn(*shape, dtype=dtype).requires_grad_()

    x, w = leaf(1, 2, 512), leaf(512, dtype=torch.float32)
    kernels.rms_norm(x, weight=w).float().sum().backward()
    q = leaf(1, 2, 4, 128)
    cos = torch.randn(1, 2, 1, 64, dtype=bf)
    kernels.rms_norm(kernels.rotary(q, cos, cos)).float().sum().backward()
    h, g = leaf(1, 2, 2048), leaf(1, 2, 2048)
    (kernels.relu2(h) + kernels.swiglu(g, h)).float().sum().backward()
    logits = leaf(2, 8192)
    targets = torch.randint(0, 8192, (2,))
    kernels.softcap_cross_entropy(logits, targets).backward()
    kernels.softcap_cross_entropy(logits, targets, softcap=60.0).backward()  # online branch
    kernels.linear_softcap_cross_entropy(leaf(2, 512), leaf(8192, 512, dtype=torch.float32),
                                         targets).backward()

    names = {key[0] for key in built}
    assert names == {"_rms_norm_fwd", "_rms_norm_bwd", "_rotary_kernel", "_relu2_fwd",
                     "_relu2_bwd", "_swiglu_fwd", "_swiglu_bwd", "_softcap_ce_kernel"}
    shift = {dict(key[2])["SHIFT_BY_CAP"] for key in built if key[0] == "_softcap_ce_kernel"}
    assert shift == {True, False}
    for key, compiled in built.items():
        assert len(compiled.asm["cubin"]) > 1000, key
