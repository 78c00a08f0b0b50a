"""What the engine shows while a batch of evaluations runs: a live bar on a terminal, lines
otherwise.

A generation of eight five-minute evaluations is forty minutes in which a user must be able to
see that the run is alive and where it stands:

- on a terminal (`mode="bar"`), a tqdm bar whose text names each running evaluation's phase
  (starting, training 45 %, exporting, scoring) and the last finished result;
- without one (`mode="lines"`: nohup, a job scheduler, a file), one line per finished
  evaluation, and a heartbeat line whenever nothing was printed for `heartbeat_s` seconds
  (60 by default), naming what is running and how far it got.

Phases come from the evaluation map's workers (any thread); `EvalProgress` only formats and
prints. It decides nothing and reads no result but the ones it is handed.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Callable

PHASE_NAMES = {"submitting": "exporting"}   # the supervisor's phase -> what the user reads


def describe(phase: str, fraction: float) -> str:
    name = PHASE_NAMES.get(phase, phase)
    return f"{name} {100 * min(1.0, fraction):.0f}%" if phase == "training" else name


def result_text(result) -> str:
    """`ok val_bpb 2.3456, 8,012 tok/s` or `crash: exit code 1 ...` (one line)."""
    if result.ok:
        tps = f", {result.tokens_per_sec:,.0f} tok/s" if result.tokens_per_sec else ""
        return f"ok val_bpb {result.val_bpb:.4f}{tps}"
    reason = f": {result.reason}" if result.reason else ""
    text = f"{result.status.value}{reason}"
    if len(text) > 160:                  # cut at a word, and say so (run.evals has it whole)
        text = text[:158].rsplit(" ", 1)[0] + " …"
    return text


class EvalProgress:
    """Progress of `total` evaluations labelled `label` (e.g. "gen 3 eval")."""

    def __init__(self, total: int, label: str, log: Callable[[str], None], mode: str | None,
                 heartbeat_s: float = 60.0, clock: Callable[[], float] = time.monotonic,
                 done: int = 0):
        """`done` of the `total` were finished before (a resumed generation)."""
        self.total, self.label, self.log, self.mode = total, label, log, mode
        self.heartbeat_s, self.clock = heartbeat_s, clock
        self.done = done
        self.running: dict[str, str] = {}          # genome id -> phase text
        self.last = ""
        self._lock = threading.Lock()
        self._said_at = clock()
        self._stop = threading.Event()
        self.bar = None
        self._beat = None
        if mode == "bar":
            from tqdm import tqdm
            self.bar = tqdm(total=total, initial=done, desc=label, unit="eval", file=sys.stderr,
                            leave=False)
        elif mode == "lines":
            self._beat = threading.Thread(target=self._heartbeat, daemon=True)
            self._beat.start()

    def phase(self, key: str, phase: str, fraction: float) -> None:
        """A worker's evaluation of genome `key` is in `phase` (called about twice a second)."""
        text = describe(phase, fraction)
        with self._lock:
            changed = self.running.get(key) != text
            self.running[key] = text
        if changed and self.bar is not None:
            self.bar.set_postfix_str(self._postfix(), refresh=True)

    def finished(self, key: str, result, seconds: float) -> None:
        with self._lock:
            self.running.pop(key, None)
            self.done += 1
            self.last = f"{key[:8]} {result_text(result)}"
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix_str(self._postfix(), refresh=True)
        elif self.mode == "lines":
            self._say(f"{self.label} {self.done}/{self.total}: {self.last} ({seconds:.0f} s)")

    def status_line(self) -> str:
        with self._lock:
            running = ", ".join(f"{k[:8]} {v}" for k, v in self.running.items()) or "nothing"
            return f"{self.label} {self.done}/{self.total} done; running: {running}"

    def close(self) -> None:
        self._stop.set()
        if self.bar is not None:
            self.bar.close()
        if self._beat is not None:
            self._beat.join(timeout=5)

    # -- internals -----------------------------------------------------------------------------
    def _postfix(self) -> str:
        with self._lock:
            parts = [f"{k[:8]} {v}" for k, v in list(self.running.items())[:2]]
            if self.last:
                parts.append(f"last {self.last}")
        return " | ".join(parts)

    def _say(self, line: str) -> None:
        self._said_at = self.clock()
        self.log(line)

    def _heartbeat(self) -> None:
        tick = min(1.0, self.heartbeat_s / 4)
        while not self._stop.wait(tick):
            if self.clock() - self._said_at >= self.heartbeat_s:
                self._say(self.status_line())
