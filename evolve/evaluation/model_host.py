"""The model process: runs a submitted model on the inputs it is sent, and nothing else.

The scorer (trusted) starts `python -m evolve.evaluation.model_host FD` for each evaluation and
talks to it over one socket, FD, that the scorer opened. The exported program is untrusted code
(see evolve.evaluation.allowlist for the first wall), so this process is the second wall:

- it holds only the program (sent as bytes over the socket, never a path) and the input tokens
  of each request; it never receives a target, a byte count or a verdict;
- it parses the archive here, not in the scorer, under a first landlock layer (read Python and
  system files, write only its temporary directory), with the deserialiser's code-evaluating
  paths refused (symbolic shapes; guard code is never compiled), then checks the graph against
  the allow-list (evolve.evaluation.allowlist) before the program has ever run, and reports the
  parameter count or the refusal;
- before the program first runs, a second landlock layer takes away every file right (it can
  open nothing, not even to read), TCP and signals to processes outside itself; rlimits make
  any file write fail (RLIMIT_FSIZE 0) and, on CPU, bound its memory; the scorer starts it in
  its own PID namespace where the system allows, with a scrubbed environment, / as working
  directory and stdout/stderr on a log the scorer only tails;
- what it can send back is one reply per request on the scorer's socket: logits of a checked
  shape and dtype, or a one-line failure. The scorer computes every number from those logits.

Wire format (little-endian; struct formats below):
    scorer -> host   PROGRAM  b"P", n bytes, then the .pt2 archive
                     PROGRAM  b"W", n, then n bytes of the weights' JSON header (may be 0)
                     PROGRAM  b"D", n, then n bytes of their data (replace the program's)
                     REQUEST  b"R", rows, cols, slot, then rows*cols uint16 input tokens
                     REQUEST  b"G", rows, cols, mode, then rows*cols uint16 input tokens: one
                              timed pass, mode 0 forward only, mode 1 forward + backward of a
                              cross-entropy loss to every floating weight and a reference
                              optimiser step's work (no weight is written)
                     REQUEST  b"Q", 0, 0, 0: exit
    host -> scorer   REPLY    b"K" ready, JSON {"num_params": N} follows | b"L" logits are in
                     the slot | b"D" the timed pass is done | b"F" failure text follows; after the tag: dtype code, rows,
                     cols, vocab (or the length of the JSON or text)

Logits travel through a shared memory file (memfd) the scorer created and passed as
config["out_fd"]: two slots of config["slot_bytes"], so the model computes batch i+1 while the
scorer scores batch i. Only this module's own code writes there, after a forward pass returns:
the program has no handle on it (no op on the allow-list can reach a file or a mapping).

This module decides nothing and prints no score.
"""

from __future__ import annotations

import io
import json
import mmap
import os
import socket
import struct
import sys

PROGRAM = struct.Struct("<cQ")          # tag, archive size in bytes
REQUEST = struct.Struct("<cIIB")        # tag, rows, cols, output slot
REPLY = struct.Struct("<cBIII")         # tag, dtype code, rows, cols, vocab (or text length)
DTYPES = ("float32", "bfloat16", "float16", "float64")   # code = index
MAX_PROGRAM = 16 * 2 ** 30              # bytes; the genome's files are capped at 4 GiB anyway
ENV = "AUTOEVOLVE_MODEL_HOST"           # JSON: device, landlock, address_space_bytes
MAX_LOOSE_CONSTANT_BYTES = 256          # bytes of tensor constants not sent at submit (honest
                                        # seeds: 0; 4,096 carried a post-snapshot fp16 bias)


def recv_exact(sock: socket.socket, n: int) -> bytearray | None:
    """Exactly n bytes, or None if the peer closed first."""
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = sock.recv_into(view[got:], min(n - got, 1 << 24))
        if k == 0:
            return None
        got += k
    return buf


def _fail(sock: socket.socket, text: str) -> None:
    blob = " ".join(text.split())[:300].encode("utf-8", "replace")
    try:
        sock.sendall(REPLY.pack(b"F", 0, 0, 0, len(blob)) + blob)
    except OSError:
        pass


