#!/usr/bin/env bash
# Issue 14's GPU figures in as few device calls as possible, each part under its own time limit, every
# table also written under $OUT (default runs/speed). Run from the repository root on a CUDA machine
# (PYTHONPATH=src is set here: no install needed where torch and transformers are already present).
#
#   bash benchmarks/speed_suite.sh decode    # decode loop alone: captured vs compiled, 64 and 256 rows (~3 min)
#   bash benchmarks/speed_suite.sh step      # one training step vs TRL at the anchor, micro-batch 32 (~5 min;
#                                            # TRL needs trl, datasets, pyarrow... importable)
#   bash benchmarks/speed_suite.sh profile   # the step phase by phase, with the kernel profile (~2 min)
#   bash benchmarks/speed_suite.sh memory    # what is alive at the step's peak, micro-batch 64 (~2 min)
#   bash benchmarks/speed_suite.sh credit    # GAE and shapley_max kernels against the bandwidth bound (~2 min)
#   bash benchmarks/speed_suite.sh big       # 14B full fine-tuning beside TRL, 7B and 32B LoRA (~5 min)
#
# docs/results/README.md (the H200 sections under "Speed") has the figures of the last runs.
set -uo pipefail
export PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
PY="${PYTHON:-python3}"
OUT="${OUT:-runs/speed}"
mkdir -p "$OUT"
quiet='Loading weights\|Writing model\|eos_token_id must\|_warn_once\|acc_events\|warnings.warn'

part() {  # part NAME SECONDS ARGS...: one script under a time limit, its log in $OUT/NAME.log
  local name=$1 limit=$2
  shift 2
  echo "== $name (at most ${limit} s)"
  timeout "$limit" "$PY" "$@" 2>&1 | grep -v "$quiet" | tee "$OUT/$name.log" | tail -40
}

case "${1:-}" in
  decode)
    part decode 300 benchmarks/decode_bench.py --device cuda --variants graph,compiled --batches 64,256 --out "$OUT"
    ;;
  step)
    part step 480 benchmarks/trainer_bench.py --device cuda --variants credo_grpo_compiled_layers,credo_grpo_compiled,trl_grpo \
      --steps 5 --warmup 2 --child-timeout 200 --out "$OUT/trainer_bench.json"
    ;;
  profile)
    part profile 300 benchmarks/trainer_profile.py --device cuda --backends compiled,compiled_layers --steps 2 --warmup 1 \
      --kernels --profile-step --out "$OUT"
    ;;
  memory)
    part memory 200 benchmarks/trainer_profile.py --device cuda --backends compiled_layers --micro-batch 64 --steps 1 \
      --warmup 1 --memory --out "$OUT/memory"
    ;;
  credit)
    part credit 200 benchmarks/credit_bench.py --device cuda --peak-gbs 4800 --cases 256x2048 --shapley-K 4,8,16,32 \
      --json "$OUT/credit.json"
    ;;
  big)
    part big_full 330 benchmarks/big_model_bench.py --shapes 14B --steps 1 --warmup 1 --peer-trl --timeout 160 \
      --out "$OUT/big_full.json"
    part big_lora 200 benchmarks/big_model_bench.py --shapes 7B,32B --lora 16 --steps 1 --warmup 1 --timeout 95 \
      --out "$OUT/big_lora.json"
    ;;
  *)
    sed -n '2,14p' "$0"
    exit 2
    ;;
esac
