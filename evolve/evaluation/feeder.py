"""The feeder: the supervisor's end of the channel while one genome trains.

A thread per evaluation that serves training batches from the supervisor's packer, starts the
budget clock at the first batch, stops serving when the budget is spent or the genome says it
submitted, counts the tokens it hands out, records what the harness reports (losses, placed on
the budget by the supervisor's budget clock; device memory; a non-finite loss) and receives the
weights snapshot that harness.submit sends first, timing its arrival. The budget clock
(evolve.evaluation.clock) counts wall seconds or the genome tree's CPU seconds per core. The overtime rule (how late the weights may come) lives here beside the
data it needs; the supervisor applies it. Everything the genome sends is a claim except the
times, which are the supervisor's clocks. It decides no status.
"""

from __future__ import annotations

import math
import socket
import threading
import time
from pathlib import Path

from evolve.data.loader import BestFitPacker
from evolve.evaluation import channel
from evolve.evaluation.clock import BudgetClock
from evolve.evaluation.task import Task

FILE_LIMIT = 4 * 2 ** 30             # largest single file (RLIMIT_FSIZE); also the weights' cap
FIRST_STEP_ROWS = 256                # rows in the first batches whose overrun is charged


MAX_REPORTS = 2000      # losses kept per run; past it every other one is dropped, and so on

