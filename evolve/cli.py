"""The command line of autoevolve.

    python -m evolve [--population N] [--generations G] [--budget S] [--device D]
                     [--seed FILE ...] [--run-dir DIR | --resume DIR] [--strategy evolve|hillclimb|random]
    python -m evolve prepare [--dataset stdlib|climbmix|PATH] [--device cpu|cuda] [--vocab-size N]
    python -m evolve eval FILE [--budget S] [--device cpu|cuda] [--dataset ...] [--json]

`eval` trains one genome for the task's budget in a contained child process, scores it with the
trusted scorer and prints an autoresearch-style `key: value` summary (or one JSON object with
--json). It exits 0 only when the status is ok. Every failure of the user's input is one line on
stderr and a non-zero exit, never a traceback from our code.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path


def _task_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", choices=("cpu", "cuda"), default=None,
                   help="where genomes train (default: cuda when available, else cpu)")
    p.add_argument("--dataset", default=None,
                   help="stdlib (embedded, no network; the cpu default), climbmix (autoresearch's "
                        "data; the cuda default), or a PATH of .txt/.jsonl/.parquet")
    p.add_argument("--vocab-size", type=int, default=None,
                   help="tokenizer vocabulary (default: 8192 on cuda, 2048 on cpu)")
    p.add_argument("--clock", choices=("wall", "cpu"), default=None,
                   help="what the budget counts: wall seconds, or the genome's own CPU seconds "
                        "per granted core (default: cpu on cpu where it can be measured, so "
                        "other load does not decide the score; wall on cuda)")


def run_header(config, task, slots: int, cluster: str | None, seeds: int) -> str:
    """The run's first line: strategy, sizes, and what the budget counts."""
    budget = f"budget {task.budget_s:g} s" + (
        f" of core time ({task.threads} core(s) per genome)" if task.clock == "cpu" else "")
    return (f"{config.strategy}: population {config.population}, generations "
            f"{config.generations}, {budget} on {task.device} x{slots}"
            + (f" (Dask cluster {cluster})" if cluster else "") + f", {seeds} seed(s)")


def _clock(device: str, asked: str | None) -> str:
    """The budget clock: as asked, else cpu for a CPU task where it can be measured."""
    from evolve.evaluation.supervisor import cpu_clock_problem

    if asked or device != "cpu":
        return asked or "wall"
    problem = cpu_clock_problem()
    if problem:
        print(f"note: budgets count wall seconds ({problem}); other load on this machine will "
              "change scores", file=sys.stderr)
        return "wall"
    return "cpu"


def _task(args):
    from evolve.evaluation.task import Task

    dataset = args.dataset                   # None: the device's default (Task.for_device)
    if dataset not in (None, "stdlib", "climbmix"):
        path = Path(dataset).expanduser()
        if not path.exists():
            return None, f"--dataset {dataset}: no such file or directory"
        dataset = str(path.resolve())
    try:
        task = Task.for_device(args.device, budget_s=getattr(args, "budget", None),
                               vocab_size=args.vocab_size, dataset=dataset)
        clock = getattr(args, "clock", None)
        if task.device != "cpu":
            task = dataclasses.replace(task, clock=clock or "wall")
        else:
            from evolve.evaluation.clock import granted_cores

            # On CPU the supervisor grants the genome the cores this process may use, and as
            # many threads (evolve.evaluation.clock).
            task = dataclasses.replace(task, clock=_clock("cpu", clock),
                                       threads=len(granted_cores()))
        problem = task.problem()
        return (None, problem) if problem else (task, None)
    except ValueError as e:
        return None, str(e)


def cmd_prepare(args) -> int:
    from evolve.data.prepare import PreparedData, prepare

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
    from evolve.data.prepare import PreparedData, ensure_prepared
    from evolve.evaluation.supervisor import Supervisor

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
    bar = _progress_bar(task, quiet=args.json)
    result = sup.evaluate(source, progress=bar)
    if bar is not None:
        bar.close()
    if args.json:
        print(json.dumps(result.to_dict()))
    else:
        print(result.summary())
    return 0 if result.ok else 1


