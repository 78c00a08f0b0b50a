"""Plots and tables of one run: what notebooks/analysis.ipynb shows and `evolve report` writes.

    python -m evolve report RUN     # RUN/progress.png, RUN/pareto.png and RUN/report.html
    from evolve import load_run
    from evolve.inspect import report
    run = load_run("runs/20250101-120000-cpu")
    report.plot_progress(run)       # a matplotlib Figure; report.lineage_table(run) a DataFrame

Every function takes a loaded run (evolve.inspect.run.Run) and returns a matplotlib Figure, a pandas
DataFrame or a string, so the notebook stays a thin list of calls and all of it is tested as code.
Figures are built on matplotlib's object API and rendered with the Agg canvas: no pyplot state,
no window, safe in the engine's thread. `write_plots(run_dir)` is what the engine calls after each
generation (progress.png and pareto.png only; it never raises and prints nothing);
`write_report(run_dir)` adds one self-contained HTML page with the plots embedded as base64 PNG.

What it does not do: change the archive, or decide anything (the engine does); it reads the run
through evolve.inspect.run.load_run only.
"""

from __future__ import annotations

import base64
import html
import io
import logging
import math
import os
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from evolve.inspect.run import SCORED_KINDS, pareto_mask
from evolve.evaluation.result import finite_or_none as _num

BPB_LABEL = "val_bpb (bits per byte, lower is better)"
TPS_LABEL = "throughput (tokens/s, higher is better)"
STATUS_COLORS = {"crash": "#d62728", "timeout": "#ff7f0e", "oom": "#9467bd",
                 "diverged": "#8c564b", "invalid": "#7f7f7f", "cheat": "#000000"}
LLM_TOKEN_COLUMNS = ("prompt_tokens", "completion_tokens")
DPI = 110                       # 10 x 6 inch figures -> 1100 x 660 px PNGs of ~60 KB


# -- finding and opening a run ---------------------------------------------------------------------
def locate_run(environ=None, root: str | Path = "runs") -> tuple[Path | None, str | None]:
    """The run to look at: $EVOLVE_RUN when set, else the newest run directory under `root`
    (the one whose archive changed last). Returns (path, None) or (None, one-line reason)."""
    environ = os.environ if environ is None else environ
    if environ.get("EVOLVE_RUN"):
        path = Path(environ["EVOLVE_RUN"]).expanduser()
        if not (path / "archive.sqlite").is_file():
            return None, f"EVOLVE_RUN={path} is not a run directory (no archive.sqlite)"
        return path, None
    def changed(p: Path) -> float:       # WAL mode: new writes land in archive.sqlite-wal
        wal = p.with_name(p.name + "-wal")
        return max(p.stat().st_mtime, wal.stat().st_mtime if wal.exists() else 0.0)
    archives = sorted(Path(root).glob("*/archive.sqlite"),
                      key=lambda p: (changed(p), p.parent.name))
    if not archives:
        return None, (f"no run directory under {Path(root).resolve()}; start one with "
                      "python -m evolve, or set EVOLVE_RUN=DIR")
    return archives[-1].parent, None



def _best_id(run) -> str | None:
    try:
        return str(run.best().genome_id)
    except ValueError:
        return None


# -- tables ----------------------------------------------------------------------------------------
def progress_frame(run) -> pd.DataFrame:
    """One row per scored evaluation (kind eval or confirm) in the order they finished:
    index, genome_id, kind, generation, status, val_bpb, running_best (lowest single OK val_bpb
    so far), confirmed_bpb, set on the evaluation that confirmed a new best (the genome's second
    OK measurement, whose mean beat every earlier confirmed genome), and confirmed_best, the
    lowest confirmed mean so far: a single lucky measurement can sit a noise floor below it."""
    cols = ["index", "eval_id", "genome_id", "kind", "generation", "status", "val_bpb",
            "running_best", "confirmed_bpb", "confirmed_best", "description"]
    ev = run.evals
    if not len(ev):
        return pd.DataFrame(columns=cols)
    ev = ev[ev.kind.isin(SCORED_KINDS)].sort_values("eval_id").reset_index(drop=True)
    ok_bpb = ev.val_bpb.where(ev.status == "ok")
    seen: dict[str, list[float]] = {}
    confirmed, best = [], math.inf
    for gid, bpb in zip(ev.genome_id, ok_bpb):
        mark = np.nan
        if _num(bpb) is not None:
            xs = seen.setdefault(gid, [])
            xs.append(float(bpb))
            mean = sum(xs) / len(xs)
            if len(xs) == 2 and mean < best:       # first time this genome is confirmed
                best, mark = mean, mean
        confirmed.append(mark)
    desc = run.df.set_index("genome_id").description
    return pd.DataFrame({
        "index": np.arange(len(ev)), "eval_id": ev.eval_id, "genome_id": ev.genome_id,
        "kind": ev.kind, "generation": ev.generation, "status": ev.status,
        "val_bpb": ok_bpb, "running_best": ok_bpb.cummin(), "confirmed_bpb": confirmed,
        "confirmed_best": pd.Series(confirmed, dtype=float).ffill(),
        "description": [str(desc.get(g, "")) for g in ev.genome_id]}, columns=cols)


