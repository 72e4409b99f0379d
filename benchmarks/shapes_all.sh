#!/usr/bin/env bash
# Every shapes benchmark on the shipped model, in the order a new set of weights is judged:
# generation quality first (the bar: 80% of held-out two-object captions), then the word senses,
# the layout probe, the PID timing, the PID studies (homonyms, synonyms, uniqueness, bias,
# intervention), the homonym study split by noise level, the empty caption's shapes and colours, the objects drawn for bare words, and localization / compositional understanding. Each step writes its tables into
# benchmarks/results/ (see docs/embedded-model.md and docs/benchmarks.md); the resumable bench runs
# go to $WORK, so a stopped script continues where it was when started again.
# Usage: bash benchmarks/shapes_all.sh [THREADS]     (STEP=NAME starts at a step:
#        quality, words, layout, speed, pid, levels, empty, counts, localization)
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=${1:-2}
export HF_HUB_OFFLINE=1 OMP_NUM_THREADS=$THREADS WORK=${WORK:-/tmp/diffpid-bench-all}
steps=(quality words layout speed pid levels empty counts localization)
start=${STEP:-quality}
case " ${steps[*]} " in *" $start "*) ;; *) echo "STEP=$start: use one of ${steps[*]}" >&2; exit 2;; esac
go=0
for step in "${steps[@]}"; do
    [ "$step" = "$start" ] && go=1
    [ $go = 1 ] || continue
    echo "== $step ($(date +%H:%M:%S))"
    case $step in
        quality) python benchmarks/shapes_quality.py --threads "$THREADS" ;;
        words) python benchmarks/shapes_word_probe.py --threads "$THREADS" ;;
        layout) python benchmarks/shapes_layout_probe.py --threads "$THREADS" ;;
        speed) python benchmarks/shapes_pid_speed.py --threads "$THREADS" ;;
        pid) ORACLE=0 WORK="$WORK/pid" bash benchmarks/shapes_pid_studies.sh ;;
        levels) python benchmarks/shapes_homonym_levels.py --threads "$THREADS" ;;
        empty) python benchmarks/shapes_empty_colours.py --threads "$THREADS" ;;
        counts) python benchmarks/shapes_word_counts.py --threads "$THREADS" ;;
        localization) WORK="$WORK/loc" bash benchmarks/shapes_localization_compositional.sh ;;
    esac
done
echo "== done ($(date +%H:%M:%S))"
