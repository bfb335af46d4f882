"""The one data directory that holds everything edgecl writes.

Default: the platform's user data dir (e.g. ~/.local/share/edgecl on Linux,
~/Library/Application Support/edgecl on macOS). `EDGECL_HOME=/some/dir` overrides it;
tests always set it to a temporary directory.
"""

from __future__ import annotations

import os
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
