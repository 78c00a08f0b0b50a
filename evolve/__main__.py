"""Command line: `python -m evolve SUBCOMMAND ...` (see evolve.cli)."""

from evolve.cli import main

if __name__ == "__main__":
    main()
