"""Fixtures for the kernels/ tests: Triton's interpreter, poisoned allocations, launch counts.

`interpret` sets TRITON_INTERPRET=1 for one test (kernels decide per call, so no subprocess
is needed) and returns the list of kernel launches made during the test, so a test can
assert that a kernel really ran instead of a silent fallback to the reference.
`poison` makes every uninitialised torch allocation NaN (integers: their max value) for
one test, so an output element a kernel forgot to write shows up as NaN.
"""

from __future__ import annotations

import pytest
import torch

import kernels
from kernels import _launch


@pytest.fixture
def interpret(monkeypatch):
    if not kernels.HAVE_TRITON:
        pytest.skip("triton is not installed")
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    launches: list[str] = []
    original = _launch.Kernel._launch

    def counting(self, grid, *args, **kwargs):
        launches.append(self.fn.__name__)
        return original(self, grid, *args, **kwargs)

    monkeypatch.setattr(_launch.Kernel, "_launch", counting)
    return launches


@pytest.fixture
def poison():
    was_on = torch.are_deterministic_algorithms_enabled()
    was_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    was_fill = torch.utils.deterministic.fill_uninitialized_memory
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.utils.deterministic.fill_uninitialized_memory = True
    yield
    torch.use_deterministic_algorithms(was_on, warn_only=was_warn)
    torch.utils.deterministic.fill_uninitialized_memory = was_fill
