"""The evaluation record: one immutable EvalResult per evaluated genome, with a status enum.

Everything the supervisor learns about a genome ends up here, and only here: the engine, the
archive and the CLI read this record and never look at what the genome printed. The numeric
fields are filled by trusted code (the supervisor's clock and the scorer), except
device_memory_mb, which the genome's harness reports and nothing decides on; a field is None
when it could not be measured. `make_result` is the one constructor that enforces the invariants:

- a score (val_bpb) is present only when the status is OK, and it is finite and positive;
- every numeric field is finite or None (never NaN or Inf, so nothing impossible reaches a
  numeric column of the archive);
- every text field is valid UTF-8 (what a genome planted in a quoted name is replaced, not
  stored as a lone surrogate that no database or terminal accepts).

This module does no I/O and runs nothing.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from typing import Any


class Status(str, enum.Enum):
    """How an evaluation ended. Only OK carries a score."""

    OK = "ok"              # trained, submitted, scored by the trusted scorer
    CRASH = "crash"        # non-zero exit, a signal, or a broken process tree
    TIMEOUT = "timeout"    # the supervisor's wall clock ran out (training, submit or scoring)
    OOM = "oom"            # host or device memory ran out
    DIVERGED = "diverged"  # the training loss or the scored logits were not finite
    INVALID = "invalid"    # broke the contract: no submit, bad logits shape, impossible score
    CHEAT = "cheat"        # looked ahead (causality probe) or tampered with trusted files
    PRUNED = "pruned"      # stopped at a checkpoint of its budget as hopeless (--prune on)


@dataclasses.dataclass(frozen=True)
class EvalResult:
    """One evaluation of one genome. Units are in the field names' comments."""

    status: Status
    reason: str = ""                         # one line; empty when OK
    val_bpb: float | None = None             # bits per byte on the fixed eval set; OK only
    tokens_per_sec: float | None = None      # training throughput used by selection: tokens
                                             # handed out / training_seconds, at most
                                             # model_tokens_per_sec (None when not measured)
    training_seconds: float | None = None    # supervisor clock: first batch -> budget end/exit
    total_seconds: float | None = None       # supervisor clock: spawn -> scored
    startup_seconds: float | None = None     # spawn -> first training batch
    scoring_seconds: float | None = None     # scorer process wall clock
    peak_memory_mb: float | None = None      # host memory of the genome's tree, MiB (trusted)
    num_params: int | None = None            # counted by the scorer in the exported program
    mfu: float | None = None                 # model FLOPs utilisation, 0..1, GPUs with a known
                                             # peak: 6 x non-embedding parameters x tokens/s
    tokens: int | None = None                # training tokens handed out by the harness
    model_tokens_per_sec: float | None = None  # the scorer's timing of the submitted model's
                                             # forward + backward at the eval shape
    device_memory_mb: float | None = None    # peak CUDA memory the genome's harness reported:
                                             # a claim, shown, never used by selection
    exit_code: int | None = None             # the genome process's exit code
    signal: str | None = None                # e.g. "SIGSEGV" when the genome died of a signal
    stderr_tail: str = ""                    # last lines of the genome's stderr when not OK
    losses: tuple[tuple[int, float], ...] = ()  # (step, loss) reported through harness.log
    curve: tuple[tuple[float, float], ...] = ()  # (progress, loss): the same losses placed on
                                             # the budget (0..1) by the supervisor's clock when
                                             # each report arrived; the loss is the genome's claim
    pruned_at: float | None = None           # share of the budget (0..1) at which the pruner
                                             # said stop: stopped there when the status is
                                             # PRUNED, else (shadow mode) it ran on
    prune_bar: float | None = None           # the loss it was above there (the references' worst
                                             # times 1 + margin)
    pruner: str = ""                         # "on" or "shadow" when a pruner judged the run
    device: str = ""                         # "cpu", "cuda" or the GPU's name
    sandbox: str = ""                        # which isolation layers were active
    fingerprint: str = ""                    # data + tokenizer + task constants; never compare across

    @property
    def ok(self) -> bool:
        return self.status is Status.OK

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["status"] = self.status.value
        d["losses"] = [list(p) for p in self.losses]
        d["curve"] = [list(p) for p in self.curve]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "EvalResult":
        known = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in known}
        kw["status"] = Status(kw["status"])
        kw["losses"] = tuple((int(s), float(x)) for s, x in kw.get("losses", ()))
        kw["curve"] = tuple((float(p), float(x)) for p, x in kw.get("curve", ()) or ())
        return make_result(**kw)

    def summary(self) -> str:
        """autoresearch-style `key: value` lines, greppable by humans and scripts. A scored
        result lists every field ("-" where unmeasured); any other starts with its status and
        reason and lists only the fields that have a value, then the tail of stderr."""
        keys = ["status", "val_bpb", "tokens_per_sec", "training_seconds", "total_seconds",
                "startup_seconds", "scoring_seconds", "peak_memory_mb", "num_params", "mfu",
                "tokens", "model_tokens_per_sec", "device_memory_mb", "device", "sandbox",
                "fingerprint"]
        if self.reason:
            keys.insert(1, "reason")
        if not self.ok:
            keys += ["exit_code", "signal"]
        lines = []
        for k in keys:
            v = getattr(self, k)
            if isinstance(v, Status):
                v = v.value
            elif isinstance(v, float):
                v = f"{v:.6f}" if k in ("val_bpb", "mfu") else f"{v:.1f}"
            elif v is None or v == "":
                if not self.ok:
                    continue
                v = "-"
            lines.append(f"{k}: {v}")
        if not self.ok and self.stderr_tail:
            lines.append("stderr_tail:")
            lines += ["  " + ln for ln in self.stderr_tail.splitlines()]
        return "\n".join(lines)