def fronts_by_generation(run) -> pd.DataFrame:
    """The Pareto front as it stood at the end of each generation: rows of generation,
    genome_id, val_bpb, tokens_per_sec (means over the OK evaluations recorded up to then)."""
    cols = ["generation", "genome_id", "val_bpb", "tokens_per_sec"]
    ev = run.evals
    if not len(ev):
        return pd.DataFrame(columns=cols)
    ok = ev[(ev.status == "ok") & ev.kind.isin(SCORED_KINDS) & ev.tokens_per_sec.notna()]
    out = []
    for g in sorted(set(ok.generation)):
        means = ok[ok.generation <= g].groupby("genome_id")[["val_bpb", "tokens_per_sec"]].mean()
        mask = pareto_mask(means.val_bpb.to_numpy(), means.tokens_per_sec.to_numpy())
        front = means[mask].reset_index()
        front.insert(0, "generation", int(g))
        out.append(front)
    return pd.concat(out, ignore_index=True)[cols] if out else pd.DataFrame(columns=cols)


def front_table(run) -> pd.DataFrame:
    """The current Pareto front, best val_bpb first, in the columns people compare."""
    front = run.pareto()
    return pd.DataFrame({
        "genome": front.genome_id.str[:8], "val_bpb": front.val_bpb,
        "val_bpb_std": front.val_bpb_std, "n_ok": front.n_ok,
        "tokens_per_sec": front.tokens_per_sec.round(0), "peak_memory_mb": front.peak_memory_mb,
        "generation": front.generation, "operator": front.operator,
        "description": front.description})


def front_history(run) -> pd.DataFrame:
    """Per finished generation, the engine's own summary: best, front size, hypervolume."""
    rows = []
    for g in run.generations:
        s = g.get("summary")
        if not s:
            continue
        rows.append({"generation": g["generation"], "best_bpb": s.get("best_bpb"),
                     "best": (s.get("best_id") or "")[:8], "front_size": s.get("front_size"),
                     "hypervolume": s.get("hypervolume"), "evals_total": s.get("evals_total"),
                     "population": len(g.get("population") or ()),
                     "failures": " ".join(f"{k}:{v}" for k, v in
                                          sorted((s.get("failures") or {}).items()))})
    return pd.DataFrame(rows, columns=["generation", "best_bpb", "best", "front_size",
                                       "hypervolume", "evals_total", "population", "failures"])


def lineage_table(run, genome_id: str | None = None) -> pd.DataFrame:
    """From the seed to `genome_id` (default: run.best()), one row per step with the change of
    val_bpb against the step before and the unified diff against the first parent (a crossover
    names its second parent in second_parent)."""
    cols = ["step", "genome", "operator", "description", "status", "val_bpb", "change",
            "tokens_per_sec", "n_ok", "second_parent", "diff"]
    genome_id = genome_id or _best_id(run)
    if genome_id is None:
        return pd.DataFrame(columns=cols)
    chain = run.lineage(genome_id)
    bpb = chain.val_bpb.astype(float)
    return pd.DataFrame({
        "step": np.arange(len(chain)), "genome": chain.genome_id.str[:8],
        "operator": chain.operator, "description": chain.description, "status": chain.status,
        "val_bpb": bpb, "change": bpb.diff(), "tokens_per_sec": chain.tokens_per_sec.round(0),
        "n_ok": chain.n_ok,
        "second_parent": [p[1][:8] if len(p) > 1 else "" for p in chain.parent_ids],
        "diff": [(run.diffs(g) or ("",))[0] if i else "" for i, g in enumerate(chain.genome_id)]},
        columns=cols)


