"""`evolve report`: a run's plots and report.html, written into its run directory.

    python -m evolve report RUN     # RUN/progress.png, RUN/pareto.png and RUN/report.html

`write_plots(run_dir)` is what the engine calls after each generation (progress.png and
pareto.png only; it never raises and prints nothing); `write_report(run_dir)` adds report.html.
Each file is written beside and renamed, so a viewer refreshing it never sees half of one.
`locate_run()` finds the run notebooks/analysis.ipynb opens. The tables are in
evolve.inspect.tables, the figures in evolve.inspect.figures and the page in
evolve.inspect.page; the notebook calls those directly.

What it does not do: change the archive, or decide anything (the engine does); it reads the run
through evolve.inspect.run.load_run only.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from pathlib import Path

from evolve.inspect.figures import plot_pareto, plot_progress, png_bytes
from evolve.inspect.page import report_html


# -- finding a run ---------------------------------------------------------------------------------
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


# -- writing files ---------------------------------------------------------------------------------
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
