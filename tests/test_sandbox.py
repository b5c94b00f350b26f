"""Adversarial programs against pedagogy.tools.sandbox: each must be contained, and afterwards
nothing outside may have changed, no process of the sandbox uid may be left, the temp dir must be
gone and the host must still run a trivial program."""

from __future__ import annotations

import asyncio
import os
import select
import socket
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pedagogy.errors import ConfigError
from pedagogy.tools import sandbox
from pedagogy.tools.sandbox import (
    SandboxLimits,
    run_python,
    run_python_sync,
    sandbox_capabilities,
    set_max_concurrency,
)

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the sandbox needs Linux")

CANARY = "sk-canary-7d1f0c2a9b"
SENTINEL_TEXT = "sentinel: keep me\n"


@dataclass
class World:
    """Things outside the sandbox that the programs go after."""

    outside: Path
    sentinel: Path
    secret: Path
    listener: socket.socket
    home: Path = field(default_factory=Path.home)

    def fill(self, code: str) -> str:
        return (
            code.replace("@OUTSIDE@", str(self.outside))
            .replace("@SENTINEL@", str(self.sentinel))
            .replace("@SECRET@", str(self.secret))
            .replace("@PORT@", str(self.listener.getsockname()[1]))
            .replace("@HOME@", str(self.home))
            .replace("@HOSTPID@", str(os.getpid()))
        )


@pytest.fixture
def world(monkeypatch):
    monkeypatch.setenv("PEDAGOGY_CANARY_KEY", CANARY)
    outside = Path(tempfile.mkdtemp(prefix="pedagogy-outside-"))
    outside.chmod(0o755)  # traversable: only the sandbox itself may stop the programs
    sentinel = outside / "sentinel.txt"
    sentinel.write_text(SENTINEL_TEXT)
    sentinel.chmod(0o644)
    secret = outside / "secret.txt"
    secret.write_text(f"{CANARY}\n")
    secret.chmod(0o600)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.setblocking(False)
    yield World(outside, sentinel, secret, listener)
    listener.close()
    for path in sorted(outside.rglob("*"), reverse=True):
        path.unlink() if not path.is_dir() else path.rmdir()
    outside.rmdir()


def _uid_processes(uid: int, before: float) -> list[int]:
    """Processes of ``uid`` started before ``before`` (seconds since boot): the uid is leased
    to other runs, in this or other test processes, once ours is done."""
    found, tick = [], os.sysconf("SC_CLK_TCK")
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                status = (entry / "status").read_text()
                started = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[19]) / tick
            except (OSError, IndexError, ValueError):
                continue
            line = next(x for x in status.splitlines() if x.startswith("Uid:"))
            if int(line.split()[1]) == uid and started < before:
                found.append(int(entry.name))
    return found


def _uptime() -> float:
    return float(Path("/proc/uptime").read_text().split()[0])


def _no_connection(world: World) -> bool:
    readable, _, _ = select.select([world.listener], [], [], 0.2)
    return not readable


def _output(result) -> str:
    return result.stdout + result.stderr


