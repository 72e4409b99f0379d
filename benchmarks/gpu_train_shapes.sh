#!/usr/bin/env bash
# The from-scratch training of the embedded model on a GPU, within a time limit, resumable.
#
#   benchmarks/gpu_train_shapes.sh OUT [SECONDS] [DEVICE]
#
# Runs the default recipe (`diffpid train-shapes`, parse stage then 8,000 UNet steps) into
# OUT/run for at most SECONDS (default 480), then writes OUT/gpu_train_shapes.md with the steps
# reached and the seconds per step from train.log. Run it again with the same OUT to go on
# (--resume). DEVICE defaults to cuda; `cpu` tries the script here (with a few seconds).
set -euo pipefail
out=${1:?usage: gpu_train_shapes.sh OUT [SECONDS] [DEVICE]}
seconds=${2:-480}
device=${3:-cuda}
mkdir -p "$out"
resume=""
[ -f "$out/run/checkpoint.pt" ] && resume="--resume"
start=$(date +%s)
set +e
HF_HUB_OFFLINE=1 timeout --signal=KILL "$seconds" \
  python -m diffpid train-shapes --out "$out/run" --device "$device" --threads 4 --checkpoint-every 200 $resume \
  > "$out/train.out" 2>&1
rc=$?
set -e
python - "$out" "$device" "$(( $(date +%s) - start ))" "$rc" <<'PY'
import json, sys
from pathlib import Path
out, device, seconds, rc = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
rows = [json.loads(l) for l in (out / "run" / "train.log").read_text().splitlines() if l.startswith("{")]
steps = [r for r in rows if "step" in r]
parse = [r for r in rows if "parse_pretrain" in r]
last = steps[-1] if steps else {}
lines = ["# The embedded model's from-scratch training on " + device, "",
         f"`benchmarks/gpu_train_shapes.sh` ran {seconds} s (exit {rc}: 137 = stopped at its time limit).", "",
         f"- parse stage: {'done' if parse else 'not finished'}",
         f"- UNet steps reached: {last.get('step', 0)} of 8,000",
         f"- seconds per UNet step (last log line): {last.get('sec_per_step', 'n/a')}",
         f"- training loss (mean of the last 20 steps): {last.get('loss', 'n/a')}"]
(out / "gpu_train_shapes.md").write_text("\n".join(lines) + "\n")
print("\n".join(lines))
PY
