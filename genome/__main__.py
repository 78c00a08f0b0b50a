"""Command line of the genome package: list, mutate, cross and check genome files.

    python -m genome list                                  # operators, one line each
    python -m genome mutate FILE [--operator NAME] [--seed N]
    python -m genome cross A B [--operator NAME] [--seed N]
    python -m genome check [--no-static] FILE...

mutate and cross write the child's source to stdout and `operator: description` to stderr, so
`python -m genome mutate seeds/baseline.py --seed 3 > child.py` keeps the child. Without
--operator, the first applicable operator in an order drawn from the seed is used; the default
seed is 0, so a plain call is reproducible. check prints `FILE:LINE: reason [code]` for every
contract problem (and static problem, unless --no-static) and exits 1 if any file has one.

Exit status: 0 done; 1 the input is not a valid genome, or no operator applies; 2 a file cannot
be read or the arguments are wrong. Every failure is one line on stderr, never a traceback.

What it does not do: evaluate genomes (python -m evolve eval) or keep an archive (the engine).
"""

from __future__ import annotations

import argparse
import random
import sys

from genome.contract import check_source, read_source
from genome.operators import CROSSOVERS, MUTATIONS, cross, mutate
from genome.static_check import check_all


def _fail(message: str, code: int = 1) -> int:
    print(f"genome: {message}", file=sys.stderr)
    return code


def _load(path: str) -> tuple[str | None, int]:
    """(source, 0) for a readable genome that passes the contract check, else (None, exit code)
    after printing one line."""
    text, why = read_source(path)
    if text is None:
        return None, _fail(f"{path} {why}", 2)
    report = check_source(text)
    if not report.ok:
        p = report.problems[0]
        more = f" (and {len(report.problems) - 1} more: python -m genome check {path})" \
            if len(report.problems) > 1 else ""
        return None, _fail(f"{path}:{p.line}: {p.message}{more}")
    return text, 0


def _emit(name: str, result, what: str) -> int:
    if not result.applied and not name:
        # Every operator's reason would make a very long line; name the way to see them.
        return _fail(f"{what}: no operator found anything to change "
                     f"(--operator NAME gives that operator's reason)")
    if not result.applied:
        return _fail(f"{what}: {result.reason}")
    sys.stdout.write(result.child)
    sys.stdout.flush()
    print(f"{name}: {result.description}", file=sys.stderr)
    return 0


def cmd_list(args) -> int:
    for table in (MUTATIONS, CROSSOVERS):
        kind = "mutation" if table is MUTATIONS else "crossover"
        for op in table.values():
            print(f"{op.name:<18} {kind:<9} {op.family:<11} {op.summary}")
    return 0


def cmd_mutate(args) -> int:
    source, code = _load(args.file)
    if source is None:
        return code
    name, result = mutate(source, random.Random(args.seed), args.operator)
    what = f"operator {args.operator} does not apply to {args.file}" if args.operator \
        else f"no mutation applies to {args.file}"
    return _emit(name, result, what)


def cmd_cross(args) -> int:
    a, code = _load(args.a)
    if a is None:
        return code
    b, code = _load(args.b)
    if b is None:
        return code
    name, result = cross(a, b, random.Random(args.seed), args.operator)
    what = f"crossover {args.operator} does not apply to {args.a} x {args.b}" if args.operator \
        else f"no crossover applies to {args.a} x {args.b}"
    return _emit(name, result, what)


def cmd_check(args) -> int:
    failed = 0
    for path in args.files:
        text, why = read_source(path)
        if text is None:
            print(f"{path}:1: {why} [unreadable]")
            failed += 1
            continue
        report = check_source(text) if args.no_static else check_all(text)
        for line in report.lines(path):
            print(line)
        failed += not report.ok
    if failed:
        print(f"genome: {failed} of {len(args.files)} files failed the check", file=sys.stderr)
    else:                                 # stdout stays the problems alone, one per line
        print(f"genome: {len(args.files)} file(s) pass the contract check", file=sys.stderr)
    return 1 if failed else 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m genome",
                                description="Token-free variation of genome files.")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list the operators").set_defaults(func=cmd_list)
    m = sub.add_parser("mutate", help="write a mutated child of FILE to stdout")
    m.add_argument("file", metavar="FILE")
    m.add_argument("--operator", choices=list(MUTATIONS), help="default: any that applies")
    m.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    m.set_defaults(func=cmd_mutate)
    c = sub.add_parser("cross", help="write a crossover child of A and B to stdout")
    c.add_argument("a", metavar="A")
    c.add_argument("b", metavar="B")
    c.add_argument("--operator", choices=list(CROSSOVERS), help="default: any that applies")
    c.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    c.set_defaults(func=cmd_cross)
    k = sub.add_parser("check", help="check genome files against the harness contract")
    k.add_argument("files", metavar="FILE", nargs="+")
    k.add_argument("--no-static", action="store_true",
                   help="only the contract rules (no undefined-name / import checks)")
    k.set_defaults(func=cmd_check)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return _fail("interrupted", 130)
    except BrokenPipeError:
        return 0 if args.command != "check" else 1


if __name__ == "__main__":
    sys.exit(main())
