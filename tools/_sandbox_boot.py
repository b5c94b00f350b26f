"""The privileged half of the sandbox: run as ``python -I -S _sandbox_boot.py <config.json>``.

Standard library only (it runs without site-packages) and never imported by pedagogy itself.
Three processes, so that every descendant of the untrusted code is reaped and killed:

- **outer** (the parent's child): leaves the host namespaces (``unshare``), forks *init*, relays
  a SIGTERM from the parent as SIGKILL to init, reaps, and exits once init is gone.
- **init** (pid 1 of a new pid namespace when available, else a child subreaper): mounts private
  tmpfs over the world-writable directories and the work dir, a fresh ``/proc``, forks *user*,
  reaps every orphan, records the user's exit status and rusage, then kills what is left.
- **user**: sets the rlimits, drops to the sandbox uid, forbids new privileges and ``execve``\\ s
  the interpreter on ``RUNNER`` below, which runs ``main.py``.
"""

import ctypes
import json
import os
import signal
import sys

CLONE_NEWNS, CLONE_NEWIPC = 0x00020000, 0x08000000
CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
PR_SET_PDEATHSIG, PR_SET_CHILD_SUBREAPER, PR_SET_NO_NEW_PRIVS = 1, 36, 38

# Exit codes the runner uses so the parent can tell why the code died (see sandbox.py).
EXIT_MEMORY, EXIT_PROCESS, EXIT_FILE_SIZE = 251, 252, 253

# Runs inside the unprivileged interpreter as ``-c RUNNER <audit_net>``: executes main.py in
# ``__main__`` (so pickling and ``if __name__`` work) and turns resource errors into exit codes.
RUNNER = r"""
def _run():
    import os
    import sys

    if sys.argv.pop(1) == "1":  # no network namespace: refuse non-Unix sockets and lookups

        def no_network(event, args):
            if (event == "socket.__new__" and args[1] != 1) or event in (
                "socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyaddr"
            ):
                raise PermissionError("network access is disabled in this sandbox")

        sys.addaudithook(no_network)
    sys.argv[0] = "main.py"
    sys.path.insert(0, os.getcwd())
    scope = globals()
    del scope["_run"]
    scope["__file__"] = "main.py"
    try:
        with open("main.py", encoding="utf-8") as f:
            code = compile(f.read(), "main.py", "exec")
        exec(code, scope)
    except SystemExit:
        raise
    except BaseException as exc:
        chain, seen, status = [exc], set(), 1
        while chain:
            e = chain.pop()
            if e is None or id(e) in seen:
                continue
            seen.add(id(e))
            if isinstance(e, MemoryError):
                status = 251
            elif status == 1 and (getattr(e, "errno", 0) == 11 or "can't start new thread" in str(e)):
                status = 252
            elif status == 1 and getattr(e, "errno", 0) == 27:
                status = 253
            chain += [e.__cause__, e.__context__]
        try:
            import traceback

            tb = exc.__traceback__
            traceback.print_exception(type(exc), exc, tb.tb_next if tb else None, limit=-50)
        except BaseException:
            try:
                os.write(2, (type(exc).__name__ + "\n").encode())
            except BaseException:
                pass
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except BaseException:
                pass
        os._exit(status)


_run()
"""

_libc = ctypes.CDLL(None, use_errno=True)


def _check(result, what):
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _enc(text):
    return None if text is None else text.encode()


def _mount(source, target, fstype, flags, data=None):
    _check(
        _libc.mount(_enc(source), _enc(target), _enc(fstype), flags, _enc(data)), f"mount {target}"
    )


def _prctl(option, value):
    _libc.prctl(option, value, 0, 0, 0)


def _kill_uid(uid):
    """SIGKILL every process of ``uid``: ``kill(-1)`` as that uid is atomic against forks."""
    pid = os.fork()
    if pid == 0:
        try:
            os.setgroups([])
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)
            os.kill(-1, signal.SIGKILL)
        finally:
            os._exit(0)
    os.waitpid(pid, 0)


def _reap_rest(timeout_s=2.0):
    """Reap children (orphans re-parented to us) until none are left."""
    import time

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            time.sleep(0.005)


def _setup_mounts(cfg):
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    keep = [(path, os.open(path, os.O_PATH | os.O_DIRECTORY)) for path in cfg["keep"]]
    for path in cfg["tmp_dirs"]:
        if os.path.isdir(path) and not os.path.islink(path):
            _mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV, cfg["tmp_options"])
    for path in cfg["hide"]:
        _mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV, "size=64k,nr_inodes=256,mode=755")
    for path, fd in keep:
        if not os.path.isdir(os.path.join(path, "bin")):
            os.makedirs(path, exist_ok=True)
            _mount(f"/proc/self/fd/{fd}", path, None, MS_BIND | MS_REC)
            _mount(None, path, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID)
        os.close(fd)
    os.makedirs(cfg["workdir"], exist_ok=True)
    owner = "" if cfg["uid"] is None else f",uid={cfg['uid']},gid={cfg['gid']}"
    _mount("tmpfs", cfg["workdir"], "tmpfs", MS_NOSUID | MS_NODEV, cfg["work_options"] + owner)
    if cfg["proc"]:
        try:
            _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, "hidepid=2")
        except OSError:
            pass  # keep the host /proc: the uid drop still hides other users' environ


