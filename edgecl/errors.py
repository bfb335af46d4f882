"""The one exception type the command line turns into a one-line message."""


class EdgeclError(Exception):
    """A user-facing problem: the message names what is wrong and how to fix it.

    The CLI prints `error: <message>` and exits 1, never a traceback.
    """
