"""The wire between the genome's harness and the supervisor: framing over a Unix socket pair.

The genome never opens data files: it asks the supervisor for batches over this socket, and the
supervisor (trusted) decides what to send and when the budget is over. Messages are a one-byte
tag and a fixed-size little-endian payload:

    genome -> supervisor                          supervisor -> genome
    b"B" <u32 rows>      request a batch          b"D" <u32 rows, u32 cols, f64 t0> + uint16 tokens
    b"L" <i64 step, f64 loss>   training loss     b"E" <u32 0, u32 0, f64 t0>  budget spent, no data
    b"M" <f64 MiB>       device memory peak       b"X" <u32 0, u32 0, f64 0>   bad request
    b"S" <f64 0>         model saved, exiting
    b"N" <f64 loss>      loss went non-finite
    b"W" <u64 h, u64 n>  the weights, then h bytes of JSON [[name, dtype, shape], ...] and n
                         bytes of tensor data in that order (sent first thing in submit: the
                         supervisor's clock on their arrival bounds training after the budget)

t0 is the supervisor's time.monotonic() at the start of the training clock (CLOCK_MONOTONIC is
shared by all processes on a host), so the harness can tell progress without asking.
Only the harness and the supervisor use this module; it holds no policy.
"""

from __future__ import annotations

import socket
import struct

REQUEST = struct.Struct("<cI")        # tag, rows
LOSS = struct.Struct("<cqd")          # tag, step, loss
VALUE = struct.Struct("<cd")          # tag, float (M, S, N)
REPLY = struct.Struct("<cIId")        # tag, rows, cols, t0
WEIGHTS = struct.Struct("<cQQ")       # tag, header bytes, data bytes
MAX_WEIGHTS_HEADER = 1 << 24          # 16 MiB of names and shapes
MAX_ROWS = 1 << 16                    # a request above this is refused (bounded memory per reply)

SIZES = {b"B": REQUEST.size, b"L": LOSS.size, b"M": VALUE.size, b"S": VALUE.size,
         b"N": VALUE.size, b"W": WEIGHTS.size}


def recv_exact(sock: socket.socket, n: int, into: bytearray | None = None) -> bytes | bytearray | None:
    """Read exactly n bytes; None when the peer closed the socket first."""
    buf = into if into is not None and len(into) == n else bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = sock.recv_into(view[got:], n - got)
        if k == 0:
            return None
        got += k
    return buf


def read_message(sock: socket.socket) -> tuple[bytes, tuple] | None:
    """Supervisor side: next (tag, fields) from the genome; None on close or garbage."""
    tag = recv_exact(sock, 1)
    if tag is None:
        return None
    tag = bytes(tag)
    size = SIZES.get(tag)
    if size is None:
        return None                      # unknown tag: the stream cannot be trusted any more
    rest = recv_exact(sock, size - 1)
    if rest is None:
        return None
    blob = tag + bytes(rest)
    if tag == b"B":
        return tag, REQUEST.unpack(blob)[1:]
    if tag == b"L":
        return tag, LOSS.unpack(blob)[1:]
    if tag == b"W":
        return tag, WEIGHTS.unpack(blob)[1:]
    return tag, VALUE.unpack(blob)[1:]