def operator_stats(run) -> pd.DataFrame:
    """operator_counts of the run, with its LLM calls when it records them."""
    return operator_counts(run.df, getattr(run, "llm_calls", None))


def operator_counts(df: pd.DataFrame, llm_calls: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per operator (seeds left out) over run.df: children proposed, evaluated, valid (scored
    OK), improved (mean val_bpb below the first parent's), on the front, and the rates. When the
    run used a language model, also llm_tokens (prompt + completion) and
    llm_tokens_per_improvement: from `llm_calls` (run.llm_calls, which also counts the calls
    that produced no child) when given, else from run.df's prompt_tokens/completion_tokens
    columns; both are absent in runs made before LLM operators existed. The last row, `all`,
    sums every operator."""
    bpb = df.set_index("genome_id").val_bpb
    kids = df[df.operator != "seed"].copy()
    parent_bpb = kids.parent_ids.map(lambda p: bpb.get(p[0], np.nan) if len(p) else np.nan)
    kids["evaluated"] = kids.status != "pending"
    kids["valid"] = kids.val_bpb.notna()
    kids["improved"] = kids.val_bpb < parent_bpb.astype(float)      # NaN compares False
    agg = {"children": ("genome_id", "size"), "evaluated": ("evaluated", "sum"),
           "valid": ("valid", "sum"), "improved": ("improved", "sum"),
           "on_front": ("on_front", "sum")}
    rates = ["valid_rate", "improved_rate"]
    if not len(kids):
        return pd.DataFrame(columns=["operator", *agg, *rates])
    out = kids.groupby("operator").agg(**agg)
    tokens = _llm_tokens(df, llm_calls)
    if tokens is not None:
        out = out.join(tokens, how="outer").fillna(0)
    out.loc["all"] = out.sum()
    out = out.astype(int)
    out["valid_rate"] = out.valid / out.evaluated.where(out.evaluated > 0)
    out["improved_rate"] = out.improved / out.evaluated.where(out.evaluated > 0)
    if tokens is not None:
        out["llm_tokens_per_improvement"] = out.llm_tokens / out.improved.where(out.improved > 0)
    return out.rename_axis("operator").reset_index()


def _llm_tokens(df: pd.DataFrame, llm_calls: pd.DataFrame | None) -> pd.Series | None:
    """Prompt + completion tokens per operator, or None when the run has no LLM token counts."""
    if llm_calls is not None and len(llm_calls) and "operator" in llm_calls.columns:
        src = llm_calls
    elif all(c in df.columns for c in LLM_TOKEN_COLUMNS):
        src = df[df.operator != "seed"]
    else:
        return None
    if not all(c in src.columns for c in LLM_TOKEN_COLUMNS) or \
            not src[list(LLM_TOKEN_COLUMNS)].notna().any().any():
        return None
    total = sum(pd.to_numeric(src[c], errors="coerce").fillna(0) for c in LLM_TOKEN_COLUMNS)
    return total.groupby(src.operator).sum().rename("llm_tokens")


def failure_table(run) -> pd.DataFrame:
    """Failed evaluations (kind eval or confirm) grouped by status and reason, most frequent
    first, with the genomes and the last line the genome wrote to stderr."""
    cols = ["status", "reason", "count", "genomes", "last_stderr_line"]
    ev = run.evals
    bad = ev[(ev.status != "ok") & ev.kind.isin(SCORED_KINDS)] if len(ev) else ev
    if not len(bad):
        return pd.DataFrame(columns=cols)
    rows = []
    for (status, reason), grp in bad.groupby(["status", bad.reason.fillna("")], sort=False):
        tails = [t.strip().splitlines()[-1] for t in grp.stderr_tail.fillna("") if t.strip()]
        ids = list(dict.fromkeys(grp.genome_id.str[:8]))
        rows.append({"status": status, "reason": reason, "count": len(grp),
                     "genomes": " ".join(ids[:6]) + (" ..." if len(ids) > 6 else ""),
                     "last_stderr_line": tails[-1][:200] if tails else ""})
    return pd.DataFrame(rows, columns=cols).sort_values("count", ascending=False,
                                                        kind="stable").reset_index(drop=True)


def noise_text(run) -> str:
    """The noise floor in words, and how the best's gain over its seed compares with it."""
    ev = run.evals
    ok = ev[(ev.status == "ok") & ev.kind.isin(SCORED_KINDS)] if len(ev) else ev
    repeated = int((ok.groupby("genome_id").size() >= 2).sum()) if len(ok) else 0
    if run.noise_floor is None:
        text = "noise_floor: unknown (no genome was evaluated OK twice yet)"
    else:
        text = (f"noise_floor: {run.noise_floor:.6f} bits per byte (pooled standard deviation "
                f"of val_bpb over {repeated} genome(s) evaluated OK at least twice)")
    lineage = lineage_table(run)
    first, last = (_num(lineage.val_bpb.iloc[0]), _num(lineage.val_bpb.iloc[-1])) \
        if len(lineage) > 1 else (None, None)
    if first is not None and last is not None:
        gain = last - first
        text += f"\nbest vs its seed: {gain:+.6f} bits per byte"
        if run.noise_floor:
            text += f" ({abs(gain) / run.noise_floor:.1f} x the noise floor)"
    return text


# -- plots -----------------------------------------------------------------------------------------
def _figure(nrows: int = 1, height_ratios=None):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 6), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, 1, sharex=True,
                        gridspec_kw={"height_ratios": height_ratios} if height_ratios else None)
    return fig, axes