class _PhaseBar:
    """A tqdm bar on stderr that follows the supervisor's phases (called as progress(phase,
    fraction)); exporting and scoring show as such, at 100 %, until close()."""

    def __init__(self):
        from tqdm import tqdm

        self.bar = tqdm(total=100, desc="starting", file=sys.stderr,
                        bar_format="{desc:<11} {bar} {percentage:3.0f}% [{elapsed}<{remaining}]")

    def __call__(self, phase: str, fraction: float) -> None:
        from evolve.search.progress import PHASE_NAMES

        self.bar.set_description_str(PHASE_NAMES.get(phase, phase), refresh=False)
        self.bar.n = int(100 * min(1.0, fraction))
        self.bar.refresh()

    def close(self) -> None:
        self.bar.close()


def _progress_bar(task, quiet: bool) -> "_PhaseBar | None":
    return None if quiet or not sys.stderr.isatty() else _PhaseBar()


RUN_FLAGS = ("population", "strategy", "budget", "device", "seed", "run_dir", "dataset",
             "vocab_size", "crossover_prob", "operator_weights", "no_confirm", "no_bandit",
             "rng_seed", "max_failed_generations", "llm_share", "compute")


def _parse_weights(text: str | None):
    if not text:
        return ()
    out = []
    for part in text.split(","):
        name, _, w = part.partition("=")
        try:
            out.append((name.strip(), float(w)))
        except ValueError:
            raise ValueError(f"--operator-weights: {part!r} is not NAME=WEIGHT") from None
    return tuple(out)


def _load_seeds(paths: list[str]):
    """Read and check seed files before any training time is spent: (genomes, error)."""
    from genome.contract import check_source
    from genome.record import Genome

    from evolve.evaluation.supervisor import precheck

    genomes, seen = [], set()
    for p in paths:
        path = Path(p)
        try:
            source = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None, f"seed {p}: no such file"
        except (OSError, UnicodeDecodeError) as e:
            return None, f"seed {p}: cannot read it as UTF-8 text ({e.__class__.__name__})"
        problem = precheck(source)
        if problem:
            return None, f"seed {p}: {problem}"
        report = check_source(source)
        if not report.ok:
            return None, f"seed {p}: fails the contract check: {report.first()}"
        g = Genome.seed(source, f"seed {path.name}")
        if g.id not in seen:
            seen.add(g.id)
            genomes.append(g)
    return genomes, None


def default_seeds(device: str) -> list[str]:
    from evolve.evaluation.supervisor import PACKAGE_ROOT

    files = sorted((PACKAGE_ROOT / "seeds").glob("*.py"))
    if device == "cpu":
        return [str(f) for f in files if f.name == "cpu.py"]
    return [str(f) for f in files if f.name != "cpu.py"]


