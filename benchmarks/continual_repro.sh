#!/usr/bin/env bash
# The small-scale reproduction of the paper's Table 1 on this box (issue 9), resumable: run the
# same command again after a stop and every finished part is kept.
#
#   EDGECL_HOME=/work/evidence-home nohup bash benchmarks/continual_repro.sh > repro.log 2>&1 &
#
# The compute plan, fixed before running (about 10 hours on 2 cores):
# 1. the hierarchical baselines' assist reward per task: a grid of 3 values x 10 steps of
#    grpo-hier toward each task's tau (math 0.3, code-easy 0.5, the paper's ratios);
# 2. `bench continual` on math then code-easy and the reverse order: da-grpo, grpo-hier, gapg
#    and edge-only; 30 steps per task at 4 prompts x G 4 x 96 tokens; every task evaluated on
#    40 eval items after the warm-up, every 10 steps and at each task's end; seed 0;
# 3. the plots (`edgecl report --bench`).
set -euo pipefail
cd "$(dirname "$0")/.."
EDGECL=${EDGECL:-.venv/bin/edgecl}
ID=${ID:-repro1}

chosen() {  # the value `assist-grid` chose: its last line reads "chosen: --assist TASK:VALUE ..."
  # (tee -a: a plain tee would truncate the log file that stderr is redirected to)
  "$EDGECL" bench assist-grid --task "$1" --budget "$2" --values "$3" --steps 10 \
    --id "$ID-grid-$1" | tee -a /dev/stderr | sed -n 's/^chosen: --assist \([^ ]*\).*/\1/p'
}
MATH=$(chosen math 0.3 0.1,0.2,0.4)
CODE=$(chosen code-easy 0.5 0.02,0.05,0.1)
"$EDGECL" bench continual --id "$ID" --sequence math,code-easy \
  --methods da-grpo,grpo-hier,gapg,edge-only --budget math:0.3,code-easy:0.5 \
  --assist "$MATH,$CODE" --steps-per-task 30 --eval-items 40 --every 10
"$EDGECL" report --bench "$ID"