def _become_user(cfg):
    """In the forked user process: limits, identity, then exec the interpreter."""
    import resource

    for sig in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGXCPU, signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_DFL)
    for name, (soft, hard) in cfg["rlimits"].items():
        resource.setrlimit(getattr(resource, name), (soft, hard))
    os.chdir(cfg["workdir"])
    if cfg["uid"] is not None:
        os.setgroups([])
        os.setresgid(cfg["gid"], cfg["gid"], cfg["gid"])
        os.setresuid(cfg["uid"], cfg["uid"], cfg["uid"])
    _prctl(PR_SET_NO_NEW_PRIVS, 1)
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    argv = [cfg["interpreter"], "-I", "-S", "-c", RUNNER, "1" if cfg["audit_net"] else "0"]
    os.execve(cfg["interpreter"], argv, cfg["env"])


def _init(cfg, code, status):
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    pid1 = os.getpid() == 1
    if not pid1:
        _prctl(PR_SET_CHILD_SUBREAPER, 1)
    if cfg["mount"]:
        _setup_mounts(cfg)
    main_py = os.path.join(cfg["workdir"], "main.py")
    with open(main_py, "wb") as f:
        f.write(code)
    if cfg["uid"] is not None:
        os.chown(main_py, cfg["uid"], cfg["gid"])
    user = os.fork()
    if user == 0:
        try:
            _become_user(cfg)
        except BaseException as exc:  # the exec failed: say why on the user's stderr
            os.write(2, f"sandbox: cannot start the interpreter: {exc!r}\n".encode())
        os._exit(127)
    record = {"exit": None, "signal": None}
    while True:
        try:
            pid, wstatus, usage = os.wait4(-1, 0)
        except ChildProcessError:
            break
        if pid == user:
            if os.WIFSIGNALED(wstatus):
                record["signal"] = os.WTERMSIG(wstatus)
            else:
                record["exit"] = os.WEXITSTATUS(wstatus)
            record["cpu_s"] = round(usage.ru_utime + usage.ru_stime, 4)
            record["maxrss_kb"] = usage.ru_maxrss
            break
    status.write(json.dumps(record) + "\n")
    status.flush()
    if not pid1:  # a pid namespace dies with its init; without one, kill the rest by uid
        if cfg["uid"] is not None:
            _kill_uid(cfg["uid"])
        _reap_rest()
    os._exit(0)


def _unshare(cfg):
    flags = cfg["unshare"]
    if not flags:
        return
    if cfg["userns"]:  # unprivileged: map our own ids so files we create stay ours
        uid, gid = os.getuid(), os.getgid()
        _check(_libc.unshare(CLONE_NEWUSER | flags), "unshare")
        with open("/proc/self/setgroups", "w") as f:
            f.write("deny")
        with open("/proc/self/uid_map", "w") as f:
            f.write(f"{uid} {uid} 1")
        with open("/proc/self/gid_map", "w") as f:
            f.write(f"{gid} {gid} 1")
    else:
        _check(_libc.unshare(flags), "unshare")


def main():
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    os.umask(0o022)
    with open(sys.argv[1], encoding="utf-8") as f:
        cfg = json.load(f)
    with open(cfg["code_path"], "rb") as f:
        code = f.read()
    status = open(cfg["status_path"], "w", encoding="utf-8")  # closed at the end of main
    _unshare(cfg)
    _prctl(PR_SET_CHILD_SUBREAPER, 1)
    init = os.fork()
    if init == 0:
        try:
            _init(cfg, code, status)
        except BaseException as exc:
            os.write(2, f"sandbox: setup failed: {exc!r}\n".encode())
        os._exit(126)
    killed = []

    def on_term(signum, frame):
        killed.append(signum)
        try:
            os.kill(init, signal.SIGKILL)
        except ProcessLookupError:
            pass

    signal.signal(signal.SIGTERM, on_term)
    _, wstatus = os.waitpid(init, 0)
    if cfg["uid"] is not None and not cfg["unshare"] & CLONE_NEWPID:
        _kill_uid(cfg["uid"])  # init may have been killed before it could
    _reap_rest()
    status.write(json.dumps({"init": os.waitstatus_to_exitcode(wstatus), "killed": bool(killed)}))
    status.write("\n")
    status.close()
    os._exit(0)


def probe():
    """Print which isolation features work here, as JSON (``_sandbox_boot.py --probe DIR``)."""
    found = {}
    tests = {
        "network_namespace": CLONE_NEWNET,
        "mount_namespace": CLONE_NEWNS,
        "pid_namespace": CLONE_NEWPID | CLONE_NEWNS,
    }
    userns = os.geteuid() != 0
    for name, flags in tests.items():
        pid = os.fork()
        if pid == 0:
            try:
                _unshare({"unshare": flags, "userns": userns})
                if flags & CLONE_NEWNS:
                    _mount(None, "/", None, MS_REC | MS_PRIVATE)
                    _mount("tmpfs", sys.argv[2], "tmpfs", MS_NOSUID, "size=64k")
                if flags & CLONE_NEWPID:
                    child = os.fork()
                    if child == 0:
                        ok = os.getpid() == 1
                        _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
                        os._exit(0 if ok else 1)
                    _, st = os.waitpid(child, 0)
                    os._exit(os.waitstatus_to_exitcode(st))
                os._exit(0)
            except BaseException:
                os._exit(1)
        _, st = os.waitpid(pid, 0)
        found[name] = os.waitstatus_to_exitcode(st) == 0
    found["user_namespace"] = userns and any(found.values())
    print(json.dumps(found))


if __name__ == "__main__":
    if sys.argv[1] == "--probe":
        probe()
    else:
        main()