def cmd_run(args) -> int:
    import time as _time

    from evolve.search.archive import Archive, ArchiveError
    from evolve.search.engine import Engine, EngineConfig
    from evolve.data.prepare import PreparedData, ensure_prepared
    from evolve.evaluation.supervisor import Supervisor
    from evolve.evaluation.task import Task
    from evolve.search.workers import LocalMap, visible_gpus

    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    if args.resume:
        clash = [f"--{f.replace('_', '-')}" for f in RUN_FLAGS
                 if getattr(args, f) is not None and getattr(args, f) is not False]
        if clash:
            return _fail(f"--resume continues a run with its own settings; drop {', '.join(clash)}")
        try:
            archive = Archive.open(Path(args.resume))
        except ArchiveError as e:
            return _fail(str(e))
        meta = archive.meta()
        task = Task(**meta["task"])
        config = EngineConfig.from_dict(meta["config"])
        if args.generations is not None or args.prune is not None:
            config = dataclasses.replace(config, generations=(
                args.generations if args.generations is not None else config.generations),
                prune=args.prune or config.prune)
            archive.set_meta("config", config.to_dict())
        run_dir = Path(args.resume)
    else:
        task, err = _task(args)
        if err:
            return _fail(err)
        try:
            config = EngineConfig(
                population=args.population if args.population is not None else 8,
                generations=args.generations if args.generations is not None else 50,
                strategy=args.strategy or "evolve",
                crossover_prob=args.crossover_prob,
                operator_weights=_parse_weights(args.operator_weights),
                confirm=not args.no_confirm,
                rng_seed=args.rng_seed if args.rng_seed is not None else 0,
                max_failed_generations=(args.max_failed_generations
                                        if args.max_failed_generations is not None else 3),
                llm_share=args.llm_share,
                prune=args.prune or "shadow", bandit=not args.no_bandit,
                compute_s=args.compute)
        except ValueError as e:
            return _fail(str(e))
        problem = config.problem() or _llm_flags_problem(args)
        if problem:
            return _fail(problem)
        seed_files = args.seed or default_seeds(task.device)
        if not seed_files:
            return _fail("no seed genomes: give --seed FILE (see seeds/ and program.md)")
        seeds, err = _load_seeds(seed_files)
        if err:
            return _fail(err)
        run_dir = Path(args.run_dir or Path("runs") / (_time.strftime("%Y%m%d-%H%M%S") + f"-{task.device}"))
        if (run_dir / "archive.sqlite").exists():
            return _fail(f"{run_dir} already holds a run; use --resume {run_dir} or another --run-dir")
    # Everything that can refuse the start is checked before data is prepared or the run
    # directory is made, so a failed start costs seconds and leaves nothing behind.
    if task.device == "cuda" and not visible_gpus() and not args.cluster:
        return _fail("the task is on cuda but no GPU is visible (CUDA_VISIBLE_DEVICES, drivers); "
                     "use --device cpu to run on the CPU")
    cluster = None
    if args.cluster:
        from evolve.search.cluster import ClusterError, connect

        try:
            cluster = connect(args.cluster, task)
        except ClusterError as e:
            return _fail(str(e))
    proposer, err = _proposer(args, config, log)
    if err:
        _close_cluster(cluster)
        return _fail(err)
    data = ensure_prepared(task, progress=sys.stderr.isatty(), log=log)
    if not isinstance(data, PreparedData):
        if proposer is not None:
            proposer.close()
        _close_cluster(cluster)
        return _fail(data)
    fingerprint = task.fingerprint(data.fingerprint)
    if args.resume:
        if meta.get("fingerprint") != fingerprint:
            return _fail(f"{run_dir} was recorded on other data or task constants (fingerprint "
                         f"{meta.get('fingerprint')} here {fingerprint}); results cannot be mixed. "
                         "Prepare the same dataset and vocabulary, or start a new run")
        seeds = [g for g in (archive.genome(i) for i in archive.genome_ids()) if g.operator == "seed"]
    else:
        try:
            archive = Archive.create(run_dir, {"config": config.to_dict(), "task": task.to_dict(),
                                               "fingerprint": fingerprint,
                                               "seed_files": seed_files})
        except ArchiveError as e:
            if proposer is not None:
                proposer.close()
            return _fail(str(e))
        log(f"run directory: {run_dir}  (resume with: python -m evolve --resume {run_dir})")
    try:
        if cluster is not None:
            from evolve.search.cluster import DaskMap

            emap = DaskMap(cluster[0], task, fingerprint, cluster=cluster[1])
            cluster = None                   # the map closes it from here on
        else:
            emap = LocalMap(Supervisor(task, data))
    except ValueError as e:
        archive.close()
        if proposer is not None:
            proposer.close()
        _close_cluster(cluster)
        return _fail(str(e))
    log(run_header(config, task, emap.slots, args.cluster, len(seeds)))
    tty = sys.stderr.isatty()
    engine = Engine(archive, emap, config, seeds, log=log, show_progress=tty,
                    progress_lines=not tty, proposer=proposer, on_generation=_plots(run_dir))
    try:
        code = engine.run()
    except KeyboardInterrupt:
        log(f"stopped; every finished evaluation is saved. Resume with: python -m evolve --resume {run_dir}")
        return 130
    except Exception as e:
        from evolve.search.cluster import ClusterError

        if not isinstance(e, ClusterError):
            raise
        log(f"stopped: {e}. Every finished evaluation is saved; resume with: "
            f"python -m evolve --resume {run_dir} --cluster {args.cluster}")
        return 1
    finally:
        archive.close()
        if proposer is not None:
            proposer.close()
        if hasattr(emap, "close"):
            emap.close()
    _report_best(run_dir)
    return code


