#!/usr/bin/env bash
# The small-scale reproduction of the paper's Table 1 on this box (issue 9), resumable: run the
# same command again after a stop and every finished part is kept.
#
#   EDGECL_HOME=/work/evidence-home nohup bash benchmarks/continual_repro.sh > repro.log 2>&1 &
#
# The compute plan, fixed before running. It fits one 3-hour working session of a 2-core box
# (about 2 hours), because a session's box may not keep its files for the next one: an earlier
# 10-hour plan (30 steps per task) lost its progress that way. On one core a step of
# 4 prompts x G 4 x 96 tokens takes 40-75 s and an eval of 40 items about 2.5 minutes, so:
# - one warm-up for the sequence, shared by both orders and by da-grpo, grpo-hier and gapg;
#   edge-only has its own (format only, never the help request);
# - the hierarchical baselines' assist reward per task: a grid of 3 values x 4 steps of
#   grpo-hier from that warm-up toward each task's tau (math 0.3, code-easy 0.5, the paper's
#   ratios); J_c over the last 2 steps;
# - `bench continual` on math then code-easy and the reverse order: da-grpo, grpo-hier, gapg and
#   edge-only; 5 steps per task at 4 prompts x G 4 x 96 tokens; every task evaluated on 24 eval
#   items after the warm-up and at each task's end (the points Table 1 needs); seed 0;
# - the plots (`edgecl report --bench`).
# Core 1 runs the methods that need no assist reward (edge-only, da-grpo) while core 0 runs the
# grids; then grpo-hier and gapg run two at a time.
set -euo pipefail
cd "$(dirname "$0")/.."
EDGECL=${EDGECL:-.venv/bin/edgecl}
ID=${ID:-repro3}
SEQUENCE=math,code-easy
BENCH=(bench continual --id "$ID" --sequence "$SEQUENCE" --budget math:0.3,code-easy:0.5
       --steps-per-task 5 --eval-items 24 --every 10)
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1  # one core per process

chosen() {  # the value `assist-grid` chose: its last line reads "chosen: --assist TASK:VALUE ..."
  # (tee -a: a plain tee would truncate the log file that stderr is redirected to)
  taskset -c 0 "$EDGECL" bench assist-grid --task "$1" --budget "$2" --values "$3" --steps 4 \
    --warmup-tasks "$SEQUENCE" --id "$ID-grid-$1" | tee -a /dev/stderr |
    sed -n 's/^chosen: --assist \([^ ]*\).*/\1/p'
}
taskset -c 1 "$EDGECL" "${BENCH[@]}" --methods edge-only,da-grpo >&2 &
NO_ASSIST=$!
MATH=$(chosen math 0.3 0.1,0.2,0.4)
CODE=$(chosen code-easy 0.5 0.02,0.05,0.1)
"$EDGECL" "${BENCH[@]}" --methods grpo-hier,gapg --assist "$MATH,$CODE" --parallel 2
wait "$NO_ASSIST"
"$EDGECL" "${BENCH[@]}" --methods da-grpo,grpo-hier,gapg,edge-only --assist "$MATH,$CODE"
"$EDGECL" report --bench "$ID"
