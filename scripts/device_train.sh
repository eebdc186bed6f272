#!/usr/bin/env bash
# Train on a borrowed CUDA machine in the background and report progress.
#   start:   bash scripts/device_train.sh start CONFIG STEPS   (probe speed, then launch a daemon)
#   wait:    bash scripts/device_train.sh wait SECONDS         (sleep, print the log tail, copy weights to $OUT)
# The daemon survives between calls while the machine stays warm; weights come back in $OUT
# as float32 safetensors shards small enough for the transfer limit.
set -euo pipefail
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
cmd=$1; shift
case "$cmd" in
  start)
    config=$1; steps=$2
    nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv
    python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"
    setsid nohup python3 -m samic.cli train --config "$config" --steps "$steps" > /tmp/train.log 2>&1 < /dev/null &
    sleep 90; tail -n 5 /tmp/train.log; tail -n 3 runs/*/train_log.csv || true ;;
  wait)
    sleep "$1"
    tail -n 5 /tmp/train.log; tail -n 4 runs/*/train_log.csv; tail -n 6 runs/*/val_log.csv || true
    for run in runs/*/; do
      name=$(basename "$run")
      cp "$run/train_log.csv" "$OUT/${name}_train_log.csv" 2>/dev/null || true
      cp "$run/val_log.csv" "$OUT/${name}_val_log.csv" 2>/dev/null || true
      python3 -c "
import sys, torch
from safetensors.torch import save_file
ck = torch.load('$run/checkpoint.pt', map_location='cpu', weights_only=False)
state = {k: v.float().contiguous() for k, v in ck['model'].items()}
keys = sorted(state); half = len(keys) // 2
meta = {'preset': ck['preset'], 'step': str(ck['step'])}
save_file({k: state[k] for k in keys[:half]}, '$OUT/${name}_part0.safetensors', metadata=meta)
save_file({k: state[k] for k in keys[half:]}, '$OUT/${name}_part1.safetensors', metadata=meta)
print('exported step', ck['step'])
" ;
    done ;;
esac
