"""Data: turning a corpus into the token files every evaluation of a run reads.

sources (the embedded stdlib corpus, climbmix shards, user files), download (resumable parallel
shard downloads), tokenizer (byte-level BPE, encoded with tiktoken), prepare (token files and
their fingerprint) and loader (best-fit packing of documents into rows).

Nothing here runs a genome or decides a score. Importers: the evaluation side (which packs rows
from prepared data), the CLI and tests. This package imports nothing from evolve.search,
evolve.inspect or genome/.
"""
