#!/usr/bin/env bash
# The prepared GPU check (issue 13), one command for a lent H100/H200:
#
#     bash benchmarks/gpu_check.sh [BUDGET_S] [DATASET]      # defaults: 120 s, stdlib
#
# 1. the `gpu`-marked tests (kernels against their references, FlexAttention windows, the seed);
# 2. python -m kernels.bench (each kernel against eager and torch.compile), and
#    benchmarks/bench_copies.py (GB/s of the logits' copies, pageable and page-locked);
# 3. python -m evolve eval seeds/baseline.py on cuda, printed as one table: tokens/s, tokens,
#    steps, MFU, peak memory, start-up, first loss report (compilation included), scoring seconds,
#    val_bpb, status.
# DATASET is stdlib (embedded, needs no network) or a prepared climbmix/PATH; a device without
# network cannot download climbmix, so prepare it where there is one and carry the data
# ($AUTOEVOLVE_HOME). About 7 minutes at the defaults (estimate: never run on a GPU here).
# Without an NVIDIA driver or a visible CUDA device it says so on one line and exits 2.
set -uo pipefail
cd "$(dirname "$0")/.."
BUDGET="${1:-120}"
DATASET="${2:-stdlib}"
if ! command -v nvidia-smi > /dev/null; then
    echo "gpu_check: no NVIDIA driver here (nvidia-smi not found); nothing checked"
    exit 2
fi
if ! python -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    echo "gpu_check: no CUDA device is visible (torch.cuda.is_available() is False); nothing checked"
    exit 2
fi
status=0
echo "== gpu tests"
python -m pytest -q -m gpu -p no:cacheprovider || status=1
echo "== kernels"
python -m kernels.bench || status=1
echo "== logits copies"
python benchmarks/bench_copies.py || status=1
echo "== seeds/baseline.py, budget ${BUDGET} s, dataset ${DATASET}"
out="$(mktemp)"
python -m evolve eval seeds/baseline.py --device cuda --budget "$BUDGET" --dataset "$DATASET" \
    --json > "$out" || status=1
python - "$out" <<'PY'
import json
import sys

text = open(sys.argv[1]).read().strip()
try:
    r = json.loads(text.splitlines()[-1])
except (IndexError, ValueError):
    print("no result:", text[-500:])
    raise SystemExit(0)
curve, losses = r.get("curve") or [], r.get("losses") or []
# the first loss the genome reported, placed on the budget by the supervisor's clock
first = curve[0][0] * r["training_seconds"] if curve and r.get("training_seconds") else None
steps = losses[-1][0] if losses else None
rows = [("status", r.get("status")), ("val_bpb", r.get("val_bpb")),
        ("tokens/s", r.get("tokens_per_sec")), ("tokens", r.get("tokens")),
        ("last step reported", steps),
        ("MFU", r.get("mfu")), ("peak memory (MB)", r.get("peak_memory_mb")),
        ("start-up (s)", r.get("startup_seconds")),
        ("first loss report (s of budget: compilation included)", first),
        ("training (s)", r.get("training_seconds")), ("scoring (s)", r.get("scoring_seconds")),
        ("total (s)", r.get("total_seconds")), ("reason", r.get("reason") or "")]
for name, value in rows:
    shown = f"{value:,.4g}" if isinstance(value, float) else value
    print(f"| {name} | {shown} |")
PY
rm -f "$out"
exit $status
