"""The trusted scorer: val_bpb of a submitted model, computed from its logits alone.

Run by the supervisor as `python -m evolve.evaluation.scorer JOB.json` after the genome's process tree is
dead, so no genome Python code runs while scoring: the genome's `harness.submit` exported its
model with torch.export, and this process loads that program (a graph of tensor operations) and
calls it with input tokens only. It never receives the targets. The job file names:

    program      the exported model (model.pt2), moved out of the genome's scratch directory
    eval_rows    uint16 [rows, SEQ_LEN + 1]: the fixed eval set, packed by the supervisor from
                 its in-memory copy of the validation split (the genome never sees it)
    token_bytes  int32 [VOCAB_SIZE]: UTF-8 bytes of every token (special tokens: 0)

val_bpb = sum over scored targets of cross-entropy in nats (fp32 logits, fp64 sums) divided by
(ln 2 x the UTF-8 bytes of those targets). Targets with zero bytes (BOS) are not scored.

Before loading, the archive is checked to hold plain tensors only (no pickled weights or
objects, no compiled code), because torch.export.load would unpickle them. Before trusting the
number, these checks on the same program:
- state: every buffer and parameter must be unchanged after scoring, and the first eval batch
  scored again at the end must give the same logits; a program that keeps state across calls
  (e.g. a cache of earlier eval batches) is invalid;
- causality probe: on eval batches chosen at random (unpredictable, after export), each row
  gets its own random cut t and the tokens after it are replaced by random tokens; logits at
  positions <= t must not move;
- row independence: the same batch with its rows permuted must give the permuted logits.
A failed probe is CHEAT. Results go to the job's `out` file as JSON; this module never prints a
score to be grepped and never raises past main().
"""

from __future__ import annotations

import json
import math
import os
import random
import sys
import time
import traceback

TOL = {"float32": 1e-4, "float64": 1e-6}    # relative to max |logit|; 16-bit dtypes: 1e-2


def check_archive(path: str) -> str | None:
    """Refuse a .pt2 file that would make torch.export.load unpickle anything.

    torch.export.load reads weights marked use_pickle, and opaque/custom objects, with pickle,
    which runs arbitrary code: a genome writes this file, so only plain tensors are allowed.
    (TORCH_FORCE_WEIGHTS_ONLY_LOAD=1, set in main(), covers the remaining torch.load calls.)"""
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            for name in z.namelist():
                if "aotinductor" in name or name.endswith((".so", ".pkl")):
                    return f"archive member {name!r} is not allowed (compiled code or pickle)"
                if name.endswith("_config.json"):
                    config = json.loads(z.read(name)).get("config", {})
                    for key, entry in config.items():
                        if not isinstance(entry, dict):
                            return f"malformed {name}"
                        if entry.get("use_pickle"):
                            return f"{key} is stored with pickle; only plain tensors are allowed"
                        if str(entry.get("path_name", "")).startswith(("opaque_obj_", "custom_obj_")):
                            return f"{key} is a pickled object; only plain tensors are allowed"
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        return f"not a torch.export archive ({type(e).__name__})"
    return None


def _load_kernels() -> None:
    """Register kernels/ custom ops so that exported programs that use them load."""
    try:
        import kernels  # noqa: F401
    except Exception:
        pass


def _moved(a, b) -> tuple[float, float]:
    diff = (a.float() - b.float()).abs().max().item()
    scale = max(1.0, a.float().abs().max().item())
    return diff, diff / scale