def _bpb_limits(values, first: float | None = None) -> tuple[float, float] | None:
    """y-limits that keep the search visible: the best value at the bottom, and at the top the
    median (or the first evaluation, a run's usual reference, if worse) plus as much again. A
    genome that learned nothing scores several bits per byte above the rest; such values are
    clipped to the top edge instead of squashing everything else into one line."""
    v = np.array([x for x in values if _num(x) is not None], dtype=float)
    if not len(v):
        return None
    lo, hi = v.min(), v.max()
    ref = max(float(np.median(v)), first if _num(first) is not None else -math.inf)
    top = min(hi, ref + (ref - lo))
    pad = max(top - lo, abs(lo) * 0.01, 1e-3) * 0.08
    return lo - pad, top + pad


def _clip_marks(ax, xs, ys, limits, **kw) -> None:
    """Points above the y-limit, drawn as triangles on the top edge."""
    edge = limits[1] - 0.02 * (limits[1] - limits[0])       # just inside the top edge
    over = [(x, edge) for x, y in zip(xs, ys) if _num(y) is not None and y > limits[1]]
    if over:
        ax.scatter(*zip(*over), marker="^", s=40, zorder=4, label=f"off scale ({len(over)})", **kw)


def plot_progress(run):
    """Each evaluation's val_bpb in order, the running best as a step line, confirmed new bests
    starred and labelled, and failed evaluations apart in a lower strip, by status."""
    fig, (ax, axf) = _figure(2, height_ratios=[4, 1])
    p = progress_frame(run)
    ok = p[p.val_bpb.notna()]
    n_conf = int(p.confirmed_bpb.notna().sum())
    noise = f", noise floor ±{run.noise_floor:.4f} bpb" if run.noise_floor else ""
    ax.set_title(f"Search progress of {run.run_dir.name}: {len(p)} evaluations, {len(ok)} OK, "
                 f"{n_conf} confirmed new best(s){noise}", loc="left")
    ax.set_ylabel(BPB_LABEL)
    ax.grid(alpha=0.3)
    limits = _bpb_limits(ok.val_bpb, ok.val_bpb.iloc[0] if len(ok) else None)
    if limits is None:
        ax.text(0.5, 0.5, "no scored evaluation yet" if len(p) else "no evaluations yet",
                ha="center", va="center", transform=ax.transAxes, fontsize=14, color="0.4")
        ax.set_yticks([])
    else:
        for kind, style in (("eval", dict(c="#1f77b4", alpha=0.55, label="evaluation (OK)")),
                            ("confirm", dict(facecolors="none", edgecolors="#1f77b4",
                                             label="confirming re-evaluation"))):
            k = ok[(ok.kind == kind) & (ok.val_bpb <= limits[1])]
            if len(k):
                ax.scatter(k["index"], k.val_bpb, s=22, zorder=3, **style)
        _clip_marks(ax, ok["index"], ok.val_bpb, limits, c="#1f77b4")
        xs = list(ok["index"]) + [len(p) - 1]
        ys = list(ok.running_best) + [ok.running_best.iloc[-1]]
        ax.step(xs, np.minimum(ys, limits[1]), where="post", c="0.45", lw=1, ls="--", zorder=2,
                label="best single evaluation so far")
        conf = p[p.confirmed_bpb.notna()]
        if len(conf):
            i0 = int(conf["index"].iloc[0])
            ax.step(p["index"][i0:], p.confirmed_best[i0:], where="post", c="#2ca02c", lw=2.2,
                    zorder=2, label="running best (confirmed)")
            ax.scatter(conf["index"], conf.confirmed_bpb, marker="*", s=220, c="#d62728",
                       edgecolors="k", linewidths=0.5, zorder=5,
                       label="confirmed new best (mean of 2 OK evaluations)")
            for r in conf.tail(15).itertuples():
                text = r.description if len(r.description) <= 34 else r.description[:33] + "…"
                ax.annotate(text, (r.index, r.confirmed_bpb), xytext=(5, 7),
                            textcoords="offset points", fontsize=7.5, rotation=30, color="0.2")
        ax.set_ylim(*limits)
        ax.legend(loc="best", fontsize=8, framealpha=0.9)
    _failure_strip(axf, p)
    axf.set_xlabel("evaluation index (eval and confirm, in the order they finished)")
    if len(p):
        axf.set_xlim(-0.5, max(len(p) - 0.5, 0.5))
    return fig


