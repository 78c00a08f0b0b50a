"""Search: the evolutionary loop that decides which genomes to evaluate next.

engine (NSGA-II over DEAP, plus the hillclimb and random baselines), workers (the one swappable
map that hands genomes to supervisors), proposals (LLM offspring requested a generation ahead)
and archive (the crash-safe SQLite store the engine alone writes).

It consumes evolve.evaluation's results as values and never measures anything itself. It may
import evolve.evaluation, evolve.data and genome/, never evolve.inspect.
"""