def score(job: dict) -> dict:
    import numpy as np
    import torch
    import torch.nn.functional as F

    t_start = time.time()
    device = job["device"]
    problem = check_archive(job["program"])
    if problem:
        return {"status": "invalid", "reason": f"submitted model refused: {problem}"}
    try:
        program = torch.export.load(job["program"])
    except Exception as e:
        return {"status": "invalid", "reason": f"submitted model does not load: {type(e).__name__}: "
                f"{str(e).splitlines()[0][:200] if str(e) else ''}"}
    sig = program.graph_signature
    state = program.state_dict
    num_params = int(sum(state[n].numel() for n in sig.parameters if n in state))
    module = program.module()
    # Every tensor the program holds, to prove afterwards that scoring changed none of them: a
    # program that updates its buffers in place could carry eval data from batch to batch.
    held = {f"buffer {k}": v.detach().clone() for k, v in module.named_buffers()}
    held.update({f"parameter {k}": v.detach().clone() for k, v in module.named_parameters()})
    rows = torch.from_numpy(np.load(job["eval_rows"]).astype(np.int64)).to(device)
    token_bytes = torch.from_numpy(np.load(job["token_bytes"]).astype(np.int64)).to(device)
    B, V = int(job["batch_size"]), int(job["vocab_size"])
    n_batches = rows.shape[0] // B
    T = rows.shape[1] - 1
    rng = random.SystemRandom()              # the genome cannot predict which batches are probed
    # Each probed row gets its own cut t: positions after it are replaced, positions <= t must
    # not move, so one probed batch checks B different positions.
    probes = {b: torch.tensor([rng.randrange(T // 8, T - T // 8) for _ in range(B)],
                              device=device) for b in rng.sample(range(n_batches), min(2, n_batches))}
    position = torch.arange(T, device=device)
    refs = {}
    nats = 0.0
    nbytes = 0
    with torch.no_grad():
        for b in range(n_batches):
            x = rows[b * B:(b + 1) * B, :-1]
            y = rows[b * B:(b + 1) * B, 1:]
            logits = module(x)
            if not isinstance(logits, torch.Tensor) or tuple(logits.shape) != (B, T, V):
                shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
                return {"status": "invalid", "num_params": num_params,
                        "reason": f"model returned {shape}, expected logits {(B, T, V)}"}
            if not logits.is_floating_point():
                return {"status": "invalid", "reason": f"logits have dtype {logits.dtype}"}
            ce = F.cross_entropy(logits.float().reshape(-1, V), y.reshape(-1), reduction="none")
            w = token_bytes[y.reshape(-1)]
            batch_nats = (ce.double() * (w > 0)).sum().item()
            if not math.isfinite(batch_nats):
                return {"status": "diverged", "num_params": num_params,
                        "reason": f"non-finite loss on eval batch {b}"}
            nats += batch_nats
            nbytes += int(w.sum().item())
            if b in probes:
                refs[b] = logits.clone()
            if b == 0:
                first = logits.clone()
        dtype = str(refs[next(iter(refs))].dtype).replace("torch.", "") if refs else "float32"
        tol = TOL.get(dtype, 1e-2)
        _, rel = _moved(first, module(rows[:B, :-1]))
        if rel > tol:
            return {"status": "invalid", "num_params": num_params,
                    "reason": f"the model keeps state across calls: the first eval batch scored "
                              f"again gives logits that differ by {rel:.3g} (relative)"}
        worst = rel
        for b, cut in probes.items():
            x = rows[b * B:(b + 1) * B, :-1]
            after = position[None, :] > cut[:, None]              # [B, T]: replaced positions
            noisy = torch.where(after, torch.randint_like(x, 0, V), x)
            moved = (refs[b].float() - module(noisy).float()).abs().amax(-1)   # [B, T]
            scale = max(1.0, refs[b].float().abs().max().item())
            rel = moved.masked_fill(after, 0.0).max().item() / scale
            worst = max(worst, rel)
            if rel > tol:
                return {"status": "cheat", "num_params": num_params,
                        "reason": f"causality probe: logits moved by {rel:.3g} (relative) at "
                                  "positions before the tokens that were changed"}
            perm = torch.randperm(B, device=device)
            _, rel = _moved(refs[b][perm], module(x[perm]))
            worst = max(worst, rel)
            if rel > tol:
                return {"status": "cheat", "num_params": num_params,
                        "reason": f"row probe: permuting the batch rows changed logits by {rel:.3g}"}
        now = {f"buffer {k}": v for k, v in module.named_buffers()}
        now.update({f"parameter {k}": v for k, v in module.named_parameters()})
        changed = [k for k, v in held.items() if k not in now or not torch.equal(v, now[k].detach())]
        if changed:
            return {"status": "invalid", "num_params": num_params,
                    "reason": f"the model changed its own state while scored ({changed[0]}): "
                              "state across eval batches is not allowed"}
    if nbytes <= 0:
        return {"status": "invalid", "reason": "eval set has no scored bytes"}
    bpb = nats / (math.log(2) * nbytes)
    out = {"status": "ok", "val_bpb": bpb, "num_params": num_params, "eval_bytes": nbytes,
           "probe_max_relative_change": worst, "scoring_seconds": time.time() - t_start}
    if device.startswith("cuda"):
        out["device_name"] = torch.cuda.get_device_name()
    if not math.isfinite(bpb):
        out.update(status="diverged", reason=f"val_bpb is {bpb}")
    return out


def main() -> None:
    os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = "1"     # before torch is imported
    job = json.loads(open(sys.argv[1]).read())
    try:
        if job.get("landlock"):
            from evolve.evaluation import sandbox
            err = sandbox.apply_landlock(read=job["read_roots"], write=[job["dir"]])
            if err:
                raise RuntimeError(f"sandbox: {err}")
        _load_kernels()
        result = score(job)
    except MemoryError:
        result = {"status": "oom", "reason": "scorer ran out of memory"}
    except Exception as e:
        msg = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
        oom = "out of memory" in str(e).lower()
        result = {"status": "oom" if oom else "invalid",
                  "reason": f"scoring failed: {type(e).__name__}: {msg}",
                  "traceback": traceback.format_exc()[-2000:]}
    tmp = job["out"] + ".tmp"
    with open(tmp, "w") as f:
        json.dump(result, f)
    os.replace(tmp, job["out"])


if __name__ == "__main__":
    main()
