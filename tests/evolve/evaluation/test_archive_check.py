"""What a .pt2 may contain: plain tensors and a plain graph; nothing that parsing would run."""

from __future__ import annotations

import io
import json
import os
import time
import zipfile

import pytest
import torch

from evolve.evaluation.archive_check import check_archive
from evolve.evaluation.scorer import ModelFailure, ModelProcess

MARKER = "/tmp/autoevolve-archive-check-marker"


def honest_archive() -> bytes:
    model = torch.nn.Sequential(torch.nn.Embedding(16, 4), torch.nn.Linear(4, 16)).eval()
    buf = io.BytesIO()
    torch.export.save(torch.export.export(model, (torch.randint(0, 16, (2, 8)),), strict=False), buf)
    return buf.getvalue()


def rewrite(blob: bytes, change) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(blob)) as zin, zipfile.ZipFile(out, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            if info.filename.endswith("models/model.json"):
                graph = json.loads(data)
                change(graph)
                data = json.dumps(graph).encode()
            zout.writestr(info, data)
    return out.getvalue()


def sympy_exec(graph):
    values = graph["graph_module"]["graph"]["tensor_values"]
    name = next(k for k, v in values.items() if len(v["sizes"]) == 3)
    payload = f"open({MARKER!r}, 'w').write('ran')"
    values[name]["sizes"][0] = {"as_expr": {"expr_str": f"exec({payload!r}) or 2",
                                            "hint": {"as_int": 2}}}


def guards(graph):
    graph["guards_code"] = [f"open({MARKER!r}, 'w').write('ran') and True"]


def test_an_honest_export_passes():
    assert check_archive(io.BytesIO(honest_archive())) is None


@pytest.mark.parametrize("change, words", [
    (sympy_exec, "symbolic-shape expression"),
    (guards, "guards_code"),
    (lambda g: g.update(range_constraints={"s0": {"min_val": 1, "max_val": 9}}), "range_constraints"),
])
def test_constructs_that_parsing_would_run_are_refused(change, words):
    problem = check_archive(io.BytesIO(rewrite(honest_archive(), change)))
    assert problem and words in problem, problem


def test_the_model_process_refuses_symbolic_shapes_even_unchecked(tmp_path):
    """Behind archive_check, the model process's own deserialiser refuses to evaluate them."""
    if os.path.exists(MARKER):
        os.remove(MARKER)
    settings = {"vocab_size": 16, "batch_size": 2, "seq_len": 8, "device": "cpu",
                "host_dir": str(tmp_path / "tmp"), "model_log": str(tmp_path / "model.log")}
    host = ModelProcess(settings, time.monotonic() + 120)
    try:
        with pytest.raises(ModelFailure) as failure:
            host.load(rewrite(honest_archive(), sympy_exec))
    finally:
        host.close()
    # torch wraps the refusal in its own "error when deserializing" message
    assert failure.value.status == "invalid" and "does not load" in failure.value.reason
    assert not os.path.exists(MARKER)
