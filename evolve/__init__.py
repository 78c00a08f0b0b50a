"""autoevolve's trusted side: data, harness, supervisor, scorer, engine, archive and CLI.

`from evolve import load_run` opens a run directory in pandas (see evolve.inspect.run). Genomes import
only `from evolve import harness`; nothing heavy is imported here, so that stays fast.
"""


def load_run(run_dir):
    """Open a run directory for analysis: see evolve.inspect.run.Run."""
    from evolve.inspect.run import load_run as _load

    return _load(run_dir)
