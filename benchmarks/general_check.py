"""General ability of adapters, quickly: retention on the 20 held-out general prompts and how
many of all 60 general prompts ask for help under chat's template (greedy, 64 tokens).

    EDGECL_HOME=/work/evidence-home python benchmarks/general_check.py ADAPTER_DIR [...]

One JSON line per adapter: `drop` (edgecl.retention: the base answers' per-token
log-likelihood drop, negative when they became more likely), degenerate answers without and
with the protocol system prompt, and the help count with the prompts that asked.
"""

from __future__ import annotations

import json
import sys
import time

from edgecl.cli.eval import _load_model
from edgecl.core.protocol import build_messages, requests_help
from edgecl.retention import base_answers, general_prompts, mean_loglik, retention


def main() -> None:
    model = _load_model(None, None)
    pairs = base_answers(model, "held_out")
    base_ll = mean_loglik(model, pairs)
    prompts = general_prompts("all")
    ids = [model.chat_ids(build_messages("math", p)) for p in prompts]
    for adapter in sys.argv[1:]:
        start = time.time()
        model.load_adapter(adapter)
        kept = retention(model, pairs, base_ll)
        outs = model.sample(ids, 1, 64, temperature=0.0)
        asked = [p for p, o in zip(prompts, outs) if requests_help(o.text)]
        print(json.dumps({"adapter": adapter, "drop": kept["drop"],
                          "degenerate_plain": kept["degenerate_plain"],
                          "degenerate_protocol": kept["degenerate_protocol"],
                          "help_general": len(asked), "asked": asked,
                          "seconds": time.time() - start}), flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
