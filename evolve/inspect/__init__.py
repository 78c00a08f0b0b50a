"""Inspect: looking at a finished or running run, read-only.

run (`load_run`, the one door into pandas), commands (show, lineage, replay, prompt), export
(a genome out as a file, a git history or a TSV), report (the `evolve report` command that
writes the plots and report.html), tables (pandas tables and text), figures (matplotlib
figures) and page (the report.html page).

Only the CLI, `evolve.load_run` and notebooks import this package; the evaluation and search
sides never do, so nothing written for people can change a score or a decision.
"""