def _close_cluster(cluster) -> None:
    """Close a (client, cluster) pair that a failed start opened."""
    if cluster is not None:
        cluster[0].close()
        if cluster[1] is not None:
            cluster[1].close()


def _llm_flags_problem(args) -> str | None:
    if args.llm_concurrency < 1:
        return "--llm-concurrency must be at least 1"
    if args.max_llm_tokens is not None and args.max_llm_tokens < 1:
        return "--max-llm-tokens must be at least 1"
    return None


def _proposer(args, config, log):
    """The LLM proposer, None when LLM operators are off (said once), or an error line when
    they were asked for and cannot work (unreachable endpoint, rejected key)."""
    from genome.llm import LLMClient, settings_from_env

    from evolve.search.proposals import Proposer

    settings = settings_from_env(args.llm_model)
    if isinstance(settings, str):
        if args.llm_model:          # asked for and cannot work: an error, not a note
            return None, f"--llm-model {args.llm_model}: {settings.replace('LLM operators are off: ', '')}"
        log(settings + "; using the AST operators and crossover")
        return None, None
    program = Path(args.program)
    if not program.is_file():
        return None, f"--program {program}: no such file (the research agenda the model reads)"
    client = LLMClient(settings)
    problem = client.preflight()
    if problem:
        client.close()
        return None, f"LLM endpoint: {problem}"
    log(f"LLM operators on: {args.llm_model}, {_llm_share_line(config, settings.models)}, "
        f"{args.llm_concurrency} concurrent proposals")
    return Proposer(client, program.read_text(), concurrency=args.llm_concurrency,
                    max_tokens=args.max_llm_tokens), None


def _llm_share_line(config, models) -> str:
    """How the run decides the LLM's offspring: by the bandit (each model an arm) or fixed."""
    from evolve.search.engine import LLM_SHARE

    bandit = config.bandit and not config.operator_weights
    weighted = len(models) > 1 and len({w for _, w in models}) > 1
    if not bandit:
        share = LLM_SHARE if config.llm_share is None else config.llm_share
        return f"{share:.0%} of offspring" + (", models by weight" if len(models) > 1 else "")
    line = ("share and model drawn by the operator bandit, each model an arm"
            if config.llm_share is None else
            f"{config.llm_share:.0%} of offspring, model drawn by the operator bandit")
    if weighted:
        line += " (the :W weights apply only with --no-bandit or --operator-weights)"
    return line


def _plots(run_dir: Path):
    """After each generation, refresh progress.png and pareto.png in the run directory."""
    def refresh(generation: int) -> None:
        from evolve.inspect.report import write_plots

        write_plots(run_dir)
    return refresh


def _report_best(run_dir: Path) -> None:
    from evolve.inspect.run import load_run

    run = load_run(run_dir)
    if run.df.val_bpb.notna().any():
        b = run.best()
        # Said with the score: a best measured OK once (its confirmation failed, or there was
        # none) is a single draw, not a result.
        confirmed = (f"yes ({b.n_ok} OK evaluations)" if b.n_ok >= 2 else
                     f"no ({b.n_ok} OK of {b.n_evals} evaluation(s): a single draw)")
        print(f"best: {b.genome_id}\nval_bpb: {b.val_bpb:.6f}\nconfirmed: {confirmed}\n"
              f"tokens_per_sec: {b.tokens_per_sec:.1f}"
              f"\ndescription: {b.description}\nrun_dir: {run_dir}\n"
              f"# in Python: from evolve import load_run; run = load_run({str(run_dir)!r})")


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


