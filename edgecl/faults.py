"""Named points where tests kill edgecl on purpose: `EDGECL_KILL_AT=NAME` makes the process
SIGKILL itself when it reaches `point(NAME)` (`NAME@N`: the N-th time it does), so a test can
stop a writer exactly between two writes, which random timing rarely hits. Unset (always,
outside tests), a point does nothing."""

from __future__ import annotations

import os
import signal
from collections import Counter

_reached: Counter = Counter()


def point(name: str) -> None:
    target = os.environ.get("EDGECL_KILL_AT")
    if not target:
        return
    wanted, _, nth = target.partition("@")
    if wanted == name:
        _reached[name] += 1
        if _reached[name] == int(nth or 1):
            os.kill(os.getpid(), signal.SIGKILL)


def injected(name: str) -> bool:
    """True when a test injects the fault `name` (`EDGECL_INJECT=NAME[,NAME...]`), one that the
    real parts cannot produce on demand, such as a candidate adapter that got worse."""
    return name in os.environ.get("EDGECL_INJECT", "").split(",")
