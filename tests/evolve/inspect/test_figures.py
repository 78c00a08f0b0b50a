"""evolve.inspect.figures: both plots of the shared real run (see conftest.py) and of runs with
no score yet, rendered to PNG, and the y-limits that keep an outlier from squashing the rest."""

from __future__ import annotations

import math

import pytest

from evolve.inspect import figures, tables
from evolve.inspect.run import load_run
from tests.evolve.inspect.conftest import TINY, check_png, empty_archive, only_failures_archive


def test_plots_of_a_run(small_run_dir):
    run = load_run(small_run_dir)
    progress, pareto = figures.plot_progress(run), figures.plot_pareto(run)
    for fig in (progress, pareto):
        pixels = check_png(figures.png_bytes(fig))
        assert pixels.shape[:2] == (6 * figures.DPI, 10 * figures.DPI)
    ax, strip = progress.axes
    assert f"{len(tables.progress_frame(run))} evaluations" in ax.get_title(loc="left")
    assert any(t.get_text().startswith("crash (") for t in strip.get_yticklabels())
    assert pareto.axes[0].get_title(loc="left").startswith(f"Pareto front of {run.run_dir.name}")


@pytest.mark.parametrize("kind", ["no evaluations", "only failures"])
def test_plots_of_a_run_without_a_score(tmp_path, kind):
    from genome.record import Genome

    d = tmp_path / "run"
    if kind == "no evaluations":
        archive = empty_archive(d, [Genome.seed(TINY.read_text(), "seed tiny.py")])
        archive.plan_generation(0, archive.genome_ids())
    else:
        archive = only_failures_archive(d)
    run = load_run(d)
    progress, pareto = figures.plot_progress(run), figures.plot_pareto(run)
    for fig in (progress, pareto):
        check_png(figures.png_bytes(fig))
    expected = "no evaluations yet" if kind == "no evaluations" else "no scored evaluation yet"
    assert expected in [t.get_text() for t in progress.axes[0].texts]
    assert "no scored genome yet" in [t.get_text() for t in pareto.axes[0].texts]
    archive.close()


def test_bpb_limits_clip_an_outlier():
    assert figures._bpb_limits([]) is None
    assert figures._bpb_limits([math.nan, None]) is None
    lo, hi = figures._bpb_limits([1.0, 1.1, 1.2, 9.0])     # a genome that learned nothing
    assert lo < 1.0 < 1.2 < hi < 2.0
    lo, hi = figures._bpb_limits([1.0, 1.1, 1.2, 9.0], first=1.6)     # the seed is the top
    assert 1.6 < hi < 9.0


def test_every_label_stays_inside_the_figure(small_run_dir):
    fig = figures.plot_progress(load_run(small_run_dir))
    fig.canvas.draw()
    box = fig.bbox
    labels = [t for t in fig.axes[0].texts if t.get_text()]
    assert labels                                   # the confirmed bests are labelled
    for t in labels:
        ext = t.get_window_extent()
        assert box.x0 <= ext.x0 and ext.x1 <= box.x1 and box.y0 <= ext.y0 and ext.y1 <= box.y1, \
            (t.get_text(), ext, box)


def test_an_unconfirmed_best_is_not_called_confirmed(tmp_path):
    from genome.record import Genome

    from evolve.evaluation.result import Status, make_result

    g = Genome.seed(TINY.read_text(), "seed tiny.py")
    archive = empty_archive(tmp_path / "run", [g])
    archive.add_eval(g.id, make_result(Status.OK, val_bpb=2.5, tokens_per_sec=1000.0), "eval",
                     0, "cpu", 0.0, 1.0)
    archive.close()
    run = load_run(tmp_path / "run")
    labels = figures.plot_pareto(run).axes[0].get_legend_handles_labels()[1]
    assert f"best {g.id[:8]} (lowest val_bpb, n=1, not confirmed)" in labels
    assert "n=1, not confirmed" in repr(run)
