"""How a finished evaluation ends: the status of its EvalResult, from what the supervisor saw.

`Outcome` is the half of evolve.evaluation.supervisor.Supervisor that decides, once the genome's
process tree is dead (`_classify`): tampered trusted files (CHEAT), a kill by the supervisor's
clock or limits (TIMEOUT, OOM, CRASH, PRUNED, INVALID for a late export), divergence, a missing
submit or weights, weights that arrived after the budget (INVALID, or the late time charged as
training), an export past its time; and otherwise it hands the model to the trusted scorer
(`_score`) and turns the verdict into the result (`_finish`: throughput capped by the scorer's
timing, MFU). It reads the supervisor's settings (task, allowances, limits) from `self`.

What it does not do: start or watch processes (evolve.evaluation.supervisor) or score
(evolve.evaluation.verdict, evolve.evaluation.scorer).
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import signal
import tempfile
import time
from pathlib import Path

from evolve.evaluation import cgroups, sandbox, verdict
from evolve.evaluation.clock import WALL_FACTOR
from evolve.evaluation import scratch as scratch_dirs
from evolve.evaluation.feeder import FILE_LIMIT
from evolve.evaluation.result import EvalResult, Status, finite_or_none, make_result

PEAK_FLOPS = {"H100": 989e12, "H200": 989e12, "B200": 2250e12, "A100": 312e12, "L40S": 362e12,
              "L4": 121e12, "A10": 125e12, "4090": 165e12}    # dense bf16, from vendor sheets
OOM_PATTERNS = re.compile(r"out of memory|MemoryError|can't allocate memory|OutOfMemoryError|"
                          r"Cannot allocate memory|std::bad_alloc", re.I)


class Outcome:
    """Mixed into Supervisor: the decision half (see the module docstring)."""

    def _classify(self, scratch, feeder, killed_for, status_word, rusage, start_allowance,
                  t_spawn, t_exit, used_at_exit, common, call, stderr_tail: str,
                  tree_peak: int | None) -> EvalResult:
        task = self.task
        t0 = feeder.t0
        # The training clock ends when the budget runs out or the process ends, whichever is
        # first: both are the supervisor's own observations (the genome's submit message is not
        # trusted for timing, so it cannot shorten the denominator of tokens/s). On a cpu
        # clock these are CPU seconds per granted core, read after the tree died.
        training_s = min(used_at_exit, task.budget_s) if t0 is not None else None
        tps = feeder.tokens / training_s if training_s and feeder.tokens else None
        exit_code = sig = None
        if status_word is not None:
            if os.WIFSIGNALED(status_word):
                sig = signal.Signals(os.WTERMSIG(status_word)).name
            elif os.WIFEXITED(status_word):
                exit_code = os.WEXITSTATUS(status_word)
                if exit_code >= 128 and self.pidns:      # unshare reports a signal as 128 + n
                    try:
                        sig = signal.Signals(exit_code - 128).name
                    except ValueError:
                        pass
        # Host memory of the whole tree from its cgroup where there is one (trusted), else the
        # child's rusage. The CUDA peak comes from the harness inside the genome: a claim, kept
        # in its own field that nothing decides on.
        host_peak = tree_peak / 2 ** 20 if tree_peak else (
            rusage.ru_maxrss / 1024 if rusage is not None else None)
        claimed = feeder.device_mem_mb if task.device != "cpu" else None
        measured = dict(training_seconds=training_s, tokens_per_sec=tps, tokens=feeder.tokens,
                        startup_seconds=(t0 - t_spawn) if t0 is not None else None,
                        peak_memory_mb=host_peak, device_memory_mb=claimed,
                        exit_code=exit_code, signal=sig,
                        losses=tuple(feeder.losses), curve=tuple(feeder.curve), **common)

        def done(status, reason, **more):
            total = time.monotonic() - t_spawn
            tail = "" if status is Status.OK else stderr_tail
            return make_result(status, reason=reason, total_seconds=total, stderr_tail=tail,
                               **{**measured, **more})

        # With landlock the genome cannot write outside its scratch directory, so a changed file
        # is a person's edit and must not be reverted; without it, the snapshot is the defence.
        tampered = [] if self.landlock else self._restore_trusted()
        if tampered:
            return done(Status.CHEAT, f"changed trusted files: {', '.join(tampered[:3])} (restored)")
        if killed_for == "export":
            return done(Status.INVALID, self._export_reason(t_exit - feeder.weights_at))
        if killed_for == "submitted":
            return done(Status.INVALID, "the genome's processes went on 15 s after it said it "
                        "had submitted; harness.submit ends the process at once")
        if killed_for == "pruned":
            return done(Status.PRUNED, f"stopped at {100 * common['pruned_at']:.0f} % of the "
                        f"budget: training loss there above {common['prune_bar']:.4f} (the worst "
                        "of its parent's, the best genome's and the run's median, plus margin)")
        if killed_for == "timeout":
            if task.clock == "cpu":
                return done(Status.TIMEOUT, f"no submit within budget {task.budget_s:g} CPU s "
                            f"per core + {task.submit_s:g} s allowance, or within "
                            f"{WALL_FACTOR:g} x the budget of wall time (a starved or idle "
                            "genome); process tree killed")
            return done(Status.TIMEOUT, f"no submit within budget {task.budget_s:g} s + "
                                        f"{task.submit_s:g} s allowance; process tree killed")
        if killed_for == "memory":
            return done(Status.OOM, f"host memory limit of {self.host_memory / 2 ** 30:.1f} GiB "
                                    "reached: the kernel killed the genome's process tree")
        if killed_for == "procs":
            return done(Status.CRASH, f"more than {sandbox.MAX_PROCS} processes, or "
                        f"{cgroups.MAX_TASKS} processes and threads (fork bomb); tree killed")
        if killed_for == "disk":
            limit = scratch_dirs.SCRATCH_LIMIT
            size = f"{limit / 2 ** 30:g} GiB" if limit >= 2 ** 30 else f"{limit / 2 ** 20:g} MiB"
            return done(Status.CRASH, f"wrote more than {size} (deleted files still held "
                                      f"included) or {scratch_dirs.MAX_SCRATCH_ENTRIES:,} files "
                                      f"and directories in scratch, or directories nested deeper "
                                      f"than {scratch_dirs.MAX_DEPTH}, or held more descriptors and "
                                      f"threads than the supervisor counts")
        if feeder.diverged is not None:
            return done(Status.DIVERGED, f"training loss became {feeder.diverged}")
        model = scratch / "model.pt2"
        if feeder.submitted is None or not model.is_file():
            last = stderr_tail.strip().splitlines()[-1] if stderr_tail.strip() else ""
            if sig:
                hint = " (likely the out-of-memory killer)" if sig == "SIGKILL" else ""
                return done(Status.CRASH, f"killed by signal {sig}{hint}")
            if exit_code == 70:
                return done(Status.CRASH, f"sandbox could not be applied: {last}")
            if exit_code:
                status = Status.OOM if OOM_PATTERNS.search(stderr_tail) else Status.CRASH
                if "harness.submit:" in last:
                    status = Status.INVALID
                return done(status, last or f"exit code {exit_code}")
            return done(Status.INVALID, "finished without calling harness.submit(model)")
        if feeder.weights is None:
            return done(Status.INVALID, "no weights arrived with the submitted model ("
                        + (feeder.weights_problem or "harness.submit was bypassed") + ")")
        if t0 is not None:
            late = feeder.weights_clock - task.budget_s      # budget-clock seconds
            allowed = feeder.overtime_allowance(feeder.weights_bytes)
            if feeder.first_step_only():
                # The budget ended inside the genome's first few steps (a cold start on a short
                # budget, a busy machine): that step may finish, for at most the start-up
                # allowance this genome had (what importing torch takes cold; 0.5 s forked: an
                # adversary given the cold figure while forked trained 3 s past a 10 s budget),
                # or the budget if shorter. Unbounded, a genome that asked for one batch
                # trained on it for 28 s on a 10 s budget.
                allowed = max(allowed, min(task.budget_s, start_allowance))
            if late > allowed:
                return done(Status.INVALID, f"the weights arrived {late:.2f} s after the budget "
                            f"ended (allowed {allowed:.2f} s): training after the budget does "
                            "not count. Submit as soon as train_batches ends; if the genome already "
                            "does, other work on the machine probably slowed its last step past "
                            "the allowance")
            if late > 0:
                # Whatever ran between the end of the budget and the weights' arrival (the step
                # in flight, or a first step that outlasted a short budget) may have trained:
                # it is charged as training time, so the record shows it.
                charged = measured["training_seconds"] + late
                measured.update(training_seconds=charged,
                                tokens_per_sec=feeder.tokens / charged if feeder.tokens else None)
        # Between the weights and the end of the export the genome's code still runs (its
        # eval(), its forward while export traces it), and the graph's structure can carry
        # what it computes there: adversaries trained for 8-12 s after the snapshot and encoded
        # the result in literals, in list references, in which buffers 6,000 chained nodes
        # pick. Structure cannot be capped without capping honest graphs, so that time is:
        # export-sized (seeds/cpu.py exports in ~2 s here), to the end of the process by this
        # clock. It bounds the late compute; what carries it is bounded by the node cap
        # (allowlist.MAX_NODES), which a genome writing its graph itself rather than tracing
        # it can fill well within the time (adversary round 5).
        export_s = t_exit - feeder.weights_at          # to the end of the process, our clock
        if export_s > self.export_allowed:
            return done(Status.INVALID, self._export_reason(export_s))
        # The private directory is made only now, after the genome's tree is dead, so nothing
        # the genome did can be waiting in it.
        jobdir = Path(tempfile.mkdtemp(prefix=f"score-{os.getpid()}-", dir=self.scratch_root))
        (jobdir / "weights.json").write_bytes(feeder.weights[0])
        os.replace(feeder.weights[1], jobdir / "weights.bin")     # both under scratch_root
        try:
            return self._score(model, jobdir, done, call)
        finally:
            shutil.rmtree(jobdir, ignore_errors=True)

    def _export_reason(self, seconds: float) -> str:
        return (f"the export ended {seconds:.1f} s after the weights arrived or was stopped then "
                f"(allowed {self.export_allowed:.0f} s): work after the weights were sent could "
                "reach the exported graph. Submit right after training; a graph of tens of "
                "thousands of nodes also exports too slowly")

    def _score(self, model: Path, jobdir: Path, done, call) -> EvalResult:
        call.progress("scoring", 1.0)
        if call.scorer is None:
            return done(Status.CRASH, "the scorer process could not be started")
        out = verdict.run_scorer(call.scorer, model, jobdir, eval_rows=self.eval_rows,
                                 token_bytes=self.token_bytes, task=self.task,
                                 landlock=self.landlock, max_model_bytes=FILE_LIMIT,
                                 log=call.scorer_dir / "scorer.log")
        status = Status(out.get("status", "invalid"))
        extra = {"num_params": out.get("num_params"), "scoring_seconds": out.get("scoring_seconds")}
        name = out.get("device_name")
        if name:
            extra["device"] = name
        if status is not Status.OK:
            return done(status, out.get("reason", "scorer rejected the model"), **extra)
        return self._finish(done, out, extra)

    def _finish(self, done, out, extra) -> EvalResult:
        name = out.get("device_name") or ""
        peak = next((v for k, v in PEAK_FLOPS.items() if k in name), None)
        # Throughput: the tokens the harness handed out per training second are the genome's
        # doing (it may ask for batches and throw them away), so the recorded figure is at most
        # the rate at which the scorer timed the submitted model training at the eval shape.
        # Unmeasured means unrecorded (selection counts it as zero), never the claim alone.
        model_tps = finite_or_none(out.get("model_tokens_per_sec"))
        result = done(Status.OK, "" if model_tps else "throughput not measured: "
                      + str(out.get("speed_problem") or "the scorer gave no timing"),
                      val_bpb=out.get("val_bpb"), model_tokens_per_sec=model_tps, **extra)
        handed = result.tokens_per_sec
        result = dataclasses.replace(
            result, tokens_per_sec=min(handed, model_tps) if handed and model_tps else None)
        flop_params = finite_or_none(out.get("non_embedding_params")) or result.num_params
        if peak and result.tokens_per_sec and flop_params:
            # 6 N FLOPs per token (forward + backward) with N the parameters that are multiplied
            # (embedding tables are looked up, as autoresearch counts); attention excluded.
            result = dataclasses.replace(
                result, mfu=6 * flop_params * result.tokens_per_sec / peak)
        return result
