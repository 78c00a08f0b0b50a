"""report.html of one run: one self-contained page, the plots embedded as base64 PNG.

    page.report_html(run, {"progress.png": png, "pareto.png": png})    # the page, a str

The page lays out the tables of evolve.inspect.tables. Everything a genome or an operator wrote
(descriptions, diffs, stderr) is HTML-escaped, and the page has no script, iframe or link:
opening it fetches and runs nothing.

What it does not do: draw the plots (evolve.inspect.figures; the caller passes their PNG bytes),
write the file (evolve.inspect.report does), or change the archive.
"""

from __future__ import annotations

import base64
import html

import pandas as pd

from evolve.inspect.tables import (failure_table, front_history, front_table, lineage_table,
                                   noise_text, operator_stats)
from evolve.evaluation.result import finite_or_none as _num

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
