"""Figures of one run: the progress and Pareto plots of the notebook and of `evolve report`;
and of several: `plot_bench`, strategies against compute (`python -m evolve bench`).

    from evolve.inspect import figures
    figures.plot_progress(run)      # a matplotlib Figure; figures.png_bytes(fig) its PNG bytes

Figures are built on matplotlib's object API and rendered with the Agg canvas: no pyplot state,
no window, safe in the engine's thread. matplotlib is imported inside the functions, so
importing this module does not load it. What is drawn comes from evolve.inspect.tables.

What it does not do: write files (evolve.inspect.report and evolve.inspect.bench do), change the
archive, or decide anything (the engine does).
"""

from __future__ import annotations

import io
import math

import numpy as np
import pandas as pd

from evolve.inspect.tables import _best_id, fronts_by_generation, progress_frame
from evolve.evaluation.result import finite_or_none as _num

BPB_LABEL = "val_bpb (bits per byte, lower is better)"
TPS_LABEL = "throughput (tokens/s, higher is better)"
STATUS_COLORS = {"crash": "#d62728", "timeout": "#ff7f0e", "oom": "#9467bd",
                 "diverged": "#8c564b", "invalid": "#7f7f7f", "cheat": "#000000",
                 "pruned": "#bcbd22"}
DPI = 110                       # 10 x 6 inch figures -> 1100 x 660 px PNGs of ~60 KB


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
            right = 0.6 * max(len(p) - 1, 1)     # labels past this would leave the figure
            for r in conf.tail(15).itertuples():
                text = r.description if len(r.description) <= 34 else r.description[:33] + "…"
                left = r.index > right
                ax.annotate(text, (r.index, r.confirmed_bpb), xytext=(-8 if left else 5, 7),
                            textcoords="offset points", fontsize=7.5, rotation=-30 if left else 30,
                            ha="right" if left else "left", va="bottom", color="0.2",
                            rotation_mode="anchor")
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
    ax.set_ylabel("not scored")      # failures, and runs stopped by --prune on
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
        how = "lowest confirmed val_bpb" if b.n_ok >= 2 else "lowest val_bpb, n=1, not confirmed"
        ax.scatter([b.tokens_per_sec], [b.val_bpb], marker="*", s=260, c="gold", edgecolors="k",
                   zorder=5, label=f"best {best[:8]} ({how})")
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


def plot_bench(curves: dict) -> "Figure":
    """`python -m evolve bench`'s figure: for each strategy, the best confirmed val_bpb so far
    against compute (evaluation seconds), median over its runs with their range as a band.
    `curves`: (strategy, rng seed) -> DataFrame of compute_s and best (evolve.search.bench)."""
    import warnings

    fig, ax = _figure()
    top = max((c.compute_s.iloc[-1] for c in curves.values() if len(c)), default=1.0)
    grid = np.linspace(0.0, top, 200)
    for strategy in dict.fromkeys(s for s, _ in curves):
        stack = []
        for (s, _), c in curves.items():
            if s != strategy or not len(c):
                continue
            idx = np.searchsorted(c.compute_s.to_numpy(), grid, side="right") - 1
            vals = np.where(idx >= 0, c.best.to_numpy()[np.clip(idx, 0, None)], np.nan)
            stack.append(np.where(grid <= c.compute_s.iloc[-1], vals, np.nan))
        if not stack:
            continue
        with warnings.catch_warnings():           # all-NaN columns: before any confirmation
            warnings.simplefilter("ignore", RuntimeWarning)
            arr = np.array(stack, dtype=float)
            med, lo, hi = np.nanmedian(arr, 0), np.nanmin(arr, 0), np.nanmax(arr, 0)
        line, = ax.plot(grid, med, label=f"{strategy} ({len(stack)} runs)")
        ax.fill_between(grid, lo, hi, color=line.get_color(), alpha=0.15)
    ax.set_xlabel("compute: evaluation seconds spent")
    ax.set_ylabel("best confirmed " + BPB_LABEL)
    ax.legend(loc="upper right")
    ax.grid(alpha=0.3)
    return fig
