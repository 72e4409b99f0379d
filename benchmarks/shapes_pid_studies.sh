#!/usr/bin/env bash
# Prompt intervention and the DiffusionPID studies on the shapes world with the embedded checkpoint.
# Writes the tables (and uniqueness-shapes.png) into benchmarks/results/; the resumable runs go to $WORK
# (default /tmp/diffpid-bench-pid), so a stopped run continues when the script is started again.
# Usage: bash benchmarks/shapes_pid_studies.sh [SAMPLES] [INTERVENTION_ITEMS] [INTERVENTION_STEPS]   (ORACLE=0: skip the oracle)
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${WORK:-/tmp/diffpid-bench-pid}
SAMPLES=${1:-32}
ITEMS=${2:-24}
STEPS=${3:-100}
export HF_HUB_OFFLINE=1 OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
RESULTS=benchmarks/results

diffpid bench intervention --n "$ITEMS" --steps "$STEPS" --samples "$SAMPLES" --seed 0 --out "$WORK/intervention" --no-progress
cp "$WORK/intervention/intervention-shapes.md" "$WORK/intervention/intervention-shapes.json" "$RESULTS/"

diffpid bench bias --images 2 --samples "$SAMPLES" --seed 0 --out "$WORK/bias" --no-progress
diffpid bench synonyms --images 8 --samples "$SAMPLES" --seed 0 --out "$WORK/synonyms" --no-progress
diffpid bench homonyms --images 18 --samples "$SAMPLES" --seed 0 --out "$WORK/homonyms" --no-progress
diffpid bench uniqueness --n 16 --samples "$SAMPLES" --seed 0 --out "$WORK/uniqueness" --no-progress
for s in bias synonyms homonyms uniqueness; do
    cp "$WORK/$s/$s-shapes.md" "$WORK/$s/$s-shapes.json" "$RESULTS/"
done
cp "$WORK/uniqueness/uniqueness-shapes.png" "$RESULTS/"

# the same studies on the exact single-object denoiser (what a perfect model gives; about a minute)
if [ "${ORACLE:-1}" = 1 ]; then
    diffpid bench intervention --model shapes-oracle --n "$ITEMS" --steps "$STEPS" --samples 64 --seed 0 --out "$WORK/oracle" --no-progress
    diffpid bench bias --model shapes-oracle --images 2 --samples 64 --seed 0 --out "$WORK/oracle" --no-progress
    diffpid bench synonyms --model shapes-oracle --images 8 --samples 64 --seed 0 --out "$WORK/oracle" --no-progress
    diffpid bench homonyms --model shapes-oracle --images 6 --samples 64 --seed 0 --out "$WORK/oracle" --no-progress
    for s in intervention bias synonyms homonyms; do
        cp "$WORK/oracle/$s-shapes-oracle.md" "$WORK/oracle/$s-shapes-oracle.json" "$RESULTS/"
    done
fi