def _contain(config: dict, read: list[str], write: list[str]) -> None:
    """Apply rlimits and one landlock layer; layers stack, each only takes rights away."""
    from evolve.evaluation import sandbox

    sandbox.apply_rlimits(config.get("address_space_bytes"), 0 if not write else 2 ** 34, None)
    if config.get("landlock"):
        err = sandbox.apply_landlock(read=read, write=write)
        if err:
            raise RuntimeError(f"sandbox: {err}")
    if config.get("harden") and write:          # once, at the first layer
        err = sandbox.harden()
        if err:
            raise RuntimeError(f"sandbox: {err}")


def _refuse_code_in_archives() -> None:
    """Second line behind evolve.evaluation.archive_check: make the deserialiser's one place
    that evaluates text from the archive (symbolic shapes go through sympy.sympify) refuse."""
    try:
        from torch._export.serde import serialize
    except ImportError:
        return

    def refuse(self, expr_str, hint=None):
        raise serialize.SerializeError("symbolic shapes are not accepted in a submitted model")

    if hasattr(serialize, "GraphModuleDeserializer"):
        serialize.GraphModuleDeserializer._parse_sym_expr = refuse


def _numel(shape) -> int:
    """Elements of a tensor of `shape` (a list of ints from the snapshot's header)."""
    count = 1
    for d in shape:
        count *= int(d)
    return count