# (id, program, limits, expected reasons, extra check). @NAME@ placeholders are World paths.
CASES = [
    (
        # Every process of the bomb forks: which of them is refused first, and whether the main
        # one is refused before the wall clock runs out, depends on the scheduler (on a busy
        # machine the main process may hardly run). What is load-independent: forks were
        # refused (the process limit held; the refused ones print why), the run was stopped by
        # a limit, and _assert_contained (nothing outlives it, the host still runs code).
        "fork_bomb",
        "import os\nwhile True:\n    os.fork()",
        {},
        {"process_limit", "timeout"},
        lambda r, w: "Resource temporarily unavailable" in r.stderr,
    ),
    (
        # Only the main thread starts threads (the others sleep): the limit is reached after
        # `processes` starts, however busy the machine; the wall clock is out of the race.
        "thread_bomb",
        "import threading, time\nwhile True:\n    threading.Thread(target=time.sleep, args=(60,)).start()",
        {"wall_s": 120},
        {"process_limit"},
        lambda r, w: "can't start new thread" in r.stderr,
    ),
    (
        "memory_hog",
        "x = []\nwhile True:\n    x.append(bytearray(10**7))",
        {"wall_s": 120},  # the address-space limit is reached after ~25 appends, however slowly
        {"memory_limit"},
        lambda r, w: "MemoryError" in r.stderr,
    ),
    (
        # 1 s of CPU can take several seconds of wall time on a busy machine: the wall limit is
        # set far above it so that only the CPU limit can stop the loop.
        "cpu_loop",
        "while True:\n    pass",
        {"cpu_s": 1, "wall_s": 120},
        {"cpu_limit"},
        lambda r, w: r.detail["signal"] in ("SIGXCPU", "SIGKILL"),
    ),
    (
        # Stopped at the wall limit, not when the program's sleep ends: the margin (60 s of
        # latency against a 600 s sleep) holds on any machine, however busy.
        "sleep_past_wall",
        "import time\ntime.sleep(600)",
        {"wall_s": 1},
        {"timeout"},
        lambda r, w: r.latency_s < 60,
    ),
    (
        "huge_stdout",
        "while True:\n    print('x' * 10000)",
        {},
        {"output_limit"},
        lambda r, w: r.truncated and len(r.stdout) == 2000,
    ),
    (
        "huge_stderr",
        "import sys\nwhile True:\n    sys.stderr.write('e' * 10000)",
        {},
        {"output_limit"},
        lambda r, w: r.truncated and len(r.stderr) == 2000,
    ),
    (
        "huge_file",
        "with open('big', 'wb') as f:\n    f.write(b'x' * (64 << 20))",
        {"file_size_mb": 1},
        {"file_size_limit"},
        None,
    ),
    (
        "write_outside",
        "open('@OUTSIDE@/new.txt', 'w').write('pwned')\nopen('@SENTINEL@', 'a').write('pwned')",
        {},
        {"nonzero_exit"},
        lambda r, w: not (w.outside / "new.txt").exists(),
    ),
    (
        "write_home",
        "open('@HOME@/pedagogy-sandbox-pwned', 'w').write('pwned')",
        {},
        {"nonzero_exit"},
        lambda r, w: not (w.home / "pedagogy-sandbox-pwned").exists(),
    ),
    ("delete_outside", "import os\nos.remove('@SENTINEL@')", {}, {"nonzero_exit"}, None),
    (
        "read_parent_env",
        "import os\nprint(dict(os.environ))\nprint(open('/proc/self/environ').read())",
        {},
        {None},
        lambda r, w: CANARY not in _output(r) and "PEDAGOGY_CANARY_KEY" not in _output(r),
    ),
    (
        "read_root_only_file",
        "for p in ['@SECRET@', '/etc/shadow']:\n    try:\n        print(open(p).read())\n"
        "    except OSError as e:\n        print(repr(e))\nraise SystemExit(3)",
        {},
        {"nonzero_exit"},
        lambda r, w: CANARY not in _output(r) and "root:" not in r.stdout,
    ),
    (
        "socket_connect",
        "import socket\ns = socket.socket()\ns.settimeout(2)\ns.connect(('127.0.0.1', @PORT@))\n"
        "s.sendall(b'hello')",
        {},
        {"nonzero_exit"},
        lambda r, w: _no_connection(w),
    ),
    (
        "subprocess_spawn",
        "import subprocess\nsubprocess.run(['ls', '-la'], check=True)",
        {},
        {None},
        lambda r, w: "main.py" in r.stdout,
    ),
    (
        "os_system",
        "import os\nos.system('id; cat /etc/shadow; echo done')",
        {},
        {None},
        lambda r, w: "done" in r.stdout and "root:" not in r.stdout,
    ),
    (
        "ctypes_kill_parent",
        "import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\n"
        "print(libc.kill(os.getppid(), 9), libc.kill(@HOSTPID@, 9), libc.kill(1, 9))",
        {},
        {None},
        lambda r, w: r.stdout.split() == ["-1", "-1", "-1"],
    ),
    (
        "ctypes_crash",
        "import ctypes\nctypes.memset(0, 0, 1)",
        {},
        {"signal"},
        lambda r, w: r.detail["signal"] == "SIGSEGV",
    ),
    (
        "kill_parent",
        "import os, signal\nfor pid in (os.getppid(), @HOSTPID@, 1):\n    try:\n"
        "        os.kill(pid, signal.SIGKILL)\n    except OSError as e:\n        print(type(e).__name__)\n"
        "print('alive')",
        {},
        {None},
        lambda r, w: r.stdout.strip().endswith("alive"),
    ),
    (
        "kill_own_group",
        "import os, signal\nos.killpg(0, signal.SIGKILL)\nprint('alive')",
        {},
        {"signal"},
        lambda r, w: r.detail["signal"] == "SIGKILL",
    ),
    (
        "kill_sandbox_runner",
        "import os, signal\nfor entry in os.listdir('/proc'):\n"
        "    if entry.isdigit() and int(entry) != os.getpid():\n        try:\n"
        "            os.kill(int(entry), signal.SIGKILL)\n        except OSError:\n            pass\n"
        "try:\n    os.kill(-1, signal.SIGKILL)\nexcept OSError:\n    pass\nprint('alive')",
        {},
        {None},
        lambda r, w: "alive" in r.stdout,
    ),
    (
        "setrlimit_raise",
        "import resource\nfor lim in (resource.RLIMIT_AS, resource.RLIMIT_NPROC, resource.RLIMIT_CPU):\n"
        "    try:\n        resource.setrlimit(lim, (resource.RLIM_INFINITY,) * 2)\n"
        "    except (ValueError, OSError) as e:\n        print('refused', e)\n"
        "x = bytearray(1 << 30)",
        {},
        {"memory_limit"},
        lambda r, w: r.stdout.count("refused") == 3,
    ),
    (
        "chdir_root_and_modify",
        "import os\nos.chdir('/')\nprint(sorted(os.listdir('.')))\n"
        "open('/pedagogy-sandbox-pwned', 'w').write('pwned')",
        {},
        {"nonzero_exit"},
        lambda r, w: not Path("/pedagogy-sandbox-pwned").exists(),
    ),
    (
        "infinite_recursion",
        "def f():\n    return f()\nf()",
        {},
        {"nonzero_exit"},
        lambda r, w: "RecursionError" in r.stderr,
    ),
    (
        "deep_recursion_unbounded",
        "import sys\nsys.setrecursionlimit(10**8)\ndef f(n):\n    return f(n + 1)\nf(0)",
        {"memory_mb": 64, "wall_s": 120},  # ~1 s of CPU: only the memory limit may stop it
        {"memory_limit"},
        None,
    ),
    (
        "big_import_memory_limited",
        "import asyncio, decimal, email.mime.multipart, http.client, unittest, xml.dom.minidom\n"
        "print('imported')",
        {"memory_mb": 16},
        {"memory_limit"},
        None,
    ),
    (
        "many_open_files",
        "files = [open(f'f{i}', 'w') for i in range(100000)]",
        {},
        {"nonzero_exit"},
        lambda r, w: "Too many open files" in r.stderr,
    ),
    (
        "symlink_escape",
        "import os\nos.symlink('@SENTINEL@', 'link')\nos.symlink('@SECRET@', 'secret')\n"
        "try:\n    print(open('secret').read())\nexcept OSError as e:\n    print(repr(e))\n"
        "open('link', 'w').write('pwned')",
        {},
        {"nonzero_exit"},
        lambda r, w: CANARY not in _output(r),
    ),
    (
        "proc_parent_environ",
        "import os\nfor pid in (os.getppid(), 1, @HOSTPID@):\n    try:\n"
        "        print(open(f'/proc/{pid}/environ', 'rb').read())\n    except OSError as e:\n"
        "        print(repr(e))",
        {},
        {None},
        lambda r, w: CANARY not in _output(r),
    ),
    (
        # The run ends with its main process, not with the daemon: reason None means it ended
        # before the wall limit (5 s) while the daemon sleeps 60 s, and _assert_contained finds
        # the daemon gone with it.
        "orphan_daemon",
        "import os, time\nif os.fork() == 0:\n    os.setsid()\n    time.sleep(60)\n    os._exit(0)\n"
        "print('parent done')",
        {},
        {None},
        lambda r, w: r.stdout == "parent done\n",
    ),
    (
        "fill_tmp",
        "for i in range(10000):\n    open(f'/tmp/pedagogy-fill-{i}', 'wb').write(b'x' * (1 << 20))",
        {},
        {"nonzero_exit", "file_size_limit"},
        lambda r, w: not list(Path("/tmp").glob("pedagogy-fill-*")),
    ),
]


