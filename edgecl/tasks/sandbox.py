"""Run untrusted Python (model-written code plus its tests) in a confined subprocess.

Generated code is untrusted: a policy under RL will try anything that earns reward, and a
broken program can loop forever or eat the machine. Each run gets:

- a fresh `sys.executable -I -B` process in a new session (process group), a new empty temp
  dir as cwd/HOME/TMPDIR, a minimal environment, and a wall-clock timeout after which the
  whole process group is killed;
- resource limits set in the child before the untrusted code runs: RLIMIT_AS (memory),
  RLIMIT_CPU, RLIMIT_FSIZE (largest file, also caps the captured output), RLIMIT_NPROC=0
  (no new processes or threads; the kernel does not enforce it for root), RLIMIT_CORE=0; as
  root, a pids cgroup of its own caps processes and threads at PIDS_MAX instead (a root
  without a writable cgroup hierarchy keeps only the audit hook and Landlock against forks);
- no network, in up to three layers: a new network namespace via `unshare -n` (root) or
  `unshare -rn` (user namespace) where that works (Linux), Landlock denying TCP bind/connect
  (Linux >= 6.7), and in every case a Python audit hook that refuses socket creation,
  connect, bind and name lookups;
- file writes confined to the temp dir: Landlock (Linux >= 5.13) makes every path outside it
  read-only for the child at the kernel level; everywhere, the audit hook refuses opening a
  path for writing, creating, removing, renaming or chmod-ing outside it (and sqlite files);
- process creation (subprocess, os.system, exec*, fork, spawn), signals (os.kill), raising
  rlimits and ctypes are refused by the audit hook; Landlock also refuses execve and (ABI >= 6)
  signals to processes outside the sandbox.

- file reads confined too: Landlock lets the child read only its temp dir, the Python
  installation (stdlib, site-packages) and the system's shared-library dirs (`_readable()`), so
  it cannot read edgecl's database, the data dir, your home dir or ~/.ssh.

What is NOT contained: where Landlock is missing (macOS, Linux < 5.13, some containers), the
code can read every file the user can (the read layer has no fallback); the audit hook is a
Python-level guard, not a security boundary against native code (ctypes
is refused, but a C extension already installed could bypass it), so on systems without
Landlock/namespaces (macOS, old kernels, some containers) confinement of writes and network
is best effort. For hostile code use a VM or container. "Passed" needs the program to run to
its end and print a per-run secret nonce, so `sys.exit(0)` before the tests does not pass.
"""

from __future__ import annotations

import functools
import math
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

OUTPUT_TAIL_CHARS = 2000

# Exit codes the prelude uses to tell the parent what happened.
_RC_COMPILE_ERROR = 3
_RC_MEMORY = 4
_RC_SETUP_ERROR = 5