class Feeder(threading.Thread):
    """Serves batches to the genome and records what the harness reports."""

    def __init__(self, sock: socket.socket, packer: BestFitPacker, task: Task,
                 spool: Path | None = None, clock: BudgetClock | None = None):
        super().__init__(daemon=True)
        self.sock, self.packer, self.task = sock, packer, task
        # Where the weights' data goes as it arrives: a file in a directory of the supervisor's
        # that no genome process can reach. Never memory: an adversary sent a 4 GiB snapshot
        # to push the process holding the feeder (a Dask worker) past its memory limit, so that
        # its evaluation was run again whenever its training loss looked bad.
        self.spool = spool
        self.clock = clock or BudgetClock()   # the budget clock; started at the first batch
        self.tokens = 0                       # target tokens handed out (rows x SEQ_LEN)
        self.submitted: float | None = None
        self.diverged: float | None = None    # the non-finite loss the harness reported
        self.device_mem_mb: float | None = None
        self.losses: list[tuple[int, float]] = []
        self.curve: list[tuple[float, float]] = []   # (progress by this clock, loss) per report
        self._keep_every = 1                  # reports kept: one in this many (see MAX_REPORTS)
        self._reports = 0
        self.served: list[float] = []         # budget-clock times at which batches were handed out
        self.weights: tuple[bytes, Path] | None = None    # (JSON header, file of tensor data)
        self.weights_bytes = 0                # size of that data
        self.weights_at: float | None = None  # when the last byte of the weights arrived
        self.weights_clock: float | None = None   # the same moment on the budget clock
        self.weights_problem: str | None = None

    @property
    def t0(self) -> float | None:
        """Monotonic start of the budget clock, or None before it started."""
        return self.clock.t0

    def start_clock(self, at: float) -> float:
        return self.clock.start(at)

    def run(self) -> None:
        T = self.task.seq_len
        try:
            while True:
                msg = channel.read_message(self.sock)
                if msg is None:
                    return
                tag, fields = msg
                now = time.monotonic()
                if tag == b"B":
                    rows = fields[0]
                    self.start_clock(now)
                    used = self.clock.elapsed(now)
                    # The harness measures progress from this start (a wall clock's own; for
                    # a CPU clock, the start that shows the budget used so far).
                    t0 = now - used
                    if not 1 <= rows <= channel.MAX_ROWS:
                        self.sock.sendall(channel.REPLY.pack(b"X", 0, 0, 0.0))
                    elif self.submitted is not None or used >= self.task.budget_s:
                        # After the budget, or after the genome said it submitted (which ends
                        # its training clock), no more data: tokens/s cannot be inflated.
                        self.sock.sendall(channel.REPLY.pack(b"E", 0, 0, t0))
                    else:
                        batch = self.packer.rows(rows)
                        self.tokens += rows * T
                        if len(self.served) < 1_000_000:
                            self.served.append(used)
                        self.sock.sendall(channel.REPLY.pack(b"D", rows, T + 1, t0) + batch.tobytes())
                elif tag == b"L":
                    step, loss = fields
                    self._reports += math.isfinite(loss)   # thinning keeps an even spacing
                    if len(self.losses) >= MAX_REPORTS:
                        # Thinned, not cut: a genome logging every step kept only its first
                        # 2,000 reports, and its curve lost the checkpoints after them.
                        self.losses, self.curve = self.losses[::2], self.curve[::2]
                        self._keep_every *= 2
                    if math.isfinite(loss) and (self._reports - 1) % self._keep_every == 0:
                        self.losses.append((int(step), float(loss)))
                        # The loss is the genome's claim; where it falls in the budget is ours.
                        self.curve.append((round(self.clock.elapsed(now) / self.task.budget_s, 4),
                                           float(loss)))
                elif tag == b"M":
                    ok = math.isfinite(fields[0]) and fields[0] >= 0
                    self.device_mem_mb = fields[0] if ok else None
                elif tag == b"S" and self.submitted is None:
                    self.submitted = now
                elif tag == b"W":
                    if not self._read_weights(*fields):
                        return
                elif tag == b"N":
                    self.diverged = fields[0]
        except OSError:
            return                            # the child died or closed its end


    def _read_weights(self, head_len: int, data_len: int) -> bool:
        """Receive the weights snapshot; False when the stream must stop (refused or closed)."""
        if self.weights is not None:
            self.weights_problem = "the weights were sent twice"
            return False
        if head_len > channel.MAX_WEIGHTS_HEADER or data_len > FILE_LIMIT:
            self.weights_problem = f"weights of {data_len >> 20} MiB are over the limit"
            return False
        head = channel.recv_exact(self.sock, head_len) if head_len else bytearray()
        if head is None or self.spool is None or not self._spool_data(data_len):
            self.weights_problem = "the weights were cut off"
            return False
        # An empty header still means "these are all the weights": the model process then
        # checks the program against an empty snapshot (never skips the check).
        self.weights = (bytes(head) or b"[]", self.spool)
        self.weights_bytes = data_len
        self.weights_at = time.monotonic()
        self.weights_clock = self.clock.elapsed(self.weights_at) if self.t0 is not None else None
        return True

    def _spool_data(self, n: int) -> bool:
        """Copy n bytes from the socket to the spool file, 1 MiB at a time; False if cut off."""
        buf = bytearray(min(n, 2 ** 20)) if n else bytearray()
        view = memoryview(buf)
        with open(self.spool, "wb") as f:
            left = n
            while left:
                k = self.sock.recv_into(view, min(left, len(buf)))
                if k == 0:
                    return False
                f.write(view[:k])
                left -= k
        return True

    def first_step_only(self) -> bool:
        """Only a few small batches were served (at most 4, and FIRST_STEP_ROWS rows in all):
        the budget ended while the first steps ran, so no typical step time is known; their
        overrun is charged rather than refused (too little data to be worth training longer)."""
        return len(self.served) <= 4 and self.tokens <= FIRST_STEP_ROWS * self.task.seq_len

    def overtime_allowance(self, weight_bytes: int) -> float:
        """Seconds after the budget within which the weights must arrive: 1 % of the budget,
        one typical step (a step in flight when the budget ends is finished, as autoresearch
        does), the copy of the weights at 1 GB/s (at most 2 s and at most 1 % of the budget),
        and 0.5 s of scheduling slack.

        The genome decides when it asks for batches, so "one typical step" is the median gap
        between batches (the last one left out), needs three gaps, and is capped at 2 % of the
        budget (at least 1 s): an adversary made one 9.6 s gap its median and trained 9 s past
        the budget."""
        gaps = sorted(b - a for a, b in zip(self.served[:-1], self.served[1:-1]))
        cap = max(0.02 * self.task.budget_s, 1.0)     # 1 s: short budgets on a busy machine
        step = min(gaps[len(gaps) // 2], cap) if len(gaps) >= 3 else 0.0
        # The copy term is capped: an adversary padded its snapshot with 1.5 GB of unused
        # tensors to buy itself 1.5 s more (2 s covers a 1 B-parameter bf16 model); and 2 GB
        # copied in 1.0 s here, so padding still bought ~1 s, a tenth of a 10 s budget. At most
        # 1 % of the budget as well: 3 s of a 300 s GPU budget, 0.6 s of the 60 s CPU one
        # (honest CPU models are well under 100 MB: 0.1 s).
        copy = min(weight_bytes / 1e9, 2.0, 0.01 * self.task.budget_s)
        return 0.01 * self.task.budget_s + step + copy + 0.5