def _failure_strip(ax, p: pd.DataFrame) -> None:
    bad = p[p.status != "ok"]
    statuses = sorted(set(bad.status))
    ax.set_ylabel("failures")
    ax.grid(axis="x", alpha=0.3)
    if not statuses:
        ax.set_yticks([])
        ax.text(0.5, 0.5, "no failed evaluations", ha="center", va="center",
                transform=ax.transAxes, color="0.4")
        return
    for i, s in enumerate(statuses):
        k = bad[bad.status == s]
        ax.scatter(k["index"], [i] * len(k), marker="x", s=40, lw=2,
                   c=STATUS_COLORS.get(s, "#17becf"))
    ax.set_yticks(range(len(statuses)),
                  [f"{s} ({int((bad.status == s).sum())})" for s in statuses])
    ax.set_ylim(-0.7, len(statuses) - 0.3)


def plot_pareto(run):
    """val_bpb against tokens/s: every scored genome, the front at the end of each generation
    (step lines, light to dark), the current front labelled, the best starred."""
    from matplotlib import colormaps
    from matplotlib.colors import Normalize
    from matplotlib.ticker import FuncFormatter

    fig, ax = _figure()
    scored = run.df[run.df.val_bpb.notna() & run.df.tokens_per_sec.notna()]
    ax.set_title(f"Pareto front of {run.run_dir.name}: {int(run.df.on_front.sum())} of "
                 f"{len(scored)} scored genomes (val_bpb down, tokens/s up)", loc="left")
    ax.set_xlabel(TPS_LABEL)
    ax.set_ylabel(BPB_LABEL)
    ax.grid(alpha=0.3)
    seeds = scored.val_bpb[scored.operator == "seed"]
    limits = _bpb_limits(scored.val_bpb, seeds.max() if len(seeds) else None)
    if limits is None:
        ax.text(0.5, 0.5, "no scored genome yet", ha="center", va="center",
                transform=ax.transAxes, fontsize=14, color="0.4")
        ax.set_yticks([])
        ax.set_xticks([])
        return fig
    inside = scored[scored.val_bpb <= limits[1]]
    ax.scatter(inside.tokens_per_sec, inside.val_bpb, s=20, c="0.65", zorder=2,
               label="scored genome")
    _clip_marks(ax, scored.tokens_per_sec, scored.val_bpb, limits, c="0.65")
    fronts = fronts_by_generation(run)
    gens = sorted(set(fronts.generation)) or [0]
    earlier = gens[:-1]
    cmap = colormaps["viridis"]
    norm = Normalize(min(gens), max(gens[-2] if len(gens) > 1 else gens[0], gens[0] + 1))
    front = run.pareto().sort_values("tokens_per_sec")
    moved, shown = [], set(front.genome_id)
    for g in reversed(earlier):              # a front that did not move is drawn once
        ids = set(fronts.genome_id[fronts.generation == g])
        if ids != shown:
            moved.append(g)
            shown = ids
    for g in sorted(moved):
        f = fronts[fronts.generation == g].sort_values("tokens_per_sec")
        ax.step(f.tokens_per_sec, f.val_bpb, where="pre", c=cmap(norm(g)), lw=1.3, alpha=0.85,
                marker=".", label=f"front after generation {g}" if len(moved) <= 6 else None)
    ax.step(front.tokens_per_sec, front.val_bpb, where="pre", c="#d62728", lw=2.2, zorder=3,
            marker="o", ms=6, label="front now")
    _clip_marks(ax, front.tokens_per_sec, front.val_bpb, limits, c="#d62728")
    # Ten labels at most: more would overlap.
    for r in front[front.val_bpb <= limits[1]].nsmallest(10, "val_bpb").itertuples():
        ax.annotate(r.genome_id[:8], (r.tokens_per_sec, r.val_bpb), xytext=(6, -10),
                    textcoords="offset points", fontsize=7.5, color="0.2")
    selected = [g for g in run.generations if g.get("population")]
    if selected:                             # NSGA-II's survivors of the last finished generation
        pop = scored[scored.genome_id.isin(selected[-1]["population"])]
        ax.scatter(pop.tokens_per_sec, pop.val_bpb.clip(upper=limits[1]), s=110,
                   facecolors="none", edgecolors="k", lw=0.8, zorder=3,
                   label=f"selected population (generation {selected[-1]['generation']})")
    best = _best_id(run)
    if best is not None:
        b = run.df.set_index("genome_id").loc[best]
        ax.scatter([b.tokens_per_sec], [b.val_bpb], marker="*", s=260, c="gold", edgecolors="k",
                   zorder=5, label=f"best {best[:8]} (lowest confirmed val_bpb)")
    if len(moved) > 6:                       # too many for the legend: a colour scale
        from matplotlib.cm import ScalarMappable

        bar = fig.colorbar(ScalarMappable(norm, cmap), ax=ax, pad=0.01, fraction=0.04)
        bar.set_label("front after generation")
    ax.set_ylim(*limits)
    ax.margins(x=0.08)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:,.0f}"))
    ax.legend(loc="best", fontsize=8, framealpha=0.9)
    return fig


