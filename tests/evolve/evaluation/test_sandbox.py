"""The sandbox's layers as root and without privileges, and the read rules that hide the
validation text.

"Without privileges" is emulated by dropping every capability (setpriv --bounding-set=-all):
the process is still uid 0 for file access (this machine's Python lives under /root), but it
can no longer create namespaces, which is what an unprivileged user without user namespaces
meets. The supervisor must say what is missing, list the layers it kept, and still score.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from evolve.data.sources import stdlib_hidden_paths
from evolve.evaluation import sandbox
from tests.conftest import ADVERSARIAL, REPO

SCRIPT = r'''
import json, sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from tests.conftest import small_task
from evolve.data.prepare import ensure_prepared
from evolve.evaluation.supervisor import Supervisor
task = small_task(budget_s=1.0)
sup = Supervisor(task, ensure_prepared(task, progress=False), memory_limit_bytes=3 * 2 ** 30)
r = sup.evaluate(Path(sys.argv[2]).read_text())
print(json.dumps({"status": r.status.value, "sandbox": r.sandbox, "val_bpb": r.val_bpb}))
'''


def test_the_carve_hides_exactly_the_validation_packages():
    roots = sandbox.python_read_roots()
    hidden = stdlib_hidden_paths()
    assert hidden, "this Python has no idlelib/turtledemo"
    rules = sandbox.carve(roots, hidden)
    full = [os.path.realpath(p) for p, whole in rules if whole]
    assert not any(h == p or h.startswith(p + "/") or p.startswith(h + "/")
                   for h in hidden for p in full)
    os_py = os.path.realpath(os.__file__)                      # everything else stays readable
    assert any(os_py == p or os_py.startswith(p + "/") for p in full)


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None,
                    reason="needs root and setpriv to emulate an unprivileged user")
def test_without_privileges_the_layers_that_remain_are_listed_and_it_still_scores(prepared):
    env = dict(os.environ)
    r = subprocess.run(["setpriv", "--bounding-set=-all", "--inh-caps=-all", sys.executable,
                        "-c", SCRIPT, str(REPO), str(ADVERSARIAL / "honest.py")],
                       capture_output=True, text=True, timeout=600, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["status"] == "ok" and out["val_bpb"], out
    assert "pidns" not in out["sandbox"] and "netns" not in out["sandbox"], out
    assert "landlock" in out["sandbox"] or sandbox.landlock_abi() < 1, out
    assert "sandbox: not available here: pidns, mountns, ipcns, netns" in r.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="the full set needs root (or user namespaces)")
def test_as_root_every_namespace_is_used():
    prefix, layers = sandbox.namespaces()
    assert set(layers) >= {"pidns", "mountns", "ipcns", "netns"}, layers


def test_import_seconds_is_measured_once_and_cached(tmp_path):
    cache = tmp_path / "import_seconds.json"
    prefix = ("env",)                               # a prefix of its own: its own cache entry
    seconds = sandbox.import_seconds(prefix, "cpu", cache)
    assert 0 < seconds < 60
    (entry,) = json.loads(cache.read_text()).items()
    assert entry[1] == seconds and "import torch" in entry[0]
    cache.write_text(json.dumps({entry[0]: 123.0}))   # a cached figure is used as it is
    assert sandbox.import_seconds(prefix, "cpu", cache) == 123.0
    cache.write_text("not json")                    # a damaged cache is measured again; a
    assert sandbox.import_seconds(("false",), "cpu", cache) == 10.0   # prefix that fails: 10 s
    assert list(json.loads(cache.read_text()).values()) == [10.0]


def _gone(pid: int, within: float = 5.0) -> bool:
    import time

    end = time.monotonic() + within
    while time.monotonic() < end:
        if sandbox._session_of(pid) is None:        # no such process, or a zombie
            return True
        time.sleep(0.02)
    return False


@pytest.mark.parametrize("how", ["cold genome", "end_child"])
def test_leftovers_die_before_their_leader_is_reaped_and_a_reaped_pid_is_never_killed(
        how, monkeypatch):
    """Adversary round 5: the supervisor killed a genome's session by its bare pid after the
    leader was reaped; a genome can advance the pid counter, so the number could by then name a
    concurrent evaluation's session leader. Now what is left of a session is killed while the
    exited leader still holds its pid, and never after."""
    from evolve.evaluation.supervisor import _Cold

    p = subprocess.Popen(["sh", "-c", "sleep 60 & echo $!; exit 0"], stdout=subprocess.PIPE,
                         start_new_session=True)
    left = int(p.stdout.readline())
    if how == "cold genome":
        proc = _Cold(p)
        assert proc.wait4(block=True)[0] == p.pid and proc.reaped
    else:
        sandbox.end_child(p, timeout=5)
        assert p.returncode == 0
    p.stdout.close()
    assert _gone(left), "the leader's leftover outlived it"
    monkeypatch.setattr(sandbox, "kill_session",
                        lambda *a, **k: pytest.fail("a reaped pid was killed"))
    if how == "cold genome":
        proc.kill()
    else:
        sandbox.end_child(p, timeout=5)