# Runs in the child before the untrusted code. Reads "<nonce>\n<code>" from stdin, limits the
# process, installs the guards, execs the code, and prints the nonce only if the code finished.
_PRELUDE = r"""
import os, sys

_BLOCKED = frozenset({
    "socket.__new__", "socket.connect", "socket.bind", "socket.getaddrinfo",
    "socket.gethostbyname", "socket.gethostbyaddr", "socket.sendto", "socket.sendmsg",
    "subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork",
    "os.forkpty", "os.kill", "os.killpg", "os.startfile", "pty.spawn", "os.chroot",
    "resource.setrlimit", "resource.prlimit", "webbrowser.open", "sys.remote_exec",
})
_PATH_EVENTS = {
    "os.remove": (0,), "os.rmdir": (0,), "os.mkdir": (0,), "os.chmod": (0,),
    "os.chown": (0,), "os.rename": (0, 1), "os.symlink": (1,), "os.link": (1,),
    "os.truncate": (0,), "os.utime": (0,), "shutil.rmtree": (0,), "os.chflags": (0,),
    "os.lchflags": (0,), "os.mkfifo": (0,), "os.mknod": (0,), "os.setxattr": (0,),
    "os.removexattr": (0,), "sqlite3.connect": (0,),
}
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC


def _limit(mem, cpu, fsize):
    try:
        import resource
    except ImportError:
        return
    for name, value in (("RLIMIT_AS", mem), ("RLIMIT_CPU", cpu), ("RLIMIT_FSIZE", fsize),
                        ("RLIMIT_NPROC", 0), ("RLIMIT_CORE", 0)):
        if hasattr(resource, name):
            hard = value + 1 if name == "RLIMIT_CPU" else value
            try:
                resource.setrlimit(getattr(resource, name), (value, hard))
            except (ValueError, OSError):
                pass


def _landlock(root):
    import ctypes, struct
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long

    def sc(*args):
        return libc.syscall(*[ctypes.c_long(a) if isinstance(a, int) else a for a in args])

    abi = sc(444, None, 0, 1)  # landlock_create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION)
    if abi < 1:
        return
    fs = 0
    for bit in range(13):  # execute, write_file, read_file, read_dir, remove_*, make_*
        fs |= 1 << bit
    read = (1 << 2) | (1 << 3)
    if abi >= 2:
        fs |= 1 << 13  # refer
    if abi >= 3:
        fs |= 1 << 14  # truncate
    net = 0b11 if abi >= 4 else 0  # bind_tcp | connect_tcp, no rule: all denied
    scope = 0b11 if abi >= 6 else 0  # abstract unix sockets | signals outside the sandbox
    size = 24 if abi >= 6 else (16 if abi >= 4 else 8)
    attr = ctypes.create_string_buffer(struct.pack("QQQ", fs, net, scope)[:size], size)
    fd = sc(444, attr, size, 0)
    if fd < 0:
        return

    def allow(path, access):
        pfd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        rule = ctypes.create_string_buffer(struct.pack("=Qi", access, pfd), 12)
        sc(445, fd, 1, rule, 0)  # landlock_add_rule(LANDLOCK_RULE_PATH_BENEATH)
        os.close(pfd)

    allow(root, fs & ~1)
    for path in _readable():
        allow(path, read if os.path.isdir(path) else 1 << 2)
    if os.path.exists("/dev/null"):
        allow("/dev/null", (1 << 1) | (1 << 2) | ((1 << 14) if abi >= 3 else 0))
    libc.prctl(38, 1, 0, 0, 0)  # PR_SET_NO_NEW_PRIVS
    sc(446, fd, 0)  # landlock_restrict_self
    os.close(fd)


def _readable():
    # What the code may read besides its own dir: the Python installation (stdlib and
    # site-packages) and the system's shared libraries; not the home dir, not the data dir.
    import sysconfig
    paths = {sys.prefix, sys.base_prefix, sys.exec_prefix, *sysconfig.get_paths().values(),
             os.path.dirname(os.path.realpath(sys.executable)), "/lib", "/lib64", "/usr/lib",
             "/usr/lib64", "/usr/local/lib", "/etc/ld.so.cache", "/dev/urandom"}
    return sorted(p for p in paths if p and os.path.exists(p))


def _make_hook(root):
    realpath, fsdecode, fspath, sep, devnull = (
        os.path.realpath, os.fsdecode, os.fspath, os.sep, os.devnull)

    def inside(path):
        if isinstance(path, int):
            return True
        try:
            real = realpath(fsdecode(fspath(path)))
        except TypeError:
            return False
        return real == root or real.startswith(root + sep) or real == devnull

    def hook(event, args):
        if event in _BLOCKED or event.startswith("ctypes."):
            raise PermissionError(f"sandbox: {event} is not allowed")
        if event == "open":
            path, mode, flags = args
            writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                isinstance(flags, int) and flags & _WRITE_FLAGS)
            if writing and not inside(path):
                raise PermissionError(f"sandbox: writing {path!r} outside the sandbox dir")
        elif event in _PATH_EVENTS:
            for i in _PATH_EVENTS[event]:
                if i < len(args) and not inside(args[i]):
                    raise PermissionError(f"sandbox: {event} {args[i]!r} outside the sandbox dir")

    return hook


def _main():
    write, exit_ = os.write, os._exit
    mem, cpu, fsize = (int(a) for a in sys.argv[1:4])
    nonce, _, src = sys.stdin.buffer.read().decode("utf-8", "replace").partition("\n")
    root = os.path.realpath(os.getcwd())
    try:
        if sys.argv[4]:  # join the run's pids cgroup, before anything untrusted runs
            with open(sys.argv[4], "w") as procs: procs.write(str(os.getpid()))
        _limit(mem, cpu, fsize)
        if sys.platform.startswith("linux"):
            try:
                _landlock(root)
            except Exception:
                pass
        sys.addaudithook(_make_hook(root))
    except BaseException as exc:
        write(2, f"sandbox setup failed: {exc!r}\n".encode())
        exit_(5)
    try:
        code = compile(src, "<candidate>", "exec")
    except (SyntaxError, ValueError) as exc:
        import traceback
        traceback.print_exception(exc, limit=0)
        sys.stderr.flush()
        exit_(3)
    del src
    import types
    module = types.ModuleType("__main__")
    sys.modules["__main__"] = module
    sys.argv = [""]
    try:
        exec(code, module.__dict__)
    except MemoryError:
        write(2, b"MemoryError\n")
        exit_(4)
    sys.stdout.flush()
    sys.stderr.flush()
    write(1, ("\n" + nonce + "\n").encode())
    exit_(0)


_main()
"""


@dataclass(frozen=True)
class SandboxResult:
    """Outcome of one sandboxed run; `output` is the tail of stdout+stderr."""

    passed: bool
    status: str  # "passed" | "failed" | "timeout" | "memory" | "error"
    output: str = ""
    seconds: float = 0.0


PIDS_MAX = 8  # processes and threads of one run, when RLIMIT_NPROC does not bind (root)


