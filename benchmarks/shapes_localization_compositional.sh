#!/usr/bin/env bash
# Localization and compositional understanding on the shapes world with the embedded checkpoint.
# Writes the tables into benchmarks/results/ (the resumable runs go to $WORK, default /tmp/diffpid-bench).
# Usage: bash benchmarks/shapes_localization_compositional.sh [ITEMS_LOC] [SAMPLES_LOC] [ITEMS_COMP] [SAMPLES_COMP]
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${WORK:-/tmp/diffpid-bench}
ITEMS_LOC=${1:-40}
SAMPLES_LOC=${2:-32}
ITEMS_COMP=${3:-48}
SAMPLES_COMP=${4:-64}
export HF_HUB_OFFLINE=1 OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

diffpid bench localization --dataset shapes --items "$ITEMS_LOC" --samples "$SAMPLES_LOC" --steps 20 --seed 0 \
    --out "$WORK/localization" --no-progress
cp "$WORK/localization/localization-shapes.md" "$WORK/localization/localization-shapes.json" benchmarks/results/

diffpid bench localization --model shapes-oracle --items 60 --samples 64 --seed 0 --out "$WORK/localization" --no-progress
cp "$WORK/localization/localization-shapes-oracle.md" "$WORK/localization/localization-shapes-oracle.json" benchmarks/results/

diffpid bench compositional --dataset shapes-single --model shapes-oracle --items 56 --samples "$SAMPLES_COMP" --seed 0 \
    --out "$WORK/compositional" --no-progress
cp "$WORK/compositional/compositional-shapes-single-oracle.md" "$WORK/compositional/compositional-shapes-single-oracle.json" \
    benchmarks/results/

for set in shapes-attribute shapes-relation shapes-single; do
    diffpid bench compositional --dataset "$set" --items "$ITEMS_COMP" --samples "$SAMPLES_COMP" --seed 0 \
        --out "$WORK/compositional" --no-progress
    cp "$WORK/compositional/compositional-$set.md" "$WORK/compositional/compositional-$set.json" benchmarks/results/
done
