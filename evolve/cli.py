"""The command line of autoevolve.

    python -m evolve prepare [--dataset stdlib|climbmix|PATH] [--device cpu|cuda] [--vocab-size N]
    python -m evolve eval FILE [--budget S] [--device cpu|cuda] [--dataset ...] [--json]

`eval` trains one genome for the task's budget in a contained child process, scores it with the
trusted scorer and prints an autoresearch-style `key: value` summary (or one JSON object with
--json). It exits 0 only when the status is ok. Every failure of the user's input is one line on
stderr and a non-zero exit, never a traceback from our code.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _task_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", choices=("cpu", "cuda"), default=None,
                   help="where genomes train (default: cuda when available, else cpu)")
    p.add_argument("--dataset", default="stdlib",
                   help="stdlib (embedded, no network), climbmix, or a PATH of .txt/.jsonl/.parquet")
    p.add_argument("--vocab-size", type=int, default=None,
                   help="tokenizer vocabulary (default: 8192 on cuda, 2048 on cpu)")


def _task(args):
    from evolve.task import Task

    dataset = args.dataset
    if dataset not in ("stdlib", "climbmix"):
        path = Path(dataset).expanduser()
        if not path.exists():
            return None, f"--dataset {dataset}: no such file or directory"
        dataset = str(path.resolve())
    try:
        return Task.for_device(args.device, budget_s=getattr(args, "budget", None),
                               vocab_size=args.vocab_size, dataset=dataset), None
    except ValueError as e:
        return None, str(e)


def cmd_prepare(args) -> int:
    from evolve.prepare import PreparedData, prepare

    task, err = _task(args)
    if err:
        return _fail(err)
    data = prepare(task, num_shards=args.num_shards, force=args.force,
                   log=lambda m: print(m, file=sys.stderr))
    if not isinstance(data, PreparedData):
        return _fail(data)
    m = data.meta
    print(f"data_dir: {data.root}\nfingerprint: {data.fingerprint}\nvocab_size: {m['vocab_size']}\n"
          f"train_tokens: {m['train_tokens']}\nval_tokens: {m['val_tokens']}")
    return 0


def cmd_eval(args) -> int:
    from evolve.prepare import PreparedData, ensure_prepared
    from evolve.supervisor import Supervisor

    path = Path(args.file)
    if not path.is_file():
        return _fail(f"{args.file}: no such file")
    try:
        source = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        return _fail(f"{args.file}: cannot read as UTF-8 text ({e.__class__.__name__})")
    task, err = _task(args)
    if err:
        return _fail(err)
    data = ensure_prepared(task, log=lambda m: print(m, file=sys.stderr))
    if not isinstance(data, PreparedData):
        return _fail(data)
    sup = Supervisor(task, data)
    result = sup.evaluate(source, progress=_progress_bar(task, quiet=args.json))
    if args.json:
        print(json.dumps(result.to_dict()))
    else:
        print(result.summary())
    return 0 if result.ok else 1


def _progress_bar(task, quiet: bool):
    """A tqdm bar on stderr that follows the supervisor's phases."""
    if quiet or not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    bar = tqdm(total=100, desc="starting", file=sys.stderr,
               bar_format="{desc:<11} {bar} {percentage:3.0f}% [{elapsed}<{remaining}]")

    def update(phase: str, fraction: float) -> None:
        bar.set_description_str(phase, refresh=False)
        bar.n = int(100 * min(1.0, fraction))
        bar.refresh()
        if phase == "scoring":
            bar.close()
    return update


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m evolve",
                                     description="Evolutionary search over train.py genomes.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    p = sub.add_parser("prepare", help="build the tokenizer and token files for a dataset")
    _task_args(p)
    p.add_argument("--num-shards", type=int, default=10, help="climbmix training shards")
    p.add_argument("--force", action="store_true", help="prepare again even if present")
    p.set_defaults(func=cmd_prepare)
    p = sub.add_parser("eval", help="train and score one genome file")
    p.add_argument("file", help="the genome (a train.py-style file using evolve.harness)")
    _task_args(p)
    p.add_argument("--budget", type=float, default=None, metavar="S",
                   help="training seconds (default: 300 on cuda, 60 on cpu)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_eval)
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        raise SystemExit(2)
    try:
        code = args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        code = 130
    raise SystemExit(code)