def _snapshot_elements(names: bytes) -> int:
    """Weights the reference optimiser is charged for (its header, already checked): per
    tensor, its elements or one per 2 bytes, whichever is more, and for an integer tensor one
    per bit. Why bytes: adversary round 19 packed four 15-bit weights into each int64 element of
    its snapshot, decoded in the graph, and was charged a quarter of its table (2.54x its
    twin's tokens/s). Two bytes is a bf16 weight, the smallest honest floating one; an fp32
    weight is charged as two, which costs honest models little (their optimiser is a small part
    of a timed pass). Why bits for integers: round 20 packed 2-bit weights 32 to an int64 and
    was charged an eighth of its table's fp32 cost (4.5-6.3x its twin's recorded tokens/s); a
    weight needs at least a bit, and the seeds keep no integer tensor. Bools are
    one bit each (masks)."""
    import torch

    total = 0
    for _, dtype, shape in json.loads(names):
        dt, n = getattr(torch, str(dtype)), _numel(shape)
        integer = not dt.is_floating_point and not dt.is_complex and dt != torch.bool
        total += n * dt.itemsize * 8 if integer else max(n, n * dt.itemsize // 2)
    return total


def _tensor_at(raw, start: int, n: int, dtype, shape):
    """A new tensor of `dtype` and `shape` from bytes start..start+n of the snapshot. Copied
    before it is reinterpreted: the snapshot packs tensors back to back, so an 8-byte dtype
    can start at any offset (after a 0-d fp32 parameter, say), which a view cannot take."""
    return raw[start:start + n].clone().view(dtype).reshape(shape)


def _replace_weights(program, names: bytes, data) -> str | None:
    """Put the weights snapshot (sent by harness.submit before it exported) into the program:
    every parameter and buffer the graph uses must be in it, with the same shape and dtype.
    Training after the snapshot therefore changes nothing that is scored. Returns a problem."""
    import torch

    try:
        header = json.loads(names)
        table, offset = {}, 0
        for name, dtype, shape in header:
            dt = getattr(torch, str(dtype))
            n = _numel(shape) * torch.empty((), dtype=dt).element_size()
            table[str(name)] = (dt, tuple(int(d) for d in shape), offset, n)
            offset += n
    except (ValueError, TypeError, AttributeError):
        return "the weights snapshot is malformed"
    if offset != len(data):
        return "the weights snapshot does not add up"
    raw = torch.frombuffer(data, dtype=torch.uint8) if len(data) else torch.empty(0, dtype=torch.uint8)
    sig = program.graph_signature
    persistent = set(sig.parameters) | set(sig.buffers) - set(sig.non_persistent_buffers)
    # Tensor constants that are not in the snapshot were made at export, after the budget:
    # only small literals (index tables, a few numbers) may be, never trained values.
    loose = [n for n in program.constants if n not in table and n not in sig.buffers]
    tensors = [program.constants[n] for n in loose if isinstance(program.constants[n], torch.Tensor)]
    size = sum(t.numel() * t.element_size() for t in tensors)
    if any(t.is_complex() for t in tensors):
        return "a complex tensor constant is not allowed in a submitted model"
    if size > MAX_LOOSE_CONSTANT_BYTES:
        return (f"{size} bytes of tensor constants ({', '.join(loose[:3])}) are not in the "
                f"weights sent at submit (at most {MAX_LOOSE_CONSTANT_BYTES}): keep learned "
                "values in parameters, buffers or tensor attributes")
    for name in [n for n in program.constants if n in table and n not in sig.buffers]:
        dt, shape, start, n = table[name]
        old = program.constants[name]
        if not isinstance(old, torch.Tensor) or old.dtype != dt or tuple(old.shape) != shape:
            return f"{name} has another shape or dtype than in the weights sent at submit"
        program.constants[name] = _tensor_at(raw, start, n, dt, shape).to(old.device)
    for name in list(sig.parameters) + list(sig.buffers):
        if name not in table:
            return f"{name} is not in the weights sent at submit"
        dt, shape, start, n = table[name]
        where = program.state_dict if name in persistent else program.constants
        old = where[name]
        if old.dtype != dt or tuple(old.shape) != shape:
            return f"{name} has another shape or dtype than in the weights sent at submit"
        new = _tensor_at(raw, start, n, dt, shape).to(old.device)
        where[name] = torch.nn.Parameter(new, requires_grad=False) \
            if isinstance(old, torch.nn.Parameter) else new
    return None


def _autocast(device: str, dtype: str):
    """The context the task's model runs in: torch.autocast to `dtype` ("" or None: none), the
    way the seeds train, so that a genome trained under autocast with weights of mixed dtypes
    runs here as it ran in training."""
    import contextlib

    import torch

    if not dtype:
        return contextlib.nullcontext()
    return torch.autocast("cuda" if str(device).startswith("cuda") else "cpu",
                          dtype=getattr(torch, dtype))


def _embedding_params(program) -> set[str]:
    """Parameters the graph uses only as embedding tables (aten.embedding's weight): looked up,
    not multiplied, so MFU leaves them out, as autoresearch counts (a table tied to the output
    layer is also multiplied, and stays in)."""
    import torch

    to_param = program.graph_signature.inputs_to_parameters
    out = set()
    for node in program.graph.nodes:
        if node.op == "placeholder" and node.name in to_param and node.users and all(
                u.op == "call_function" and u.target is torch.ops.aten.embedding.default
                and u.args and u.args[0] is node for u in node.users):
            out.add(to_param[node.name])
    return out


def pin(view) -> bool:
    """Page-lock the bytes of a CPU tensor `view` for the CUDA driver (cudaHostRegister, as
    torch does for shared-memory state dicts). Why: the logits of a GPU eval batch cross the
    shared memory file twice (model process: GPU to host; scorer: host to GPU), ~2 GiB a batch
    in fp32 on the GPU task, ~0.7 TB over 21 M eval tokens. From pageable memory the driver
    stages every copy through a buffer of its own (typically ~10-20 GB/s, an estimate); from
    page-locked memory it copies by DMA at the bus's speed (~50 GB/s on PCIe 5). False without
    CUDA, for an empty view, or when the driver refuses: the copies then work as before,
    slower. The caller unpins with unpin() before the memory is unmapped."""
    import torch

    if view.numel() == 0 or view.device.type != "cpu" or not torch.cuda.is_available():
        return False
    try:
        if int(torch.cuda.cudart().cudaHostRegister(
                view.data_ptr(), view.numel() * view.element_size(), 1)) == 0:   # 1: portable
            return True
    except Exception:
        pass
    # A refused call leaves its error as the runtime's last error, which torch's next check
    # after a kernel launch would raise as if the kernel had failed: consumed here.
    if _last_error is not None:
        _last_error()
    return False


_last_error = None      # libcudart's cudaGetLastError, found by prepare_pin()


def prepare_pin() -> None:
    """Find the CUDA runtime torch loaded (its path in /proc/self/maps) while this process
    can still read files, so that pin() can clear the error of a refused registration later.
    Nothing is found where torch has no CUDA or links the runtime statically; pin() then
    leaves the error, and the copies still work while no kernel check meets it."""
    global _last_error
    import ctypes

    try:
        with open("/proc/self/maps") as f:
            paths = sorted({line.split()[-1] for line in f if "/libcudart" in line})
        if paths:
            _last_error = ctypes.CDLL(paths[0]).cudaGetLastError
    except (OSError, AttributeError):
        _last_error = None


def unpin(address: int) -> None:
    """Undo pin() for the view that started at `address` (errors ignored: the process ends)."""
    import torch

    try:
        torch.cuda.cudart().cudaHostUnregister(address)
    except Exception:
        pass


def _timed_pass(module, x, backward: bool, autocast: str = "",
                state: dict | None = None) -> str | None:
    """One pass of the model as training would run it, for the scorer's stopwatch: forward, and
    with `backward` the cross-entropy of predicting each next input token, back to every
    floating weight (parameters and buffers alike), then a reference optimiser step over every
    element of the weights snapshot (_reference_step). Gradients are dropped and nothing is written to a weight, so the weights
    the scorer scored are untouched. `state` keeps the reference step's moments between passes
    (allocated in the first). Returns a problem, or None. The scorer times the round trip;
    this process only waits for the device to finish, so the time covers the work.

    Why buffers too: an adversary moved its trained weights into buffers, so that the timed
    backward reached only a scalar (the three-forward floor in the scorer bounds what that
    gains). Why the optimiser step: a genome that asks for batches and throws them away is
    recorded at this timing, which without the step left out all its optimiser's work; an
    adversary trained a 33.5 M-entry embedding table with AdamW and was recorded at 3.3x the
    tokens/s its twin earned (adversary round 17)."""
    import torch
    import torch.nn.functional as F

    params = [p for p in module.parameters() if p.is_floating_point()]
    weights = params + [b for b in module.buffers() if b.is_floating_point()]
    try:
        with torch.enable_grad() if backward else torch.no_grad():
            for w in weights:
                w.requires_grad_(backward)
            with _autocast(str(x.device), autocast):
                logits = module(x)
            if backward:
                if not params or not isinstance(logits, torch.Tensor) or not logits.requires_grad:
                    return "the model's output does not depend on its parameters"
                loss = F.cross_entropy(logits[:, :-1].float().reshape(-1, logits.shape[-1]),
                                       x[:, 1:].reshape(-1))
                loss.backward()
                _reference_step(weights, {} if state is None else state)
        if x.is_cuda:
            torch.cuda.synchronize()
    except Exception as e:
        return f"the model failed a timed training pass: {type(e).__name__}: {e}"
    finally:
        for w in weights:
            w.grad = None
            w.requires_grad_(False)
    return None


# The reference optimiser: AdamW's arithmetic (lr 1e-3, betas 0.9/0.999, eps 1e-8; the values
# only set what is computed, nothing is kept). Every real optimiser reads each gradient and
# writes each weight; AdamW, the common choice (the seeds' Muon costs more), also keeps two
# moments, so its per-weight work is what a training step is charged at the least.
REF_LR, REF_BETAS, REF_EPS = 1e-3, (0.9, 0.999), 1e-8


def _reference_step(weights, state: dict) -> None:
    """AdamW's work over every element of the weights snapshot, written to moments kept in
    `state` and to new tensors that are dropped: the weights themselves stay as they are.

    The weights the backward reached use their gradients; the rest of the snapshot's elements
    (state["snapshot_elements"] in all) are charged on fp32 stand-ins (allocated once) with a
    zero gradient written anew each pass, as a backward writes a weight's gradient. Why the
    snapshot and not the gradients: the genome decides which weights the graph sends a
    gradient to, and adversary round 18 kept its trained weights out of reach three ways
    (tensor constants, int32 fixed point decoded in the graph, parameters detached in the
    graph), each recorded at 3.5-4x its twin's tokens/s."""
    import torch

    pairs = [(w.detach(), w.grad) for w in weights if w.grad is not None]
    reached = sum(g.numel() for _, g in pairs)
    rest = max(0, int(state.get("snapshot_elements", 0)) - reached)
    with torch.no_grad():
        if rest:
            device = state.get("device", "cpu")
            if state.get("rest") is None or state["rest"].numel() != rest:
                state["rest"] = torch.zeros(rest, device=device)     # the stand-in weights
            # a new zero gradient each pass, as a backward writes a dense gradient per weight
            pairs.append((state["rest"], torch.zeros(rest, device=device)))
        if not pairs:
            return
        ws, gs = [w for w, _ in pairs], [g for _, g in pairs]
        if [m.shape for m in state.get("m", ())] != [g.shape for g in gs]:
            state["m"] = [torch.zeros_like(g) for g in gs]
            state["v"] = [torch.zeros_like(g) for g in gs]
        m, v = state["m"], state["v"]
        torch._foreach_lerp_(m, gs, 1 - REF_BETAS[0])
        torch._foreach_mul_(v, REF_BETAS[1])
        torch._foreach_addcmul_(v, gs, gs, value=1 - REF_BETAS[1])
        denom = torch._foreach_sqrt(v)
        torch._foreach_add_(denom, REF_EPS)
        update = torch._foreach_div(m, denom)
        del denom
        torch._foreach_add(ws, update, alpha=-REF_LR)    # new tensors, dropped


def serve(sock: socket.socket, config: dict) -> int:
    import torch

    from evolve.evaluation.allowlist import check_program

    try:
        import kernels  # noqa: F401  (registers the autoevolve:: ops a program may use)
    except Exception:
        pass
    # Layer 1, before any untrusted byte is parsed: read Python and system files only, write
    # only the temporary directory torch.export.load unpacks into.
    _refuse_code_in_archives()      # also imports the deserialiser now, while we wait
    _contain(config, read=config.get("read_roots", []), write=[os.environ.get("TMPDIR", "/nonexistent")])
    head = recv_exact(sock, PROGRAM.size)
    if head is None:
        return 0
    tag, size = PROGRAM.unpack(bytes(head))
    if tag != b"P" or size > MAX_PROGRAM:
        _fail(sock, "bad program header")
        return 2
    blob = recv_exact(sock, size)
    if blob is None:
        return 0
    device = config.get("device", "cpu")
    slot_bytes = int(config["slot_bytes"])
    shared = mmap.mmap(int(config["out_fd"]), 2 * slot_bytes)
    out_buf = torch.frombuffer(shared, dtype=torch.uint8)
    pinned: set[tuple[int, int]] = set()        # (offset, bytes) of out_buf given to pin()
    try:
        program = torch.export.load(io.BytesIO(bytes(blob)))
    except Exception as e:
        _fail(sock, f"submitted model does not load: {type(e).__name__}: {e}")
        return 2
    del blob
    # The allow-list is checked here, before the program has ever run: until now only torch's
    # own code has run here (on untrusted bytes, which the scorer's archive_check vetted for
    # constructs that would run code). A refusal can only cost the genome its score.
    problem = check_program(program)
    if problem:
        _fail(sock, f"submitted model refused: {problem}")
        return 2
    head = recv_exact(sock, PROGRAM.size)
    if head is None:
        return 0
    tag, size = PROGRAM.unpack(bytes(head))
    names = recv_exact(sock, size) if tag == b"W" and size <= 1 << 24 else None
    head = recv_exact(sock, PROGRAM.size)
    if names is None or head is None or PROGRAM.unpack(bytes(head))[0] != b"D":
        _fail(sock, "bad weights header")
        return 2
    data = recv_exact(sock, PROGRAM.unpack(bytes(head))[1]) if PROGRAM.unpack(bytes(head))[1] else b""
    if data is None:
        return 0
    if names:
        problem = _replace_weights(program, bytes(names), data)
        if problem:
            _fail(sock, f"submitted model refused: {problem}")
            return 2
    del data
    # Every tensor the genome sent, whatever its dtype or where the graph keeps it: what the
    # timed pass charges the reference optimiser for (see _reference_step).
    reference: dict = {"snapshot_elements": _snapshot_elements(bytes(names)) if names else 0,
                       "device": device}
    sig, state = program.graph_signature, program.state_dict
    total = int(sum(state[n].numel() for n in sig.parameters if n in state))
    tables = int(sum(state[n].numel() for n in _embedding_params(program) if n in state))
    info = json.dumps({"num_params": total, "non_embedding_params": total - tables}).encode()
    module = program.module(check_guards=False)     # no guard code is compiled from the archive
    torch.set_grad_enabled(False)
    if str(device).startswith("cuda"):
        prepare_pin()                               # reads /proc/self/maps: before layer 2
    # Layer 2, before the program first runs: no file rights at all.
    _contain(config, read=[], write=[])
    sock.sendall(REPLY.pack(b"K", 0, 0, 0, len(info)) + info)
    while True:
        head = recv_exact(sock, REQUEST.size)
        if head is None:
            return 0
        tag, rows, cols, slot = REQUEST.unpack(bytes(head))
        if tag not in (b"R", b"G") or slot > 1:
            return 0
        payload = recv_exact(sock, rows * cols * 2)
        if payload is None:
            return 0
        x = torch.frombuffer(payload, dtype=torch.uint16).to(torch.int64).view(rows, cols)
        if tag == b"G":
            problem = _timed_pass(module, x.to(device), backward=bool(slot),
                                  autocast=config.get("autocast", ""), state=reference)
            if problem:
                _fail(sock, problem)
            else:
                sock.sendall(REPLY.pack(b"D", 0, rows, cols, 0))
            continue
        try:
            with _autocast(device, config.get("autocast", "")):
                logits = module(x.to(device))
        except Exception as e:
            _fail(sock, f"the model failed on an eval batch: {type(e).__name__}: {e}")
            continue
        if not isinstance(logits, torch.Tensor) or logits.dim() != 3:
            what = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
            _fail(sock, f"model returned {what}, expected logits [rows, cols, vocab]")
            continue
        name = str(logits.dtype).replace("torch.", "")
        if name not in DTYPES:
            _fail(sock, f"logits have dtype {name}")
            continue
        nbytes = logits.numel() * logits.element_size()
        if nbytes > slot_bytes:
            _fail(sock, f"model returned {tuple(logits.shape)}, larger than the logits expected")
            continue
        start = slot * slot_bytes
        view = out_buf[start:start + nbytes]
        if logits.is_cuda and (start, nbytes) not in pinned:
            pinned.add((start, nbytes))         # tried once per slot and size, kept till exit
            pin(view)
        view.view(logits.dtype).view(logits.shape).copy_(logits.detach())
        sock.sendall(REPLY.pack(b"L", DTYPES.index(name), *logits.shape))


def main() -> None:
    sock = socket.socket(fileno=int(sys.argv[1]))
    config = json.loads(os.environ.get(ENV, "{}"))
    if config.get("threads"):
        from evolve.evaluation.clock import grant_cores

        grant_cores(int(config["threads"]), config.get("cores") or [])
    try:
        code = serve(sock, config)
    except MemoryError:
        _fail(sock, "the model process ran out of memory")
        code = 3
    except Exception as e:  # anything here is the model's doing or a wall; say it in one line
        _fail(sock, f"model process: {type(e).__name__}: {e}")
        code = 2
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