# Real-valued fields: finite or None here, REAL columns in the archive (evolve.search.archive).
FLOAT_FIELDS = ("val_bpb", "tokens_per_sec", "training_seconds", "total_seconds",
                "startup_seconds", "scoring_seconds", "peak_memory_mb", "mfu",
                "model_tokens_per_sec", "device_memory_mb", "pruned_at", "prune_bar")


def finite_or_none(x: Any) -> float | None:
    """A finite float, or None for None, NaN, Inf and anything that is not a number."""
    if x is None:
        return None
    try:
        x = float(x)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def make_result(status: Status, **fields: Any) -> EvalResult:
    """Build an EvalResult, enforcing the invariants in the module docstring.

    An OK result whose val_bpb is missing, non-finite or <= 0 is turned into INVALID (or
    DIVERGED for non-finite values): an impossible number never becomes a score.
    """
    for name, value in fields.items():
        if isinstance(value, str):
            # Valid UTF-8 only: a lone surrogate a genome planted in a name the scorer quoted
            # (json.loads revives "\\ud800") crashed the archive's insert and every resume.
            fields[name] = value.encode("utf-8", "replace").decode("utf-8")
    status = Status(status)
    raw_bpb = fields.get("val_bpb")
    for name in FLOAT_FIELDS:
        if name in fields:
            fields[name] = finite_or_none(fields[name])
    for name in ("num_params", "tokens", "exit_code"):
        if fields.get(name) is not None:
            fields[name] = int(fields[name])
    if fields.get("reason"):
        fields["reason"] = " ".join(str(fields["reason"]).split())[:300]
    if status is Status.OK:
        bpb = fields.get("val_bpb")
        if bpb is None:
            nonfinite = isinstance(raw_bpb, (int, float)) and not math.isfinite(raw_bpb)
            status = Status.DIVERGED if nonfinite else Status.INVALID
            fields["reason"] = f"scorer produced no finite val_bpb ({raw_bpb!r})"
        elif bpb <= 0:
            status = Status.INVALID
            fields["reason"] = f"impossible val_bpb {bpb!r} (must be > 0)"
    if status is not Status.OK:
        fields["val_bpb"] = None
    return EvalResult(status=status, **fields)
