#!/usr/bin/env bash
# benchmarks/budget.py as a grid of runs at once, for a machine with many cores or a GPU:
#
#   SEED_HOME=~/.local/share/edgecl bash benchmarks/budget_grid.sh "0.1 0 0.05" "0.2 2 0.05"
#
# Each argument is "tau lambda_init kl". Each run gets its own data dir under $GRID (default
# budget-grid/), so no two runs share a SQLite file; all share the converted model, the stored
# warm-up and the base answers of $SEED_HOME, made there first (or reused) by a one-step run of
# the same settings. After $TRAIN_SECONDS (default: no limit), or at the epoch second
# $TRAIN_UNTIL, the runs are interrupted as Ctrl-C would (each keeps its last full step, and
# `budget.py train` resumes it); then each run's report is written to its dir as report.json.
set -euo pipefail
SEED_HOME=$(mkdir -p "${SEED_HOME:?set SEED_HOME to a data dir}" && cd "$SEED_HOME" && pwd)
GRID=${GRID:-budget-grid}
STEPS=${STEPS:-150}
TRAIN_SECONDS=${TRAIN_SECONDS:-0}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
mkdir -p "$GRID"

EDGECL_HOME=$SEED_HOME python3 "$HERE/budget.py" train --tau 0.1 --steps 1  # the warm-up, once
if [ -n "${TRAIN_UNTIL:-}" ]; then
    TRAIN_SECONDS=$((TRAIN_UNTIL - $(date +%s)))
    [ "$TRAIN_SECONDS" -ge 1 ] || TRAIN_SECONDS=1
fi
mkdir -p "$SEED_HOME/budget-report"  # evals cached per adapter label, shared by every run
# The warm-up's own evals ("before" in every report) meanwhile, once.
EDGECL_HOME=$SEED_HOME python3 "$HERE/budget.py" report --tau 0.1 >"$GRID/before.json" 2>&1 &
pids=($!)
for spec in "$@"; do
    read -r tau lam kl <<<"$spec"
    home="$GRID/tau$tau-lam$lam-kl$kl"
    mkdir -p "$home"
    for shared in models warmups general budget-report; do
        ln -sfn "$SEED_HOME/$shared" "$home/$shared"
    done
    args=(--tau "$tau" --lambda-init "$lam" --kl "$kl")
    (
        export EDGECL_HOME=$home
        if [ "$TRAIN_SECONDS" -gt 0 ]; then
            timeout -s INT "$TRAIN_SECONDS" \
                python3 "$HERE/budget.py" train --steps "$STEPS" "${args[@]}" || true
        else
            python3 "$HERE/budget.py" train --steps "$STEPS" "${args[@]}"
        fi
        python3 "$HERE/budget.py" report "${args[@]}" >"$home/report.json"
    ) >"$home/log.txt" 2>&1 &
    pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
exit $status
