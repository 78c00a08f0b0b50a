"""The task: the fixed constants of one evaluation setting, and where prepared data lives.

A Task says how every genome of a run is measured: device, sequence length, vocabulary size,
evaluation set size and shape, and the supervisor's time allowances. Two results are comparable
only when their tasks and data agree; `Task.fingerprint(data_fingerprint)` is the hash that every
result carries so that they are never mixed.

Defaults per device (override any field with `Task.for_device(device, budget_s=..., ...)`):

- cuda: autoresearch's setting: context 2048, vocabulary 8192, 300 s of training, eval on
  40 x 524,288 ~ 21 M tokens.
- cpu: a laptop-sized setting: context 256, vocabulary 2048, 60 s of training, eval on 2**16
  tokens, so a newcomer sees a scored genome within about two minutes.

Both default to the wall clock here; `python -m evolve` makes CPU tasks count the genome's own
CPU seconds where the supervisor can measure them (evolve.cli, evolve.evaluation.clock).

This module only describes; it starts nothing and reads no data.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path


def home_dir() -> Path:
    """Root of caches and prepared data: $AUTOEVOLVE_HOME, else ~/.cache/autoevolve."""
    env = os.environ.get("AUTOEVOLVE_HOME")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "autoevolve"


def default_device() -> str:
    """cuda when torch sees a GPU, else cpu. Imports torch lazily (it takes ~1 s)."""
    try:
        import torch
        return "cuda" if torch.cuda.is_available() else "cpu"
    except Exception:  # a broken torch install still lets the CPU path report clearly
        return "cpu"


AUTOCAST_DTYPES = ("", "bfloat16", "float16")
CLOCKS = ("wall", "cpu")


@dataclasses.dataclass(frozen=True)
class Task:
    device: str              # "cpu" or "cuda"
    seq_len: int             # tokens per training and eval row (targets are shifted by one)
    vocab_size: int          # tokenizer vocabulary including the special tokens
    budget_s: float          # training wall clock, counted from the first training batch
    eval_tokens: int         # target tokens scored; a multiple of seq_len
    eval_batch_size: int     # rows per scorer forward pass, also the export shape
    startup_s: float         # upper bound before the first batch; the supervisor uses the
                             # measured torch import time when shorter, then starts the clock
    submit_s: float          # allowance after the budget for harness.submit (export)
    score_s: float           # wall-clock limit of the scoring process
    dataset: str = "stdlib"  # corpus the data was prepared from (see evolve.data.sources)
    autocast: str = ""       # dtype the scorer runs the model under torch.autocast in
                             # ("bfloat16" on cuda, as the seeds train); "" = as exported
    clock: str = "wall"      # what budget_s counts: "wall" seconds, or "cpu": the genome
                             # tree's CPU seconds / threads (evolve.evaluation.clock)
    threads: int = 0         # cores (and torch/OpenMP threads) granted to the genome and its
                             # scored model; 0 = not decided by the supervisor

    @classmethod
    def for_device(cls, device: str | None = None, **overrides) -> "Task":
        device = device or default_device()
        if device not in ("cpu", "cuda"):
            raise ValueError(f"unknown device {device!r}: use cpu or cuda")
        if device == "cuda":
            base = dict(seq_len=2048, vocab_size=8192, budget_s=300.0,
                        eval_tokens=40 * 524_288,   # ~21 M tokens, as autoresearch
                        eval_batch_size=32,         # 32 x 2048 x 8192 fp32 logits = 2 GiB
                        startup_s=120.0,            # CUDA init + imports; compile is after
                        submit_s=180.0,             # torch.export of a ~50 M model
                        score_s=900.0,
                        autocast="bfloat16",        # autoresearch trains and scores in bf16
                        dataset="climbmix")         # results comparable with autoresearch's
        else:
            base = dict(seq_len=256, vocab_size=2048, budget_s=60.0,
                        eval_tokens=2 ** 16,        # ~5 s of scoring for a ~3 M model
                        eval_batch_size=32,
                        startup_s=30.0,             # importing torch takes 2-10 s on 2 cores
                        submit_s=30.0,              # torch.export of a small model: ~2-5 s
                        score_s=300.0)
        base.update({k: v for k, v in overrides.items() if v is not None})
        task = cls(device=device, **base)
        problem = task.problem()
        if problem:
            raise ValueError(problem)
        return task

    def problem(self) -> str | None:
        """One line saying why these constants cannot work, or None."""
        if self.seq_len < 8:
            return f"seq_len {self.seq_len} is too short (at least 8)"
        if not 260 <= self.vocab_size <= 65536:
            return f"vocab_size {self.vocab_size} must be in 260..65536 (uint16 token files)"
        if not self.budget_s > 0:
            return f"budget must be positive seconds, got {self.budget_s}"
        if self.eval_tokens < self.seq_len * self.eval_batch_size:
            return "eval_tokens must cover at least one eval batch"
        if self.clock not in CLOCKS:
            return f"clock must be one of {', '.join(CLOCKS)}, got {self.clock!r}"
        if self.threads < 0 or (self.clock == "cpu" and self.threads < 1):
            return "the cpu clock needs threads >= 1 (the cores granted to the genome)"
        if self.autocast not in AUTOCAST_DTYPES:
            return f"autocast must be one of {', '.join(repr(d) for d in AUTOCAST_DTYPES)}"
        return None

    @property
    def eval_rows(self) -> int:
        """Rows of the eval set, rounded down to whole batches (fixed shape for export)."""
        rows = self.eval_tokens // self.seq_len
        return max(self.eval_batch_size, rows - rows % self.eval_batch_size)

    def data_dir(self) -> Path:
        """Where `python -m evolve prepare` writes this task's tokenizer and token files."""
        name = self.dataset if "/" not in self.dataset and os.sep not in self.dataset \
            else "path-" + hashlib.sha256(str(Path(self.dataset).resolve()).encode()).hexdigest()[:10]
        return home_dir() / "data" / f"{name}-v{self.vocab_size}"

    def constants(self) -> dict:
        """The fields that decide comparability (allowances excluded: they bound, not measure)."""
        d = dataclasses.asdict(self)
        for k in ("startup_s", "submit_s", "score_s"):
            d.pop(k)
        # Runs made before these fields existed keep their fingerprint.
        if not d["autocast"]:
            d.pop("autocast")
        if d["clock"] == "wall":
            d.pop("clock")
        if not d["threads"]:
            d.pop("threads")
        return d

    def fingerprint(self, data_fingerprint: str) -> str:
        blob = json.dumps({"data": data_fingerprint, "task": self.constants()}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)