class _Parser(argparse.ArgumentParser):
    """argparse, with errors in at most three lines: what is wrong (naming the flag), the usage
    of the command in use, and where the full help is."""

    def error(self, message: str):
        usage = " ".join(self.format_usage().split())
        if len(usage) > 160:
            usage = usage[:157] + "..."
        self.exit(2, f"error: {message}\n{usage}\nsee: {self.prog} --help\n")


def unknown_flag(parser: argparse.ArgumentParser, argv: list[str]):
    """(message, the parser of the command in use) for the first --flag in argv that neither the
    main parser nor that command knows, with the nearest known one; or None. argparse itself
    would blame the value that follows it (as an invalid COMMAND) and never name the flag."""
    import difflib

    subparsers = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
    in_use = parser
    for token in argv:
        if token == "--":
            break
        if subparsers is not None and in_use is parser and token in subparsers.choices:
            in_use = subparsers.choices[token]
            continue
        if token.startswith("--"):
            known = set(in_use._option_string_actions)
            flag = token.split("=", 1)[0]
            if flag not in known and not any(k.startswith(flag) for k in known):
                near = difflib.get_close_matches(flag, sorted(known), n=1)
                return (f"unknown flag {flag}" + (f" (did you mean {near[0]}?)" if near else ""),
                        in_use)
    return None


def cmd_bench(args) -> int:
    from evolve.inspect.bench import format_table, plot, summarize
    from evolve.inspect.run import load_run
    from evolve.search.bench import run_one, strategy_flags

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    seeds = [str(Path(s).resolve()) for s in args.seed or []]
    runs = {}
    for strategy in args.strategies:
        for rng_seed in args.rng_seeds:
            run_dir = out / f"{strategy}-{rng_seed}"
            code = run_one(run_dir, strategy, rng_seed, args.compute, args.budget,
                           args.population, seeds, args.device,
                           log=lambda m: print(m, file=sys.stderr, flush=True))
            if not (run_dir / "archive.sqlite").exists():
                print(f"error: the {strategy} run with rng seed {rng_seed} did not start (exit "
                      f"code {code}); run it alone to see why: python -m evolve "
                      f"{' '.join(strategy_flags(strategy))} --run-dir {run_dir}",
                      file=sys.stderr)
                return 1
            runs[(strategy, rng_seed)] = load_run(run_dir)
    table, noise = summarize(runs, cap=args.compute)
    for line in format_table(table, noise):
        print(line)
    plot(runs, out / "bench.png")
    print(f"wrote {out / 'bench.png'}")
    return 0


