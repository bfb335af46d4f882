"""Ctrl-C during training: stop at once, except inside a checkpoint write, which finishes first."""

from __future__ import annotations

import signal
from contextlib import contextmanager


@contextmanager
def nothing():
    yield


class Guard:
    """Ctrl-C outside a checkpoint write stops at once; inside one it waits until it is done."""

    def __init__(self):
        self.in_critical = False
        self.pending = False

    def handler(self, signum, frame):
        if self.in_critical:
            self.pending = True
        else:
            raise KeyboardInterrupt

    @contextmanager
    def critical(self):
        self.in_critical = True
        try:
            yield
        finally:
            self.in_critical = False
        if self.pending:
            raise KeyboardInterrupt


@contextmanager
def interrupts():
    guard = Guard()
    try:
        previous = signal.signal(signal.SIGINT, guard.handler)
    except ValueError:  # not the main thread: no handler, no guarantee needed
        yield guard
        return
    try:
        yield guard
    finally:
        signal.signal(signal.SIGINT, previous)
