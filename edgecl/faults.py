"""Named points where tests kill edgecl on purpose: `EDGECL_KILL_AT=NAME` makes the process
SIGKILL itself when it reaches `point(NAME)`, so a test can stop a writer exactly between two
writes, which random timing rarely hits. Unset (always, outside tests), a point does nothing."""

from __future__ import annotations

import os
import signal


def point(name: str) -> None:
    if os.environ.get("EDGECL_KILL_AT") == name:
        os.kill(os.getpid(), signal.SIGKILL)
