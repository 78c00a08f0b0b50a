"""Evaluation: the trusted side of the genome boundary. The code that decides a score lives here.

task (the fixed constants of a setting), channel (the wire format between harness and
supervisor), runner (the contained entry point of the genome's process), sandbox (isolation
layers), mounts (the genome's private, read-only view of the filesystem), syscalls (no
capabilities, a seccomp filter), supervisor (one genome in, one EvalResult out, with the final
clock), feeder (batches out, claims and the weights in), verdict
(runs the scorer and accepts its record or not), scorer (val_bpb from the model's logits),
model_host (the walled process that runs the exported model on inputs only), archive_check
(what a .pt2 may contain before torch parses it), allowlist (the ops a scored graph may
contain), probes (the batches that catch look-ahead and state) and result (the frozen record
with its status enum).

It may import evolve.data and kernels/, never evolve.search, evolve.inspect or genome/
(tests/test_layout.py keeps it so): nothing on the search side can change how a number is
measured. The genome's only door in is `evolve.harness`, which talks to this package over the
channel.
"""
