"""The background daemon: one per data dir, serving edgecl.server on 127.0.0.1.

    edgecl daemon start --budget 0.3 --cloud openai:gpt-4o-mini   # returns once it answers
    edgecl daemon status | logs -f | stop

Its files live in DATA_DIR/daemon/: `token` (the bearer token, mode 0600, made once), `lock`
(held while it runs: a second daemon on the same data dir refuses to start), `state.json` (pid,
port, started), `daemon.log`. SIGTERM stops it cleanly: uvicorn finishes the requests in flight,
and every SQLite write is its own transaction, so chat and the daemon can share the database.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

from edgecl import paths
from edgecl.errors import EdgeclError

DEFAULT_PORT = 8745


def home() -> Path:
    directory = paths.data_dir() / "daemon"
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def token() -> str:
    """The bearer token, made on first use, readable by this user only."""
    path = home() / "token"
    if not path.is_file():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(32))
    return path.read_text().strip()


def state() -> dict | None:
    """pid, port and start time of the running daemon, or None."""
    path = home() / "state.json"
    if not path.is_file():
        return None
    info = json.loads(path.read_text())
    try:
        os.kill(info["pid"], 0)
    except (ProcessLookupError, PermissionError):
        return None
    return info


def claim():
    """This data dir's daemon lock (held until the process ends), or a one-line error."""
    lock = open(home() / "lock", "w")  # noqa: SIM115
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        running = state() or {}
        raise EdgeclError(
            f"a daemon already runs on this data dir (pid {running.get('pid', '?')}): "
            "edgecl daemon stop, or set EDGECL_HOME to another data dir"
        ) from None
    return lock


def serve(app, port: int) -> None:
    """Run `app` in this process until SIGTERM or Ctrl-C (after claim())."""
    import uvicorn

    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                            access_log=False, timeout_graceful_shutdown=30)  # fmt: skip
    server = uvicorn.Server(config)
    # uvicorn shuts down gracefully on SIGTERM, then raises it again: leave through `finally`.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    info = {"pid": os.getpid(), "port": port, "started": time.time()}
    (home() / "state.json").write_text(json.dumps(info))
    print(f"edgecl daemon: serving on http://127.0.0.1:{port}/v1 (pid {os.getpid()})", flush=True)
    try:
        server.run()
    finally:
        (home() / "state.json").unlink(missing_ok=True)
        print("edgecl daemon: stopped", flush=True)


def start(args: list[str], port: int, wait_s: float = 300.0) -> dict:
    """Start `edgecl daemon run ARGS` in the background and wait until it answers /health."""
    import httpx

    if (running := state()) is not None:
        raise EdgeclError(f"the daemon already runs (pid {running['pid']}, port {running['port']})")
    token()  # made here, so the caller can read it as soon as start returns
    log = open(home() / "daemon.log", "a")  # noqa: SIM115 (handed to the child)
    command = [sys.executable, "-m", "edgecl.cli.main", "daemon", "run", "--port", str(port)]
    child = subprocess.Popen([*command, *args], stdout=log, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    deadline = time.time() + wait_s
    while time.time() < deadline:
        if child.poll() is not None:
            tail = (home() / "daemon.log").read_text().strip().splitlines()[-1:]
            raise EdgeclError(f"the daemon did not start: {' '.join(tail) or 'see daemon logs'}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1.0).status_code == 200:
                return {"pid": child.pid, "port": port}
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    child.terminate()
    raise EdgeclError(f"the daemon did not answer within {wait_s:.0f} s (edgecl daemon logs)")


def stop(wait_s: float = 60.0) -> int | None:
    """SIGTERM the daemon and wait for it to exit; its pid, or None if none was running."""
    running = state()
    if running is None:
        return None
    from edgecl.learner import process_alive

    os.kill(running["pid"], signal.SIGTERM)
    deadline = time.time() + wait_s
    # Wait for the process, not its state file, which goes first: an adaptation cycle may still
    # be finishing, with the lock held.
    while time.time() < deadline and process_alive(running["pid"]):
        time.sleep(0.2)
    if process_alive(running["pid"]):
        raise EdgeclError(f"the daemon (pid {running['pid']}) did not stop in {wait_s:.0f} s")
    return running["pid"]


def status() -> dict:
    """What /health and /metrics of the running daemon say, plus its pid and port."""
    import httpx

    running = state()
    if running is None:
        return {"running": False}
    base = f"http://127.0.0.1:{running['port']}"
    headers = {"Authorization": f"Bearer {token()}"}
    out = {"running": True, **running, **httpx.get(f"{base}/health", timeout=5).json()}
    for line in httpx.get(f"{base}/metrics", headers=headers, timeout=5).text.splitlines():
        name, _, value = line.partition(" ")
        out[name.removeprefix("edgecl_")] = float(value)
    from edgecl.store import Store

    store = Store()
    try:
        done = store.adaptations()
    finally:
        store.close()
    out["last_adaptation"] = done[-1] if done else None
    return out


def service_file(args: list[str], platform: str = sys.platform) -> tuple[Path, str]:
    """(where, what): a systemd user unit on Linux, a launchd agent on macOS, that runs
    `edgecl daemon run ARGS` on this data dir and appends to its daemon.log."""
    import plistlib
    import shlex

    command = [sys.executable, "-m", "edgecl.cli.main", "daemon", "run", *args]
    log = str(home() / "daemon.log")
    data = str(paths.data_dir())
    if platform == "darwin":
        where = Path.home() / "Library" / "LaunchAgents" / "org.edgecl.daemon.plist"
        agent = {"Label": "org.edgecl.daemon", "ProgramArguments": command,
                 "EnvironmentVariables": {"EDGECL_HOME": data}, "RunAtLoad": True,
                 "KeepAlive": {"SuccessfulExit": False}, "StandardOutPath": log,
                 "StandardErrorPath": log}  # fmt: skip
        return where, plistlib.dumps(agent).decode()
    config = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    unit = f"""[Unit]
Description=edgecl daemon: the local model behind an OpenAI-compatible API on 127.0.0.1

[Service]
Type=simple
ExecStart={shlex.join(command)}
Environment={shlex.quote(f"EDGECL_HOME={data}")}
StandardOutput=append:{log}
StandardError=append:{log}
Restart=on-failure
KillSignal=SIGTERM
TimeoutStopSec=60

[Install]
WantedBy=default.target
"""
    return config / "systemd" / "user" / "edgecl.service", unit