def _bench_parser(sub) -> None:
    from evolve.search.bench import STRATEGIES

    p = sub.add_parser("bench", help="compare search strategies at equal compute (runs them)")
    p.add_argument("--strategies", nargs="+", choices=STRATEGIES, default=list(STRATEGIES))
    p.add_argument("--rng-seeds", type=int, nargs="+", default=[0, 1, 2], metavar="N")
    p.add_argument("--compute", type=float, default=150.0, metavar="S",
                   help="evaluation seconds per run (150)")
    p.add_argument("--budget", type=float, default=10.0, metavar="S",
                   help="training seconds per genome (10)")
    p.add_argument("--population", type=int, default=4, help="genomes per generation (4)")
    p.add_argument("--seed", action="append", metavar="FILE",
                   help="seed genome(s) (default: the device's seeds)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--out", default="runs/bench", help="where the runs and bench.png go")
    p.set_defaults(func=cmd_bench)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m evolve",
                     description="Evolutionary search over train.py genomes.")
    parser.add_argument("--population", type=int, default=None, help="genomes per generation (8)")
    parser.add_argument("--generations", type=int, default=None, help="generations after the initial one (50)")
    parser.add_argument("--budget", type=float, default=None, metavar="S",
                        help="training seconds per genome (300 on cuda, 60 on cpu)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default=None)
    parser.add_argument("--seed", action="append", metavar="FILE",
                        help="a seed genome (repeatable; default: seeds/ for the device)")
    parser.add_argument("--run-dir", default=None, help="where the archive goes (runs/DATE-DEVICE)")
    parser.add_argument("--resume", default=None, metavar="DIR", help="continue a stopped run")
    parser.add_argument("--strategy", choices=("evolve", "hillclimb", "random"), default=None)
    parser.add_argument("--dataset", default=None,
                        help="stdlib (cpu default), climbmix (cuda default) or a PATH")
    parser.add_argument("--vocab-size", type=int, default=None)
    parser.add_argument("--crossover-prob", type=float, default=None,
                        help="fixed crossover share (default: the operator bandit decides; 0.2 "
                             "with --no-bandit or --operator-weights)")
    parser.add_argument("--operator-weights", default=None, metavar="NAME=W,...",
                        help="mutation weights, e.g. constant=3,keyword=1 (python -m genome list)")
    parser.add_argument("--compute", type=float, default=None, metavar="S",
                        help="stop before a generation once the evaluations took S seconds in "
                             "all (equal compute for comparing strategies)")
    parser.add_argument("--no-bandit", action="store_true",
                        help="draw mutation operators uniformly, not by the operator bandit")
    parser.add_argument("--no-confirm", action="store_true",
                        help="declare a new best without a confirming re-evaluation")
    parser.add_argument("--prune", choices=("off", "shadow", "on"), default=None,
                        help="judge each run's loss curve at 20/40/60 %% of its budget against "
                             "its parent's, the best's and the run's median: record what it "
                             "would stop (shadow, the default), stop it (on), or neither (off); "
                             "may change on --resume")
    parser.add_argument("--rng-seed", type=int, default=None, help="seed of the search's random stream")
    parser.add_argument("--max-failed-generations", type=int, default=None, metavar="K",
                        help="stop after K generations in a row where every evaluation failed (3)")
    parser.add_argument("--cluster", default=None, metavar="ADDRESS",
                        help="evaluate on a Dask cluster: a scheduler (tcp://HOST:8786) or local:N "
                             "worker processes (needs pip install -e '.[cluster]')")
    llm = parser.add_argument_group("language-model operators (endpoint and key from "
                                    "OPENAI_BASE_URL and OPENAI_API_KEY)")
    llm.add_argument("--llm-model", default=None, metavar="NAME[:W],...",
                     help="model(s) for LLM mutation and crossover, e.g. gpt-4.1-mini or a:3,b:1")
    llm.add_argument("--llm-share", type=float, default=None,
                     help="fixed share of offspring from the language model (default: the "
                          "operator bandit decides; 0.25 with --no-bandit or --operator-weights)")
    llm.add_argument("--llm-concurrency", type=int, default=4, help="proposals in flight (4)")
    llm.add_argument("--max-llm-tokens", type=int, default=None,
                     help="stop proposing after this many prompt + completion tokens")
    from evolve.evaluation.supervisor import PACKAGE_ROOT

    llm.add_argument("--program", default=str(PACKAGE_ROOT / "program.md"),
                     help="the research agenda given to the model (program.md)")
    parser.set_defaults(func=cmd_run)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
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
    from evolve.inspect.commands import add_parsers
    from evolve.inspect.report import add_parser as add_report

    add_parsers(sub)
    add_report(sub)
    _bench_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else argv
    bad = unknown_flag(parser, argv)
    if bad:
        bad[1].error(bad[0])
    args = parser.parse_args(argv)
    try:
        code = args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        code = 130
    raise SystemExit(code)
