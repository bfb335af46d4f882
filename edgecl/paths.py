"""The one data directory that holds everything edgecl writes.

Default: the platform's user data dir (e.g. ~/.local/share/edgecl on Linux,
~/Library/Application Support/edgecl on macOS). `EDGECL_HOME=/some/dir` overrides it;
tests always set it to a temporary directory.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from platformdirs import user_data_dir


def data_dir_path() -> Path:
    """Where edgecl's data lives ($EDGECL_HOME, else the platform's user data dir), not created."""
    return Path(os.environ.get("EDGECL_HOME") or user_data_dir("edgecl", appauthor=False))


def data_dir() -> Path:
    """Root of edgecl's data, created on first use, readable by this user only (it holds chats
    and adapters)."""
    root = data_dir_path()
    if not root.is_dir():
        root.mkdir(parents=True, exist_ok=True)
        root.chmod(0o700)
    return root


def models_dir() -> Path:
    path = data_dir() / "models"
    path.mkdir(exist_ok=True)
    return path


def adapters_dir() -> Path:
    path = data_dir() / "adapters"
    path.mkdir(exist_ok=True)
    return path


def logs_dir() -> Path:
    path = data_dir() / "logs"
    path.mkdir(exist_ok=True)
    return path


def db_path() -> Path:
    return data_dir() / "edgecl.db"


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on the file `path` (made if missing), waiting for another process
    that holds it: one process makes a shared thing (a model import, a warm-up), the others wait
    and then use it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def write_json(path: Path, obj, indent: int | None = None) -> None:
    """Write `obj` as JSON so that readers see the old file or the new one, never a part: via a
    temporary file of this process (several processes may write the same file) and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(obj, indent=indent))
    tmp.replace(path)