def _assert_contained(result, world: World) -> None:
    ended = _uptime()
    workdir = Path(result.detail["workdir"])
    assert not workdir.exists() and not workdir.parent.exists(), "the temp dir must be removed"
    if result.detail["uid"] is not None:
        assert _uid_processes(result.detail["uid"], ended) == [], (
            "a sandbox process outlived the run"
        )
    assert world.sentinel.read_text() == SENTINEL_TEXT
    assert world.secret.read_text() == f"{CANARY}\n"
    assert sorted(p.name for p in world.outside.iterdir()) == ["secret.txt", "sentinel.txt"]
    healthy = run_python_sync("print(6 * 7)")
    assert (healthy.ok, healthy.stdout) == (True, "42\n"), healthy
    assert not Path(healthy.detail["workdir"]).parent.exists()


@pytest.mark.parametrize(
    ("program", "limits", "expected", "check"),
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
def test_adversarial_program_is_contained(world, program, limits, expected, check):
    limits = {"wall_s": 5.0, "cpu_s": 3.0, **limits}
    result = run_python_sync(world.fill(program), SandboxLimits(**limits))
    assert result.reason in expected, (result.reason, result.stdout[-500:], result.stderr[-800:])
    assert result.ok == (result.reason is None)
    if check is not None:
        assert check(result, world), (result.stdout[-500:], result.stderr[-800:], result.detail)
    _assert_contained(result, world)


def test_capabilities_are_reported():
    caps = sandbox_capabilities()
    assert {"rlimits", "separate_user", "network_namespace", "network_audit_hook"} <= set(caps)
    assert all(isinstance(v, bool) for v in caps.values())
    assert caps["separate_user"] == (os.geteuid() == 0)


@pytest.mark.skipif(os.geteuid() != 0, reason="the fallbacks are exercised as root")
@pytest.mark.parametrize("missing", ["network_namespace", "mount_namespace", "pid_namespace"])
def test_fallbacks_still_contain(world, monkeypatch, missing):
    """Without one namespace the rest still hold; without netns the audit hook refuses sockets."""
    caps = sandbox_capabilities()
    removed = {missing: False, **({"pid_namespace": False} if missing == "mount_namespace" else {})}
    monkeypatch.setattr(sandbox, "_caps", {**caps, **removed})
    code = world.fill(
        "import os, socket, time\nif os.fork() == 0:\n    os.setsid()\n    time.sleep(60)\n"
        "    os._exit(0)\ntry:\n    socket.socket().connect(('127.0.0.1', @PORT@))\n"
        "except OSError as e:\n    print('refused', type(e).__name__)\n"
    )
    result = run_python_sync(code, SandboxLimits(wall_s=5))
    assert result.ok, result
    assert "refused" in result.stdout and _no_connection(world)
    if missing == "network_namespace":
        assert "network_audit_hook" in result.detail["isolation"]
        assert "refused PermissionError" in result.stdout
    monkeypatch.setattr(sandbox, "_caps", caps)
    _assert_contained(result, world)


def test_stdin_output_and_exit_code():
    result = run_python_sync(
        "import sys\ndata = sys.stdin.read()\nprint(data.upper())\nsys.exit(4)", stdin="hello"
    )
    assert (result.ok, result.reason, result.exit_code) == (False, "nonzero_exit", 4)
    assert result.stdout == "HELLO\n"


def test_output_is_truncated_without_killing():
    result = run_python_sync("print('a' * 5000)", SandboxLimits(output_chars=100))
    assert result.ok and result.truncated and result.stdout == "a" * 100


def test_concurrency_is_bounded():
    async def main():
        start = time.monotonic()
        results = await asyncio.gather(
            *(run_python("import time; time.sleep(0.6)") for _ in range(4))
        )
        return time.monotonic() - start, results

    set_max_concurrency(2)
    elapsed, results = asyncio.run(main())
    assert all(r.ok for r in results)
    assert elapsed >= 1.2  # 4 runs, 2 at a time


async def test_sync_wrapper_works_inside_a_running_loop():
    result = run_python_sync("print('inside')")
    assert result.stdout == "inside\n"


def test_bad_limits_are_config_errors():
    with pytest.raises(ConfigError, match="wall_s"):
        SandboxLimits(wall_s=0)
    with pytest.raises(ConfigError, match="max concurrency"):
        set_max_concurrency(0)
    with pytest.raises(ConfigError, match="code must be a string"):
        run_python_sync(b"print(1)")  # type: ignore[arg-type]