def _pids_cgroup() -> Path | None:
    """As root, a new cgroup that caps the run's processes and threads at PIDS_MAX (cgroup v1's
    pids hierarchy, or v2 where pids is enabled); None where none can be made."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return None
    for root in (Path("/sys/fs/cgroup/pids"), Path("/sys/fs/cgroup")):
        _remove_stale(root)
        group = root / f"edgecl-sandbox-{os.getpid()}-{secrets.token_hex(4)}"
        try:
            group.mkdir()
        except OSError:
            continue
        try:
            (group / "pids.max").write_text(str(PIDS_MAX))
            return group
        except OSError:
            _remove_cgroup(group)
    return None


def _remove_stale(root: Path) -> None:
    """Remove the groups of edgecl processes that have ended: a group whose last process was
    slow to be reaped (a loaded or stopped box) outlives `_remove_cgroup`'s wait."""
    for group in root.glob("edgecl-sandbox-*-*"):
        try:
            os.kill(int(group.name.split("-")[2]), 0)
        except ProcessLookupError:
            _remove_cgroup(group, tries=1)
        except (OSError, ValueError):
            continue  # alive but not ours to signal, or not a name we made


def _remove_cgroup(group: Path, tries: int = 50) -> None:
    for _ in range(tries):  # its processes may take a moment to be reaped
        try:
            for pid in (group / "cgroup.procs").read_text().split():
                os.kill(int(pid), signal.SIGKILL)
            group.rmdir()
            return
        except (OSError, ValueError):
            time.sleep(0.02)


@functools.lru_cache(maxsize=1)
def _unshare_prefix() -> tuple[str, ...]:
    """`unshare -n` (or `-rn` unprivileged) if this machine allows new network namespaces."""
    if not sys.platform.startswith("linux"):
        return ()
    exe = shutil.which("unshare")
    if exe is None:
        return ()
    prefix = (exe, "-n") if os.geteuid() == 0 else (exe, "-rn")
    try:
        probe = subprocess.run(
            [*prefix, sys.executable, "-I", "-c", "pass"],
            capture_output=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return ()
    return prefix if probe.returncode == 0 else ()


def run_python(
    code: str,
    timeout_s: float = 5,
    memory_mb: int = 512,
    max_output_mb: int = 16,
) -> SandboxResult:
    """Run `code` as a program in the sandbox; passed = it ran to its end within the limits."""
    nonce = secrets.token_hex(16)
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="edgecl-sandbox-", ignore_cleanup_errors=True) as tmp:
        tmp_path = Path(tmp)
        work = tmp_path / "work"
        work.mkdir()
        (tmp_path / "stdin").write_text(nonce + "\n" + code, encoding="utf-8")
        env = {
            "PATH": os.defpath,
            "HOME": str(work),
            "TMPDIR": str(work),
            "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8",
            "OMP_NUM_THREADS": "1",
            "OPENBLAS_NUM_THREADS": "1",
        }
        group = _pids_cgroup()  # the child joins it, as a preexec_fn's fork() hangs MLX's BLAS
        cmd = [
            *_unshare_prefix(),
            sys.executable,
            "-I",
            "-B",
            "-c",
            _PRELUDE,
            str(memory_mb * 1024 * 1024),
            str(math.ceil(timeout_s) + 1),
            str(max_output_mb * 1024 * 1024),
            "" if group is None else str(group / "cgroup.procs"),
        ]
        timed_out = False
        with open(tmp_path / "stdin", "rb") as stdin, open(tmp_path / "out", "wb") as out:
            try:
                proc = subprocess.Popen(
                    cmd,
                    stdin=stdin,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    cwd=work,
                    env=env,
                    start_new_session=True,
                )
            except (OSError, subprocess.SubprocessError) as exc:
                return SandboxResult(False, "error", f"could not start python: {exc}")
            try:
                rc = proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                timed_out = True
                _kill_group(proc)
                rc = proc.wait()
            finally:
                if group is not None:
                    _remove_cgroup(group)
        output = _tail(tmp_path / "out")
    seconds = time.monotonic() - start
    marker = "\n" + nonce + "\n"
    finished = output.endswith(marker)
    if finished:
        output = output[: -len(marker)]
    status = _status(rc, timed_out, finished)
    if status == "failed" and rc == 0:
        output += "\n[sandbox] the program exited before it finished (sys.exit / os._exit)"
    return SandboxResult(status == "passed", status, output[-OUTPUT_TAIL_CHARS:], seconds)


def _status(rc: int, timed_out: bool, finished: bool) -> str:
    if timed_out:
        return "timeout"
    if rc == 0:
        return "passed" if finished else "failed"
    if rc == _RC_MEMORY:
        return "memory"
    if rc in (_RC_COMPILE_ERROR, _RC_SETUP_ERROR):
        return "error"
    if rc < 0:
        if -rc in (signal.SIGXCPU, signal.SIGKILL):
            return "timeout"
        return "error"
    return "failed"


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _tail(path: Path, chars: int = OUTPUT_TAIL_CHARS + 200) -> str:
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        f.seek(max(0, size - chars * 4))
        return f.read().decode("utf-8", "replace")
