"""The model process's walls: after containment it can open no file, not even to read.

The allow-list keeps I/O ops out of every graph; these tests check the second wall on its own,
by applying the same containment in a real subprocess and trying what a graph could not.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from evolve.evaluation.sandbox import landlock_abi

PROBE = r'''
import json, os, sys
from evolve.evaluation import model_host
model_host._contain({"landlock": True}, read=[], write=[])
out = {}
for path in ("/etc/hostname", sys.argv[1], "/proc/self/environ"):
    try:
        open(path, "rb").read(1)
        out[path] = "read"
    except OSError as e:
        out[path] = type(e).__name__
try:
    open(os.path.join(sys.argv[2], "w.txt"), "wb").write(b"x")
    out["write"] = "wrote"
except OSError as e:
    out["write"] = type(e).__name__
print(json.dumps(out))
'''


@pytest.mark.skipif(landlock_abi() < 1, reason="landlock unavailable on this kernel")
def test_after_containment_nothing_can_be_opened(tmp_path):
    import json

    secret = tmp_path / "eval_rows.npy"
    secret.write_bytes(b"targets")
    r = subprocess.run([sys.executable, "-c", PROBE, str(secret), str(tmp_path)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert set(out.values()) == {"PermissionError"}, out
