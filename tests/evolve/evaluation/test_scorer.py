"""The scorer in-process against hand-computed bits per byte on tiny exported models."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from evolve.evaluation.scorer import score

V, T, B = 16, 8, 2


class Fixed(torch.nn.Module):
    """Logits that put `hi` on token (x + 1) % V and 0 elsewhere: a known distribution."""

    def __init__(self, hi: float):
        super().__init__()
        self.register_buffer("table", torch.roll(torch.eye(V), 1, dims=1) * hi)

    def forward(self, x):
        return self.table[x]


def job(tmp_path, model, rows, token_bytes, batch=B):
    with torch.no_grad():
        ep = torch.export.export(model, (torch.as_tensor(rows[:batch, :-1], dtype=torch.int64),),
                                 strict=False)
    torch.export.save(ep, tmp_path / "m.pt2")
    np.save(tmp_path / "rows.npy", rows.astype(np.uint16))
    np.save(tmp_path / "tb.npy", token_bytes.astype(np.int32))
    return {"program": str(tmp_path / "m.pt2"), "eval_rows": str(tmp_path / "rows.npy"),
            "token_bytes": str(tmp_path / "tb.npy"), "device": "cpu", "batch_size": batch,
            "vocab_size": V, "seq_len": rows.shape[1] - 1, "dir": str(tmp_path), "model_log": str(tmp_path / "model.log")}


def test_bpb_matches_hand_computation(tmp_path):
    rng = np.random.default_rng(0)
    rows = rng.integers(1, V, size=(2 * B, T + 1))
    rows[:, 0] = 0                                         # BOS: zero bytes, never scored
    rows[1, 4] = 0
    token_bytes = np.arange(V) % 3 + 1                     # 1..3 bytes per token
    token_bytes[0] = 0
    hi = 2.0
    out = score(job(tmp_path, Fixed(hi), rows, token_bytes))
    assert out["status"] == "ok", out
    # By hand: for target y after input x, p(y) = e^hi / (e^hi + V - 1) if y == x+1 else
    # 1 / (e^hi + V - 1); sum -ln p over targets with bytes > 0, over ln 2 x their bytes.
    z = math.exp(hi) + V - 1
    nats = nbytes = 0
    for r in rows:
        for x, y in zip(r[:-1], r[1:]):
            if token_bytes[y] == 0:
                continue
            p = (math.exp(hi) if y == (x + 1) % V else 1.0) / z
            nats -= math.log(p)
            nbytes += token_bytes[y]
    assert out["val_bpb"] == pytest.approx(nats / (math.log(2) * nbytes), rel=1e-6)
    assert out["num_params"] == 0                          # a buffer is not a parameter


def test_wrong_logits_shape_is_invalid(tmp_path):
    class Short(torch.nn.Module):
        def forward(self, x):
            return torch.zeros(x.shape[0], x.shape[1], V - 1)
    rows = np.ones((2 * B, T + 1), dtype=np.int64)
    out = score(job(tmp_path, Short(), rows, np.ones(V)))
    assert out["status"] == "invalid" and "expected logits" in out["reason"]


def test_unloadable_program_is_invalid(tmp_path):
    rows = np.ones((2 * B, T + 1), dtype=np.int64)
    j = job(tmp_path, Fixed(1.0), rows, np.ones(V))
    (tmp_path / "m.pt2").write_bytes(b"not a zip file")
    out = score(j)
    assert out["status"] == "invalid" and "not a torch.export archive" in out["reason"]


class SparsePeek(torch.nn.Module):
    """Predicts from the *next* token at a chosen set of positions, with a logit offset."""

    def __init__(self, where, offset: float):
        super().__init__()
        self.register_buffer("table", torch.eye(V) * 6.0 + offset)
        self.register_buffer("where", where)

    def forward(self, x):
        nxt = torch.roll(x, shifts=-1, dims=1)
        return self.table[torch.where(self.where, nxt, x)]


@pytest.mark.parametrize("trial", range(3))
def test_lookahead_at_two_percent_of_positions_is_a_cheat_at_any_offset(tmp_path, trial):
    rng = np.random.default_rng(trial)
    seq, batch = 100, 4                                  # 2 % of positions = 2 of 100
    rows = rng.integers(1, V, size=(8 * batch, seq + 1))
    where = torch.zeros(seq, dtype=torch.bool)
    where[torch.from_numpy(rng.choice(seq - 1, size=2, replace=False))] = True
    offset = [0.0, 1e4, -50.0, 3.0][trial]
    j = job(tmp_path, SparsePeek(where, offset), rows, np.ones(V), batch=batch)
    j["probe_seed"] = 1000 + trial                       # reproducible draw of probe rows and cuts
    out = score(j)
    assert out["status"] == "cheat", out
    assert "causality probe" in out["reason"]


def test_causal_model_passes_every_probe_exactly(tmp_path):
    rng = np.random.default_rng(7)
    rows = rng.integers(1, V, size=(4 * B, T + 1))
    out = score(job(tmp_path, Fixed(3.0), rows, np.ones(V)))
    assert out["status"] == "ok" and out["probe_max_change"] == 0.0, out
    assert out["probe_rows"] >= 240


class _Host:
    """Stands in for ModelProcess.timed_pass: scripted seconds per pass."""

    def __init__(self, forward: float, both: float):
        self.forward, self.both, self.calls = forward, both, []

    def timed_pass(self, x, backward):
        self.calls.append(backward)
        return self.both if backward else self.forward


@pytest.mark.parametrize("forward,both,step", [
    (0.010, 0.040, 0.040),     # honest: backward ~3 forwards, timed as it is
    (0.010, 0.012, 0.030),     # backward nearly free (a cut graph): charged 3 forward passes
])
def test_model_speed_rule(forward, both, step):
    from evolve.evaluation.scorer import model_tokens_per_sec

    host = _Host(forward, both)
    x = np.zeros((4, 32), dtype=np.uint16)
    assert model_tokens_per_sec(host, x) == pytest.approx(4 * 32 / step)
    assert host.calls == [True, False, True]


class _Bigram(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = torch.nn.Embedding(V, V)

    def forward(self, x):
        return self.emb(x)


def test_scorer_times_the_model_it_scored_on_the_row_probe_s_batch(tmp_path, monkeypatch):
    """The throughput timing runs on the row probe's batch: a scored batch drawn after the
    program was fixed, permuted, its logits checked against the scored ones. (It used to be
    the first eval batch, the same every time: adversary round 16 ran a cheap path on it.)"""
    from evolve.evaluation import probes, scorer

    timed, plans = [], []
    speed, make_plan = scorer.model_tokens_per_sec, probes.plan
    monkeypatch.setattr(scorer, "model_tokens_per_sec",
                        lambda host, x: timed.append(x.copy()) or speed(host, x))
    monkeypatch.setattr(probes, "plan", lambda *a: plans.append(make_plan(*a)) or plans[-1])
    rng = np.random.default_rng(0)
    rows = rng.integers(1, V, size=(2 * B, T + 1))
    # probe seed 1 draws the second of the two batches, rows (3, 2): not the first batch
    out = score({**job(tmp_path, _Bigram(), rows, np.ones(V)), "probe_seed": 1})
    assert out["status"] == "ok", out
    assert out["model_tokens_per_sec"] > 0 and "speed_problem" not in out
    (probe,) = [r for r in plans[-1] if r.kind == "rows"]
    assert probe.rows == (3, 2) and np.array_equal(timed[-1], rows[[3, 2], :-1])
    # A model with no parameters trains at no speed anyone can time: unmeasured, with a reason.
    (tmp_path / "fixed").mkdir()
    out = score(job(tmp_path / "fixed", Fixed(2.0), rows, np.ones(V)))
    assert out["status"] == "ok" and out["model_tokens_per_sec"] is None
    assert "does not depend on its parameters" in out["speed_problem"]


def test_mfu_counts_the_parameters_that_are_multiplied_not_looked_up(tmp_path):
    """issue 13: MFU is 6 x non-embedding parameters x tokens/s / peak, as autoresearch counts;
    num_params stays every parameter."""
    from evolve.evaluation.result import Status, make_result
    from evolve.evaluation.supervisor import Supervisor

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = torch.nn.Embedding(V, 4)
            self.head = torch.nn.Linear(4, V)

        def forward(self, x):
            return self.head(self.emb(x))

    rows = np.ones((2 * B, T + 1), dtype=np.int64)
    out = score(job(tmp_path, Net(), rows, np.ones(V)))
    assert out["status"] == "ok", out
    assert out["num_params"] == V * 4 + 4 * V + V and out["non_embedding_params"] == 4 * V + V

    def done(status, reason, **kw):
        return make_result(status, reason=reason, tokens_per_sec=1000.0, **kw)
    out.update(device_name="NVIDIA H100 80GB HBM3", model_tokens_per_sec=2000.0)
    r = Supervisor._finish(None, done, out, {"num_params": out["num_params"]})
    assert r.status is Status.OK and r.num_params == 9 * V
    assert r.mfu == pytest.approx(6 * (4 * V + V) * 1000.0 / 989e12)