def png_bytes(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


def _write_atomic(path: Path, data: bytes) -> None:
    """Write beside, then rename: a viewer refreshing the file never sees half a PNG."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _render(run) -> dict[str, bytes]:
    """Both plots as PNG bytes, quietly: layout and font notices are not the user's business
    (and write_plots runs beside the engine's progress lines)."""
    mpl_log = logging.getLogger("matplotlib")
    level = mpl_log.level
    mpl_log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return {"progress.png": png_bytes(plot_progress(run)),
                    "pareto.png": png_bytes(plot_pareto(run))}
    finally:
        mpl_log.setLevel(level)


def write_plots(run_dir) -> list[Path]:
    """progress.png and pareto.png into run_dir; the paths written, or [] on any failure.
    Called by the engine after each generation: it never raises and prints nothing."""
    try:
        from evolve.inspect.run import load_run

        images = _render(load_run(Path(run_dir)))
        out = []
        for name, data in images.items():
            _write_atomic(Path(run_dir) / name, data)
            out.append(Path(run_dir) / name)
        return out
    except Exception:                            # noqa: BLE001 - a plot must never stop a run
        return []


# -- the HTML page ---------------------------------------------------------------------------------
CSS = """body{font-family:system-ui,sans-serif;max-width:1150px;margin:2em auto;color:#222}
table{border-collapse:collapse;font-size:13px;margin:.5em 0 1.5em}th,td{border:1px solid #ccc;
padding:3px 7px;text-align:left;vertical-align:top}th{background:#f3f3f3}img{max-width:100%}
pre{background:#f8f8f8;padding:.6em;overflow-x:auto;font-size:12px}.add{color:#1a7f37}
.del{color:#cf222e}.hunk{color:#6f42c1}h2{border-bottom:1px solid #ddd;padding-bottom:.2em}"""


FORMATS = {"val_bpb": "{:.6f}", "val_bpb_std": "{:.6f}", "best_bpb": "{:.6f}",
           "change": "{:+.6f}", "tokens_per_sec": "{:,.0f}", "peak_memory_mb": "{:,.0f}",
           "valid_rate": "{:.0%}", "improved_rate": "{:.0%}", "hypervolume": "{:.4g}",
           "llm_tokens_per_improvement": "{:,.0f}"}


def _table_html(df: pd.DataFrame, css_class: str, empty: str) -> str:
    if not len(df):
        return f"<p>{html.escape(empty)}</p>"

    def fmt(pattern):
        return lambda x: "-" if _num(x) is None else pattern.format(float(x))
    return df.to_html(index=False, escape=True, classes=css_class, border=0, na_rep="-",
                      formatters={c: fmt(f) for c, f in FORMATS.items() if c in df.columns})


def _diff_html(diff: str) -> str:
    lines = []
    for line in diff.splitlines():
        cls = ("hunk" if line.startswith("@@") else "add" if line.startswith("+")
               else "del" if line.startswith("-") else "")
        text = html.escape(line)
        lines.append(f'<span class="{cls}">{text}</span>' if cls else text)
    return "<pre>" + "\n".join(lines) + "</pre>"


def report_html(run, images: dict[str, bytes]) -> str:
    from evolve.inspect.commands import totals

    def img(name, alt):
        data = base64.b64encode(images[name]).decode("ascii")
        return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'

    esc = html.escape
    lineage = lineage_table(run)
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>autoevolve report: {esc(run.run_dir.name)}</title><style>{CSS}</style></head>",
        f"<body><h1>autoevolve run {esc(run.run_dir.name)}</h1>",
        f"<p>{esc(str(run.run_dir.resolve()))}<br>{esc(totals(run))}</p>",
        f"<pre>{esc(noise_text(run))}</pre>",
        "<h2>Progress</h2>", img("progress.png", "val_bpb of each evaluation in order"),
        "<h2>Pareto front</h2>", img("pareto.png", "val_bpb against tokens/s"),
        _table_html(front_table(run), "front", "no scored genome yet"),
        "<h3>Front by generation</h3>",
        _table_html(front_history(run), "history", "no generation finished yet"),
        "<h2>Lineage of the best genome</h2>",
        _table_html(lineage.drop(columns="diff"), "lineage", "no best genome yet"),
    ]
    for r in lineage.itertuples():
        if r.diff:
            parts.append(f"<h4>step {r.step}: {esc(r.genome)} {esc(r.operator)}: "
                         f"{esc(r.description)}</h4>{_diff_html(r.diff)}")
    parts += ["<h2>Operators</h2>",
              _table_html(operator_stats(run), "operators", "no offspring yet"),
              "<h2>Failures</h2>",
              _table_html(failure_table(run), "failures", "no failed evaluations"),
              "</body></html>"]
    return "\n".join(parts)


def write_report(run_dir) -> tuple[list[Path], str | None]:
    """progress.png, pareto.png and report.html into run_dir: (paths, None) or ([], error)."""
    from evolve.inspect.commands import open_run

    run, err = open_run(str(run_dir))
    if err:
        return [], err
    images = _render(run)
    page = report_html(run, images)
    out = []
    try:
        for name, data in [*images.items(), ("report.html", page.encode("utf-8"))]:
            _write_atomic(Path(run_dir) / name, data)
            out.append(Path(run_dir) / name)
    except OSError as e:
        return [], f"cannot write into {run_dir} ({e.strerror or e})"
    return out, None


# -- command line ----------------------------------------------------------------------------------
def cmd_report(args) -> int:
    paths, err = write_report(args.run)
    if err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for p in paths:
        print(f"wrote {p}")
    return 0


def add_parser(sub) -> None:
    """Register `report` on evolve.cli's subparsers."""
    p = sub.add_parser("report", help="write progress.png, pareto.png and report.html of a run")
    p.add_argument("run", metavar="RUN", help="a run directory")
    p.set_defaults(func=cmd_report)

