"""Run untrusted Python in a separate, locked-down process.

Each run gets a fresh interpreter (``python -I -S``: no site-packages, no ``PYTHON*`` variables)
started by ``_sandbox_boot.py`` (outer -> init -> user, see there), with:

- wall-clock timeout: the parent asks outer to SIGKILL init (which takes every descendant with it),
  then SIGKILLs the whole process group if outer does not answer;
- rlimits on the user process: ``RLIMIT_CPU`` (SIGXCPU), ``RLIMIT_AS`` (memory), ``RLIMIT_NPROC``
  (processes and threads), ``RLIMIT_FSIZE``, ``RLIMIT_NOFILE``, ``RLIMIT_CORE=0``;
- output read incrementally: past ``output_bytes`` on either stream the run is killed
  (``output_limit``); what is kept is cut to ``output_chars`` (``truncated=True``);
- a scrubbed environment (``PATH``, ``LANG``, ``HOME``/``TMPDIR`` = the work dir; nothing else);
- bounded concurrency (``set_max_concurrency``, default 2) so the host stays responsive.

As root (here and in CI) the user process also runs as its own unprivileged uid, leased per run
across all processes on the host (so ``RLIMIT_NPROC`` applies - it never applies to root - and
concurrent runs neither share a process budget nor can signal each other), with
``no_new_privs``; and, where the kernel allows, in new namespaces:

- **network**: no interfaces but a down loopback; nothing can connect anywhere;
- **mount**: private tmpfs over ``/tmp``, ``/var/tmp``, ``/dev/shm``, ``/run/lock`` and the work
  dir (size-capped, gone with the run), the first untraversable ancestor of the interpreter
  (``/root`` for pyenv) hidden behind a tmpfs with only the interpreter bound back read-only;
- **pid**: a fresh ``/proc`` (``hidepid=2``); the host's processes are invisible, and every
  process the code starts dies with init.

``sandbox_capabilities()`` says what works on this host (probed once). Fallbacks:

- no network namespace: an audit hook in the runner refuses non-Unix sockets and name lookups.
  It stops Python-level networking only: ``ctypes`` calls to ``socket(2)`` and child programs
  (``curl``, ``bash /dev/tcp``) are not stopped.
- no mount namespace: the work dir is a real directory owned by the sandbox uid; the code can
  still write to world-writable places (``/tmp``) within ``RLIMIT_FSIZE`` per file.
- not root: no uid change, so the code can read what the caller can read, and ``RLIMIT_NPROC``
  counts all of the caller's processes (set to the current count + ``processes``); a user
  namespace, when allowed, still provides the namespaces; without a pid namespace a process
  that calls ``setsid()`` can outlive the run (as root it is killed by uid).

Not stopped in any mode: reading world-readable files (``/etc``, ``/usr``), talking to Unix
sockets on the filesystem whose permissions admit everyone, and using the CPU of all cores
within ``cpu_s`` per process (``processes`` x ``cpu_s`` in total, cut by ``wall_s``).
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pedagogy.errors import ConfigError

__all__ = [
    "SandboxLimits",
    "SandboxResult",
    "run_python",
    "run_python_sync",
    "sandbox_capabilities",
    "set_max_concurrency",
]

BOOT = Path(__file__).with_name("_sandbox_boot.py")
# Sandbox uids: far above system and regular users; each run leases one (see _lease_uid).
SANDBOX_UID_BASE = 1_900_000_000
# Exit codes the runner uses for resource errors it caught (see _sandbox_boot.RUNNER).
_EXIT_REASONS = {251: "memory_limit", 252: "process_limit", 253: "file_size_limit"}
_TMP_DIRS = ["/tmp", "/var/tmp", "/dev/shm", "/run/lock"]
_CLONE = {"network": 0x40000000, "mount": 0x00020000 | 0x08000000, "pid": 0x20000000}


@dataclass
class SandboxLimits:
    """What one run may use; the defaults suit short exercises and unit tests."""

    wall_s: float = 5.0
    """Wall-clock seconds before the whole run is killed (``timeout``)."""
    cpu_s: float = 5.0
    """CPU seconds of the main process (``cpu_limit``)."""
    memory_mb: int = 256
    """Address space of each process (``memory_limit``)."""
    processes: int = 32
    """Processes plus threads of the sandbox uid (``process_limit``)."""
    file_size_mb: int = 8
    """Largest file the code may write (``file_size_limit``); tmpfs sizes follow it."""
    output_chars: int = 2000
    """Characters kept of stdout (head) and stderr (tail)."""
    network: bool = False
    """Allow network access (skips the network namespace and the audit hook)."""
    output_bytes: int = 1 << 20
    """Bytes read of either stream before the run is killed (``output_limit``)."""

    def __post_init__(self) -> None:
        for name in ("wall_s", "cpu_s", "memory_mb", "processes", "file_size_mb"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"SandboxLimits.{name} must be a positive number, got {value!r}")
        for name in ("output_chars", "output_bytes"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ConfigError(f"SandboxLimits.{name} must be an int >= 0, got {value!r}")


@dataclass
class SandboxResult:
    """What a run printed and why it ended; ``reason`` uses the Observation.error vocabulary."""

    ok: bool
    stdout: str
    stderr: str
    exit_code: int | None
    reason: str | None
    latency_s: float
    truncated: bool
    detail: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------- capabilities and slots

_caps: dict[str, bool] | None = None
_caps_lock = threading.Lock()


def sandbox_capabilities() -> dict[str, bool]:
    """Which isolation features work on this host (probed once per process)."""
    global _caps
    with _caps_lock:
        if _caps is None:
            _caps = _probe()
        return dict(_caps)


def _probe() -> dict[str, bool]:
    root = os.geteuid() == 0
    found = {"network_namespace": False, "mount_namespace": False, "pid_namespace": False}
    found["user_namespace"] = False
    with tempfile.TemporaryDirectory(prefix="pedagogy-probe-") as tmp:
        try:
            done = subprocess.run(
                [sys.executable, "-I", "-S", str(BOOT), "--probe", tmp],
                capture_output=True,
                timeout=20,
                env=_base_env(),
            )
            found.update(json.loads(done.stdout.decode().strip().splitlines()[-1]))
        except (OSError, ValueError, IndexError, subprocess.SubprocessError):
            pass
    return {
        "rlimits": True,
        "separate_user": root,
        "process_limit": True,
        **found,
        "network_audit_hook": not found["network_namespace"],
    }


class _Slots:
    """A process-wide pool of slot numbers; works from any event loop or thread."""

    def __init__(self, size: int):
        self.size, self.busy, self.lock = size, set[int](), threading.Lock()

    def try_take(self) -> int | None:
        with self.lock:
            for slot in range(self.size):
                if slot not in self.busy:
                    self.busy.add(slot)
                    return slot
        return None

    async def take(self) -> int:
        delay = 0.002
        while (slot := self.try_take()) is None:
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.05)
        return slot

    def give(self, slot: int) -> None:
        with self.lock:
            self.busy.discard(slot)


_slots = _Slots(2)
_UID_COUNT = 4096


def _lease_uid() -> tuple[int, int]:
    """An unused sandbox uid and the fd whose lock holds it: other processes on this host run
    sandboxes too, and two runs under one uid would share RLIMIT_NPROC and kill each other."""
    import fcntl

    folder = Path(tempfile.gettempdir()) / "pedagogy-sandbox-uids"
    folder.mkdir(mode=0o700, exist_ok=True)
    start = (os.getpid() * 7) % _UID_COUNT  # spread processes out; any free uid will do
    for i in range(_UID_COUNT):
        index = (start + i) % _UID_COUNT
        fd = os.open(folder / f"{index}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue
        return SANDBOX_UID_BASE + index, fd
    raise ConfigError(f"all {_UID_COUNT} sandbox uids are in use; lower the concurrency")


def set_max_concurrency(n: int) -> None:
    """How many sandboxed runs may execute at once in this process (default 2)."""
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ConfigError(f"max concurrency must be an int >= 1, got {n!r}")
    with _slots.lock:
        _slots.size = n


# ---------------------------------------------------------------- configuration of one run


def _base_env() -> dict[str, str]:
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}


def _interpreter() -> tuple[str, str]:
    """The real interpreter binary (not a venv link) and its installation prefix."""
    exe = os.path.realpath(getattr(sys, "_base_executable", None) or sys.executable)
    return exe, os.path.realpath(sys.base_prefix)


_reachable: dict[str, str] = {}


def _interpreter_for_uid(exe: str, uid: int) -> str:
    """Without a mount namespace the sandbox uid must reach an interpreter on its own: ours if
    its directories allow it, else a system one of the same version (probed once)."""
    if _hidden_ancestor(exe) is None:
        return exe
    if exe not in _reachable:
        _reachable[exe] = exe  # nothing better: the run will say it cannot start
        version = f"python{sys.version_info.major}.{sys.version_info.minor}"
        for name in (version, "python3"):
            candidate = shutil.which(name, path="/usr/local/bin:/usr/bin:/bin")
            if candidate and _hidden_ancestor(os.path.realpath(candidate)) is None:
                probe = [candidate, "-I", "-S", "-c", "import encodings, json, ctypes"]
                try:
                    done = subprocess.run(
                        probe, user=uid, group=uid, extra_groups=[], capture_output=True,
                        timeout=10, env=_base_env(), cwd="/",
                    )  # fmt: skip
                except (OSError, subprocess.SubprocessError):
                    continue
                if done.returncode == 0:
                    _reachable[exe] = candidate
                    break
    return _reachable[exe]


def _hidden_ancestor(path: str) -> str | None:
    """The first directory on ``path`` that other users cannot traverse (e.g. ``/root``)."""
    current = "/"
    for part in Path(path).parts[1:]:
        current = os.path.join(current, part)
        try:
            mode = os.stat(current).st_mode
        except OSError:
            return None
        if stat.S_ISDIR(mode) and not mode & stat.S_IXOTH:
            return current
    return None


def _nproc_budget(processes: int) -> int:
    """Without a uid of our own, RLIMIT_NPROC counts all our tasks: allow current + processes."""
    uid, count = os.getuid(), 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
        if int(fields.get("Uid", "-1").split()[0]) == uid:
            count += int(fields.get("Threads", "1").strip() or 1)
    return count + processes


def _config(limits: SandboxLimits, caps: dict[str, bool], tmp: Path, uid: int | None) -> dict:
    root = uid is not None
    workdir = tmp / "work"
    exe, prefix = _interpreter()
    flags = 0
    if caps["network_namespace"] and not limits.network:
        flags |= _CLONE["network"]
    if caps["mount_namespace"]:
        flags |= _CLONE["mount"]
    if caps["pid_namespace"]:
        flags |= _CLONE["pid"]
    mount = bool(flags & _CLONE["mount"])
    if uid is not None and not mount:
        exe = _interpreter_for_uid(exe, uid)
    hide = {a for a in (_hidden_ancestor(exe), _hidden_ancestor(prefix)) if a} if root else set()
    cpu = max(1, math.ceil(limits.cpu_s))
    memory = int(limits.memory_mb) << 20
    fsize = int(limits.file_size_mb) << 20
    nproc = int(limits.processes) if root else _nproc_budget(int(limits.processes))
    return {
        "code_path": str(tmp / "code.py"),
        "status_path": str(tmp / "status.jsonl"),
        "workdir": str(workdir),
        "uid": uid,
        "gid": uid,
        "interpreter": exe,
        "unshare": flags,
        "userns": bool(flags) and not root,
        "mount": mount,
        "proc": mount and bool(flags & _CLONE["pid"]),
        "tmp_dirs": _TMP_DIRS,
        "tmp_options": f"size={int(limits.file_size_mb) + 1}m,nr_inodes=1024,mode=1777",
        "work_options": f"size={2 * int(limits.file_size_mb) + 1}m,nr_inodes=4096,mode=700",
        "hide": sorted(hide) if mount else [],
        "keep": [prefix] if mount and hide else [],
        "audit_net": not limits.network and not flags & _CLONE["network"],
        "env": {**_base_env(), "HOME": str(workdir), "TMPDIR": str(workdir)},
        "rlimits": {
            "RLIMIT_CPU": [cpu, cpu + 1],
            "RLIMIT_AS": [memory, memory],
            "RLIMIT_NPROC": [nproc, nproc],
            "RLIMIT_FSIZE": [fsize, fsize],
            "RLIMIT_NOFILE": [64, 64],
            "RLIMIT_CORE": [0, 0],
        },
    }


# ---------------------------------------------------------------- running


async def run_python(
    code: str, limits: SandboxLimits | None = None, *, stdin: str = ""
) -> SandboxResult:
    """Run ``code`` as ``main.py`` in a fresh sandbox; never raises for what the code does."""
    if not isinstance(code, str):
        raise ConfigError(f"code must be a string, got {type(code).__name__}")
    limits = limits or SandboxLimits()
    caps = _caps if _caps is not None else await asyncio.to_thread(sandbox_capabilities)
    slot = await _slots.take()
    uid, lock = _lease_uid() if os.geteuid() == 0 else (None, None)
    tmp = Path(tempfile.mkdtemp(prefix="pedagogy-sandbox-"))
    try:
        return await _run(code, limits, caps, uid, tmp, stdin)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if lock is not None:
            os.close(lock)
        _slots.give(slot)


async def _run(code, limits, caps, uid, tmp: Path, stdin: str) -> SandboxResult:
    cfg = _config(limits, caps, tmp, uid)
    os.chmod(tmp, 0o711)  # the sandbox uid may pass through to work/, not list or read
    for name, text in (("code.py", code), ("config.json", json.dumps(cfg)), ("status.jsonl", "")):
        with open(os.open(tmp / name, os.O_WRONLY | os.O_CREAT, 0o600), "w", encoding="utf-8") as f:
            f.write(text)
    work = tmp / "work"
    work.mkdir(mode=0o700)
    if cfg["uid"] is not None:
        os.chown(work, cfg["uid"], cfg["gid"])
    start = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-I", "-S", str(BOOT), str(tmp / "config.json"),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=tmp,
        env=_base_env(),
        start_new_session=True,
    )  # fmt: skip
    over = asyncio.Event()
    out, err = bytearray(), bytearray()
    pumps = [
        asyncio.ensure_future(_pump(proc.stdout, out, limits.output_bytes, over)),
        asyncio.ensure_future(_pump(proc.stderr, err, limits.output_bytes, over)),
    ]
    feeder = asyncio.ensure_future(_feed(proc.stdin, stdin))
    killed_by = None
    waiter = asyncio.ensure_future(_exited(proc))
    overflow = asyncio.ensure_future(over.wait())
    try:
        await asyncio.wait(
            {waiter, overflow}, timeout=limits.wall_s, return_when=asyncio.FIRST_COMPLETED
        )
        if not waiter.done():
            killed_by = "output_limit" if over.is_set() else "timeout"
            await _stop(proc, waiter)
        _, pending = await asyncio.wait(pumps, timeout=1.0)
        if pending:  # something outside init still holds the pipes
            _killpg(proc.pid)
            await asyncio.wait(pumps, timeout=1.0)
    finally:
        if proc.returncode is None:
            _killpg(proc.pid)
            await _exited(proc)
        for task in (*pumps, feeder, waiter, overflow):
            task.cancel()
        # asyncio keeps the pipes of a finished process open until they are drained; a
        # straggler we could not kill would pin them (and their fds) forever.
        proc._transport.close()
    latency = time.monotonic() - start
    if over.is_set() and killed_by is None:
        killed_by = "output_limit"
    records = _read_status(tmp / "status.jsonl")
    return _result(
        limits, cfg, records, killed_by, bytes(out), bytes(err), latency, proc.returncode
    )


async def _pump(stream, sink: bytearray, cap: int, over: asyncio.Event) -> None:
    """Keep the first ``cap`` bytes; drain (and drop) the rest so the pipe reaches EOF."""
    while chunk := await stream.read(1 << 16):
        room = cap - len(sink)
        if len(chunk) > room:
            over.set()
        if room > 0:
            sink += chunk[:room]


async def _exited(proc) -> None:
    """Wait for the process itself (``proc.wait()`` also waits for its pipes to close)."""
    delay = 0.002
    while proc.returncode is None:
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.02)


async def _feed(pipe, text: str) -> None:
    try:
        if text:
            pipe.write(text.encode())
            await pipe.drain()
        pipe.close()
    except (BrokenPipeError, ConnectionResetError):
        pass


async def _stop(proc, waiter) -> None:
    """Ask outer to kill init (and so everything); force the group down if it does not."""
    try:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(asyncio.shield(waiter), timeout=2.0)
    except (ProcessLookupError, asyncio.TimeoutError):
        _killpg(proc.pid)
        await waiter


def _killpg(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _read_status(path: Path) -> list[dict]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    records = []
    for line in lines:
        try:
            records.append(json.loads(line))
        except ValueError:
            continue
    return records


def _result(
    limits, cfg, records, killed_by, out: bytes, err: bytes, latency, outer_rc
) -> SandboxResult:
    user = next((r for r in records if "exit" in r), None)
    stdout, stderr = out.decode("utf-8", "replace"), err.decode("utf-8", "replace")
    n = limits.output_chars
    truncated = killed_by == "output_limit" or len(stdout) > n or len(stderr) > n
    stdout, stderr = stdout[:n], (stderr[-n:] if n else "")
    sig = user.get("signal") if user else None
    exit_code = user.get("exit") if user else None
    reason = killed_by
    if reason is None:
        if user is None:
            reason = "sandbox_error"
        elif sig is not None:
            reason = _signal_reason(sig, user.get("cpu_s", 0.0), limits, err)
        elif exit_code in _EXIT_REASONS:
            reason = _EXIT_REASONS[exit_code]
        elif exit_code != 0:
            # CPython sometimes fails an allocation as SystemError; a full address space tells.
            full = (user.get("maxrss_kb") or 0) >= 0.8 * limits.memory_mb * 1024
            reason = "memory_limit" if full or b"MemoryError" in err[-2000:] else "nonzero_exit"
    detail = {
        "exit_code": exit_code,
        "signal": _signal_name(sig) if sig else None,
        "cpu_s": user.get("cpu_s") if user else None,
        "maxrss_kb": user.get("maxrss_kb") if user else None,
        "stdout_bytes": len(out),
        "stderr_bytes": len(err),
        "workdir": cfg["workdir"],
        "uid": cfg["uid"],
        "isolation": _isolation(cfg),
        "limits": asdict(limits),
    }
    if reason == "sandbox_error":
        detail["outer_exit"] = outer_rc
    return SandboxResult(
        ok=reason is None,
        stdout=stdout,
        stderr=stderr,
        exit_code=exit_code,
        reason=reason,
        latency_s=round(latency, 4),
        truncated=truncated,
        detail=detail,
    )


def _signal_reason(sig: int, cpu_s: float, limits: SandboxLimits, err: bytes) -> str:
    if sig == signal.SIGXCPU or (sig == signal.SIGKILL and cpu_s >= math.ceil(limits.cpu_s)):
        return "cpu_limit"
    if sig == signal.SIGXFSZ:
        return "file_size_limit"
    if sig == signal.SIGABRT and (b"MemoryError" in err or b"memory" in err[-2000:].lower()):
        return "memory_limit"
    return "signal"


def _signal_name(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return f"SIG{sig}"


def _isolation(cfg: dict) -> list[str]:
    used = ["rlimits", "process_group", "scrubbed_env"]
    if cfg["uid"] is not None:
        used.append("separate_uid")
    used += [name for name, flag in _CLONE.items() if cfg["unshare"] & flag == flag]
    if cfg["audit_net"]:
        used.append("network_audit_hook")
    return used


def run_python_sync(
    code: str, limits: SandboxLimits | None = None, *, stdin: str = ""
) -> SandboxResult:
    """``run_python`` for synchronous callers; safe to call from inside a running event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(run_python(code, limits, stdin=stdin))
    with ThreadPoolExecutor(max_workers=1) as pool:  # a loop is running here: use another thread
        return pool.submit(lambda: asyncio.run(run_python(code, limits, stdin=stdin))).result()
