"""Run untrusted programs (model completions plus their tests) and say whether they passed.

Isolation, strongest first:

- **bubblewrap** (`bwrap`): new network, PID, IPC and UTS namespaces; a read-only view of the
  system (/usr, /etc and the runtimes' folders); a size-capped private tmpfs as the only
  writable place, besides the program's own folder while its compiler runs.
- **unshare** (fallback, with a loud warning): new network and PID namespaces and resource
  limits, but the host file system stays visible and writable wherever the sandbox user may
  write.

In both, programs run as an unprivileged user: when we are root, a random per-worker uid (root
is exempt from RLIMIT_NPROC, so a fork bomb run as root is not contained); otherwise our own uid
inside a user namespace, which gives the process limit its own count. Every step runs under
CPU, address-space, process-count and file-size limits (`prlimit`), with separate wall-clock
limits for compiling and running. The output limit is RLIMIT_FSIZE on the files that stdout
and stderr go to, so the kernel stops a flood, not a reader thread.

Nothing outlives a run: each sandboxed command is the init of its own PID namespace, and when
it exits or is killed the kernel kills every process left in the namespace before the outer
process (which we reap) returns. Python samples run in a warm interpreter per worker (a
*zygote*) that forks one child per sample, so a sample costs a fork instead of a sandbox plus an
interpreter start. The zygote is its sandbox's init, so its samples can neither kill nor stop
it, and it is not ptrace-able; after each sample it kills every other process in its namespace
and wipes its scratch folder.

A program passes only if it exits 0 *and* prints the random completion marker that
`dscoder.eval.languages` places after its tests. Statuses: `timeout` (wall-clock or CPU limit,
of the compiler or the program), `compile_error`, `sandbox_violation` (output or file size
limit), `failed` (anything else that is not a pass: a non-zero exit, a crash, a memory limit,
an exit before the tests finished).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import json
import os
import queue
import re
import secrets
import select
import shutil
import signal
import struct
import subprocess
import tempfile
import textwrap
import time
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from dscoder.errors import UserError
from dscoder.eval import languages

Status = Literal["passed", "failed", "timeout", "compile_error", "sandbox_violation"]

# Sandbox uids, when we run as root, are drawn at random from here: above the ranges that
# distributions, /etc/subuid and systemd's containers hand out, below 2**31 so that no tool
# mistakes them for negative numbers. A uid owns no files and runs no other processes.
SANDBOX_UID_RANGE = (0x7000_0000, 0x7FFF_0000)

# tmpfs pages are RAM that RLIMIT_AS does not see: cap each sandbox's private /tmp.
_SCRATCH_BYTES = 256 << 20
# Compilers write object files and binaries; their size limit is not the program's output one.
_COMPILE_FSIZE = 256 << 20
_TAIL_BYTES = 8192
# How long past its wall-clock limit a zygote may take to answer before we kill its sandbox.
_ZYGOTE_GRACE_S = 5.0
_ZYGOTE_START_S = 60.0
_ENV_MODE = "DSCODER_SANDBOX"  # auto (default), bubblewrap or unshare


@dataclass(frozen=True)
class Limits:
    """Per-program limits. Compile steps get `compile_wall_s` of wall-clock and CPU time; run
    steps `run_wall_s` of wall-clock and `cpu_s` of CPU. `max_output_bytes` caps stdout and
    stderr each, and every file a run writes."""

    compile_wall_s: float = 30.0
    run_wall_s: float = 10.0
    cpu_s: float = 10.0
    memory_mb: int = 4096
    max_procs: int = 64
    max_output_bytes: int = 1 << 20

    def __post_init__(self) -> None:
        for name in ("compile_wall_s", "run_wall_s", "cpu_s", "memory_mb", "max_procs",
                     "max_output_bytes"):
            if not getattr(self, name) > 0:
                raise UserError(f"sandbox limit {name} must be positive, got {getattr(self, name)}")


@dataclass
class ExecResult:
    """What happened to one program. `exit_code` is None when it never ran to an exit (compile
    failure, wall-clock kill); a program killed by signal N reports 128+N, as a shell does."""

    status: Status
    exit_code: int | None
    stdout_tail: str
    stderr_tail: str
    duration_s: float


class SandboxUnavailableError(UserError):
    """Neither bubblewrap nor the unshare fallback works on this machine."""


class SandboxError(RuntimeError):
    """The sandbox itself failed (not the program in it); results would be meaningless."""


# ---------------------------------------------------------------------------------------------
# Isolation: how one command is wrapped.


@dataclass(frozen=True)
class _RLimits:
    cpu_s: float
    memory_mb: int
    max_procs: int
    fsize: int

    def prlimit_args(self) -> list[str]:
        cpu = max(1, int(self.cpu_s + 0.999))
        return [
            f"--cpu={cpu}:{cpu + 1}",  # SIGXCPU at the soft limit, SIGKILL a second later
            f"--as={self.memory_mb << 20}",
            f"--nproc={self.max_procs}",
            f"--fsize={self.fsize}",
            "--core=0",
        ]


@dataclass(frozen=True)
class _Command:
    argv: list[str]
    cwd: str | None
    env: dict[str, str] | None


_SYSTEM_DIRS = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")


@dataclass(frozen=True)
class _Isolation:
    mode: Literal["bubblewrap", "unshare"]
    as_root: bool
    tool: str  # absolute path of bwrap or unshare
    version: tuple[int, ...]  # bwrap's, to know which options it has; () for unshare

    def scratch(self, host_scratch: Path) -> Path:
        """The private writable folder as the sandboxed program sees it."""
        return Path("/tmp") if self.mode == "bubblewrap" else host_scratch

    def command(
        self,
        argv: Sequence[str],
        *,
        uid: int | None,
        rlimits: _RLimits | None,
        cwd: Path,
        readonly: Sequence[Path] = (),
        writable: Sequence[Path] = (),
        env: Mapping[str, str],
        status_fd: int | None = None,
    ) -> _Command:
        """The argv (and cwd, env) that runs `argv` sandboxed. bwrap reports on `status_fd`."""
        inner: list[str] = []
        if uid is not None:  # root: become the unprivileged sandbox user inside the namespaces
            inner += [_tool("setpriv"), f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
                      "--no-new-privs", "--inh-caps=-all", "--bounding-set=-all", "--"]
        if rlimits is not None:
            # The command is its namespace's PID 1, which ignores signals it has no handler
            # for (so SIGXFSZ would not stop it): run it as a child of a shell instead. The
            # zygote (no rlimits) stays PID 1 on purpose: its samples cannot kill or stop it.
            inner += [_tool("prlimit"), *rlimits.prlimit_args(), "--",
                      "/bin/sh", "-c", '"$@"; exit $?', "sh"]
        inner += list(argv)
        if self.mode == "unshare":
            outer = [self.tool, "--net", "--pid", "--fork", "--kill-child", "--mount-proc"]
            if not self.as_root:
                outer.insert(1, "--user")
            return _Command(outer + ["--"] + inner, str(cwd), dict(env))
        status = [] if status_fd is None else ["--json-status-fd", str(status_fd)]
        return _Command(self._bwrap(cwd=cwd, readonly=readonly, writable=writable, env=env)
                        + status + ["--"] + inner, None, None)

    def _bwrap(self, *, cwd: Path, readonly: Sequence[Path], writable: Sequence[Path],
               env: Mapping[str, str]) -> list[str]:
        # --as-pid-1: bwrap's own init would outlive the outer process and be left for the
        # host's init to reap; our command (or its shell) is the namespace's init instead.
        args = [self.tool, "--die-with-parent", "--new-session", "--as-pid-1"]
        if self.as_root:
            # No user namespace: root sets up the mounts, setpriv drops to the sandbox uid.
            args += ["--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts",
                     "--unshare-cgroup-try"]
        else:
            args += ["--unshare-user", "--unshare-ipc", "--unshare-pid", "--unshare-net",
                     "--unshare-uts", "--unshare-cgroup-try"]
            if self.version >= (0, 8):  # no nested user namespaces for the program
                args.append("--disable-userns")
        args += ["--ro-bind", "/usr", "/usr", "--ro-bind", "/etc", "/etc"]
        for name in _SYSTEM_DIRS:
            host = Path("/") / name
            if host.is_symlink():
                args += ["--symlink", os.readlink(host), str(host)]
            elif host.is_dir():
                args += ["--ro-bind", str(host), str(host)]
        args += ["--dev", "/dev", "--proc", "/proc",
                 "--perms", "1777", "--size", str(_SCRATCH_BYTES), "--tmpfs", "/tmp"]
        made: set[Path] = set()
        for path, flag in [(p, "--ro-bind") for p in readonly] + [(p, "--bind") for p in writable]:
            # bwrap would create missing parents with mode 0700, hiding the bind from the
            # unprivileged user: create them 0755 first.
            for parent in reversed(path.parents):
                if parent in made or parent in (Path("/"), Path("/tmp")) or _is_bound(parent):
                    continue
                args += ["--perms", "0755", "--dir", str(parent)]
                made.add(parent)
            args += [flag, str(path), str(path)]
        args += ["--chdir", str(cwd), "--clearenv"]
        for key, value in env.items():
            args += ["--setenv", key, value]
        return args


def _is_bound(path: Path) -> bool:
    return path.parts[1:2] in (("usr",), ("etc",)) or (
        len(path.parts) == 2 and path.parts[1] in _SYSTEM_DIRS)


@functools.cache
def _tool(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/sbin:/bin")
    if not found:
        raise SandboxUnavailableError(f"the sandbox needs `{name}` (util-linux) on PATH")
    return found


def _random_uid() -> int:
    """A sandbox uid that no process is using right now."""
    while True:
        uid = SANDBOX_UID_RANGE[0] + secrets.randbelow(SANDBOX_UID_RANGE[1] - SANDBOX_UID_RANGE[0])
        if uid not in _uids_in_use():
            return uid


def _uids_in_use() -> set[int]:
    uids = set()
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                uids.add(os.stat(entry.path).st_uid)
            except OSError:
                pass  # exited while we looked
    return uids


def _base_env(scratch: Path) -> dict[str, str]:
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(scratch),
        "TMPDIR": str(scratch),
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        # numerical libraries start a thread per core at import; each counts as a process
        "OPENBLAS_NUM_THREADS": "1",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }


def _candidate(mode: str) -> _Isolation | None:
    as_root = os.geteuid() == 0
    if mode == "bubblewrap":
        tool = shutil.which("bwrap")
        if not tool:
            return None
        text = subprocess.run([tool, "--version"], capture_output=True, text=True).stdout
        found = re.search(r"(\d+)\.(\d+)", text)
        version = (int(found.group(1)), int(found.group(2))) if found else ()
        return _Isolation("bubblewrap", as_root, tool, version)
    tool = shutil.which("unshare")
    return _Isolation("unshare", as_root, tool, ()) if tool else None


@functools.cache
def _probe(mode: str) -> tuple[_Isolation | None, str]:
    """Try `mode` with a trivial command; the isolation if it works, else why not."""
    isolation = _candidate(mode)
    if isolation is None:
        return None, f"{mode}: not installed"
    with tempfile.TemporaryDirectory(prefix="dscoder-probe-") as folder:
        scratch = Path(folder)
        uid = _random_uid() if isolation.as_root else None
        if uid is not None:
            os.chown(scratch, uid, uid)
        command = isolation.command(
            ["/bin/sh", "-c", "exit 0"], uid=uid,
            rlimits=_RLimits(cpu_s=5, memory_mb=256, max_procs=16, fsize=1 << 20),
            cwd=isolation.scratch(scratch), env=_base_env(isolation.scratch(scratch)))
        try:
            done = subprocess.run(command.argv, cwd=command.cwd, env=command.env,
                                  capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired) as error:
            return None, f"{mode}: {error}"
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        return None, f"{mode}: {reason}"
    return isolation, ""


def _isolation() -> _Isolation:
    requested = os.environ.get(_ENV_MODE, "auto").strip().lower() or "auto"
    if requested not in ("auto", "bubblewrap", "unshare"):
        raise UserError(f"{_ENV_MODE} must be auto, bubblewrap or unshare, not {requested!r}")
    reasons = []
    for mode in ("bubblewrap", "unshare") if requested == "auto" else (requested,):
        isolation, reason = _probe(mode)
        if isolation is not None:
            return isolation
        reasons.append(reason)
    raise SandboxUnavailableError(
        "no usable sandbox (" + "; ".join(reasons) + "): install bubblewrap "
        "(scripts/install-runtimes.sh), or allow unprivileged user namespaces")


def _describe(isolation: _Isolation) -> str:
    who = ("a random unprivileged uid per worker (we are root)" if isolation.as_root
           else f"uid {os.geteuid()} in a user namespace")
    if isolation.mode == "bubblewrap":
        version = ".".join(map(str, isolation.version))
        return (f"isolation: bubblewrap {version}: no network, own PID/IPC/UTS namespaces, "
                f"read-only system folders, a private {_SCRATCH_BYTES >> 20} MiB tmpfs as the "
                "only writable place; "
                f"programs run as {who} under CPU, memory, process and output limits")
    why = _probe("bubblewrap")[1]
    return (
        "WARNING: WEAKER ISOLATION. bubblewrap is not usable here (" + why + "), so programs "
        "run under `unshare`: no network and their own PID namespace, but the file system is "
        "NOT isolated: they can read every file and write every folder that " + who + " may. "
        "Install bubblewrap (scripts/install-runtimes.sh) or allow unprivileged user "
        "namespaces for full isolation.")


def isolation_report() -> str:
    """Which isolation sandboxed programs get on this machine, with a warning when it is weak."""
    try:
        return _describe(_isolation())
    except SandboxUnavailableError as error:
        return f"WARNING: NO SANDBOX: {error}"


# ---------------------------------------------------------------------------------------------
# Running one command under the sandbox and cleaning up after it.


def _kill_sandbox(proc: subprocess.Popen) -> None:
    """Kill everything the sandbox started, then reap its outer process.

    Killing the PID namespace's init (the outer process's child) makes the kernel kill every
    process in the namespace; the outer process exits only once they are all gone.
    """
    try:
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
    except OSError:
        children = []
    for child in children:
        try:
            os.kill(int(child), signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()


@dataclass
class _Outcome:
    exit_code: int | None
    timed_out: bool
    output_exceeded: bool
    marker_seen: bool
    stdout_tail: str
    stderr_tail: str
    duration_s: float
    note: str = ""


def _tail(data: bytes) -> str:
    return data[-_TAIL_BYTES:].decode("utf-8", errors="replace")


def _read_output(path: Path, marker: str | None) -> tuple[bytes, bool]:
    data = path.read_bytes() if path.exists() else b""
    if marker is None:
        return data, False
    token = marker.encode()
    seen = token in data
    return data.replace(b"\n" + token + b"\n", b"").replace(token, b""), seen


def _rmtree(path: Path) -> None:
    """Delete a folder a sandboxed program may have made unreadable (chmod 000)."""

    def unlock(func, target, _exc):
        try:
            os.chmod(os.path.dirname(target), 0o700)
            os.chmod(target, 0o700)
            func(target)
        except OSError:
            pass

    shutil.rmtree(path, onerror=unlock)


# ---------------------------------------------------------------------------------------------
# The Python zygote. This function runs *inside* the sandbox as its own program (its source is
# passed to `python -I -c`), so it imports everything it needs itself.


def _zygote_main() -> None:  # pragma: no cover - runs in the sandboxed interpreter
    import builtins
    import ctypes
    import importlib
    import json
    import os
    import random
    import resource
    import types
    import select
    import signal
    import struct
    import sys
    import time
    import traceback

    if os.getpid() != 1:
        # kill(-1) below kills every process we may signal: only safe as a PID namespace's init.
        sys.exit("the Python zygote must run as the init of its own PID namespace")
    scratch = sys.argv[1]
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE 0: samples (same uid) cannot ptrace us
    libc.prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER: orphans come back to us to reap
    sys.dont_write_bytecode = True
    # The control channel moves off fds 0/1, which then point at /dev/null, so nothing a
    # module prints can corrupt it; children close every fd above 2.
    control_in, control_out = os.dup(0), os.dup(1)
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    os.close(null)

    def preload(names):
        for name in names:
            if name not in sys.modules:
                try:
                    importlib.import_module(name)
                except ImportError:
                    pass

    # The standard modules DeepSeek's Python header imports: loaded once here, inherited by
    # every fork. Heavy libraries come only when a program asks for them (see `run`): each one
    # loaded makes every later fork slower.
    preload(("math", "re", "copy", "datetime", "itertools", "collections", "heapq", "statistics",
             "functools", "hashlib", "string", "typing"))

    def read_exact(size):
        data = b""
        while len(data) < size:
            chunk = os.read(control_in, size - len(data))
            if not chunk:
                return None
            data += chunk
        return data

    def send(message):
        payload = json.dumps(message).encode()
        payload = struct.pack(">I", len(payload)) + payload
        while payload:
            payload = payload[os.write(control_out, payload):]

    def kill_all_others():
        while True:
            try:
                os.kill(-1, signal.SIGKILL)  # every process of ours in the namespace but us
            except (ProcessLookupError, PermissionError):
                pass
            try:
                os.waitpid(-1, 0)
            except ChildProcessError:
                return

    def wipe(folder):
        device = os.lstat(folder).st_dev
        for entry in os.scandir(folder):
            try:
                info = entry.stat(follow_symlinks=False)
                if info.st_dev != device:
                    continue  # a bind mount, not ours
                if entry.is_dir(follow_symlinks=False):
                    os.chmod(entry.path, 0o700)
                    wipe(entry.path)
                    os.rmdir(entry.path)
                else:
                    os.unlink(entry.path)
            except OSError:
                pass

    def child(request, path, work, out_path, err_path):
        try:
            fds = [os.open(os.devnull, os.O_RDONLY),
                   os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600),
                   os.open(err_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)]
            for target, fd in enumerate(fds):
                os.dup2(fd, target)
            os.closerange(3, resource.getrlimit(resource.RLIMIT_NOFILE)[0])
            os.setpgid(0, 0)
            # Python ignores SIGXFSZ, so a write past the size limit would only raise; take the
            # default action (death by signal) as every other language's program does.
            signal.signal(signal.SIGXFSZ, signal.SIG_DFL)
            os.chdir(work)
            cpu = max(1, int(request["cpu_s"] + 0.999))
            resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
            memory = request["memory_mb"] << 20
            resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
            resource.setrlimit(resource.RLIMIT_NPROC, (request["max_procs"],) * 2)
            resource.setrlimit(resource.RLIMIT_FSIZE, (request["max_output_bytes"],) * 2)
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
            os.environ.clear()
            os.environ.update(request["env"])
            sys.argv = [path]
            sys.path.insert(0, work)
            random.seed()  # forks would otherwise share one random state
            if "numpy" in sys.modules:
                sys.modules["numpy"].random.seed()
        except BaseException:
            os._exit(125)
        try:
            # What `python program.py` does, minus runpy's per-call lazy imports (2 ms a child).
            with open(path, "rb") as handle:
                program = compile(handle.read(), path, "exec")
            main = types.ModuleType("__main__")
            main.__file__ = path
            main.__builtins__ = builtins
            sys.modules["__main__"] = main
            exec(program, main.__dict__)
            code = 0
        except SystemExit as stop:
            if stop.code is None:
                code = 0
            elif isinstance(stop.code, int):
                code = stop.code & 0xFF
            else:
                print(stop.code, file=sys.stderr)
                code = 1
        except BaseException:
            traceback.print_exc()
            code = 1
        try:
            import atexit

            atexit._run_exitfuncs()
            sys.stdout.flush()
            sys.stderr.flush()
        except BaseException:
            code = code or 120
        os._exit(code)

    def run(request):
        preload(request["preload"])
        work = os.path.join(scratch, "work")
        os.mkdir(work, 0o700)
        path = os.path.join(work, "program.py")
        with open(path, "w", encoding="utf-8", errors="replace") as handle:
            handle.write(request["source"])
        out_path = os.path.join(scratch, ".stdout")
        err_path = os.path.join(scratch, ".stderr")
        start = time.monotonic()
        pid = os.fork()
        if pid == 0:
            child(request, path, work, out_path, err_path)
        pidfd = os.pidfd_open(pid)
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        # The host never writes during a sample, so the control channel becomes readable only
        # when the host is gone; then nobody wants the result (and the sandbox might outlive it).
        poller.register(control_in, select.POLLIN)
        events = dict(poller.poll(int(request["wall_s"] * 1000)))
        os.close(pidfd)
        if control_in in events and pidfd not in events:
            kill_all_others()
            os._exit(0)
        timed_out = not events
        if timed_out:
            os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        duration = time.monotonic() - start
        kill_all_others()
        if timed_out:
            code = None
        elif os.WIFSIGNALED(status):
            code = 128 + os.WTERMSIG(status)
        else:
            code = os.WEXITSTATUS(status)
        outputs = []
        for output in (out_path, err_path):
            try:
                with open(output, "rb") as handle:
                    outputs.append(handle.read())
            except OSError:
                outputs.append(b"")
        wipe(scratch)
        token = request["marker"].encode()
        stdout = outputs[0]
        return {
            "exit_code": code,
            "timed_out": timed_out,
            "output_exceeded": any(len(o) >= request["max_output_bytes"] for o in outputs),
            "marker_seen": token in stdout,
            "stdout_tail": stdout.replace(b"\n" + token + b"\n", b"")[-request["tail_bytes"]:]
            .decode("utf-8", "replace"),
            "stderr_tail": outputs[1][-request["tail_bytes"]:].decode("utf-8", "replace"),
            "duration_s": duration,
        }

    send({"ready": True})
    while True:
        header = read_exact(4)
        if header is None:  # the host closed the channel (or died): finish now
            kill_all_others()
            os._exit(0)
        send(run(json.loads(read_exact(struct.unpack(">I", header)[0]))))


_ZYGOTE_SOURCE = textwrap.dedent(inspect.getsource(_zygote_main)) + "\n_zygote_main()\n"


class _Zygote:
    """Host side of one warm Python interpreter inside a sandbox."""

    def __init__(self, isolation: _Isolation, uid: int | None, host_scratch: Path,
                 log_path: Path) -> None:
        scratch = isolation.scratch(host_scratch)
        tools = languages.toolchain()
        command = isolation.command(
            [tools.python, "-I", "-c", _ZYGOTE_SOURCE, str(scratch)], uid=uid, rlimits=None,
            cwd=scratch, readonly=tools.read_only_paths(), env=_base_env(scratch))
        with open(log_path, "wb") as log:
            self._proc = subprocess.Popen(
                command.argv, cwd=command.cwd, env=command.env, stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=log, start_new_session=True, bufsize=0)
        self.scratch = scratch
        try:
            ready = self._receive(time.monotonic() + _ZYGOTE_START_S)
        except TimeoutError:
            ready = None
        if not ready:
            self.close()
            log = log_path.read_text(errors="replace")[-2000:]
            raise SandboxError(f"the Python interpreter did not start in the sandbox:\n{log}")

    def alive(self) -> bool:
        return self._proc.poll() is None

    def run(self, request: dict, timeout_s: float) -> dict | None:
        """The zygote's answer; None when it died or hung (the sample broke the harness)."""
        payload = json.dumps(request).encode()
        try:
            _write_all(self._proc.stdin.fileno(), struct.pack(">I", len(payload)) + payload)
            return self._receive(time.monotonic() + timeout_s)
        except (BrokenPipeError, TimeoutError, ConnectionError):
            _kill_sandbox(self._proc)
            return None

    def _receive(self, deadline: float) -> dict | None:
        header = self._read(4, deadline)
        if header is None:
            return None
        body = self._read(struct.unpack(">I", header)[0], deadline)
        return None if body is None else json.loads(body)

    def _read(self, size: int, deadline: float) -> bytes | None:
        stream = self._proc.stdout
        data = b""
        while len(data) < size:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([stream], [], [], left)[0]:
                raise TimeoutError
            chunk = os.read(stream.fileno(), size - len(data))
            if not chunk:
                return None
            data += chunk
        return data

    def close(self) -> None:
        """Ask the zygote to finish (end of input), and kill its sandbox if it does not."""
        self._proc.stdin.close()
        try:
            self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            _kill_sandbox(self._proc)
        self._proc.stdout.close()


def _read_all(fd: int) -> bytes:
    """Read a pipe to its end, then close it."""
    chunks = []
    try:
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


# ---------------------------------------------------------------------------------------------
# A worker slot: one uid, one folder, at most one zygote. A slot runs one program at a time.


class _Slot:
    def __init__(self, isolation: _Isolation, folder: Path, spawner: ThreadPoolExecutor) -> None:
        self.isolation = isolation
        self.folder = folder
        # bwrap --die-with-parent ties a sandbox to the *thread* that started it: a zygote must
        # be started by a thread that lives as long as it does, not by a pool thread.
        self._spawner = spawner
        self.uid = _random_uid() if isolation.as_root else None
        folder.mkdir(mode=0o700)
        self._own(folder)
        self._zygote: _Zygote | None = None

    def _own(self, path: Path) -> None:
        if self.uid is not None:
            os.chown(path, self.uid, self.uid)

    def _fresh(self, name: str) -> Path:
        path = self.folder / name
        if path.exists():
            _rmtree(path)
        path.mkdir(mode=0o700)
        self._own(path)
        return path

    def run(self, language: str, program: str, limits: Limits) -> ExecResult:
        marker = f"DSCODER-DONE-{secrets.token_hex(16)}"
        start = time.monotonic()
        if language == "python":
            outcome = self._run_python(program, marker, limits)
        else:
            outcome = self._run_built(language, program, marker, limits)
            if isinstance(outcome, ExecResult):
                return dataclasses.replace(outcome, duration_s=time.monotonic() - start)
        status = _classify(outcome)
        stderr = outcome.stderr_tail
        note = outcome.note or _note(status, outcome, limits)
        if note:
            stderr = f"{stderr}\n[dscoder] {note}" if stderr else f"[dscoder] {note}"
        return ExecResult(status, outcome.exit_code, outcome.stdout_tail, stderr,
                          time.monotonic() - start)

    # -- Python, through the warm zygote ------------------------------------------------------

    def _run_python(self, program: str, marker: str, limits: Limits) -> _Outcome:
        if self._zygote is None or not self._zygote.alive():
            scratch = self._fresh("pyscratch")
            self._zygote = self._spawner.submit(
                _Zygote, self.isolation, self.uid, scratch, self.folder / "zygote.log").result()
        request = {
            "source": languages.python_source(program, marker),
            "preload": _preloads(program),
            "marker": marker,
            "wall_s": limits.run_wall_s,
            "cpu_s": limits.cpu_s,
            "memory_mb": limits.memory_mb,
            "max_procs": limits.max_procs,
            "max_output_bytes": limits.max_output_bytes,
            "tail_bytes": _TAIL_BYTES,
            "env": _base_env(self._zygote.scratch / "work"),
        }
        answer = self._zygote.run(request, limits.run_wall_s + _ZYGOTE_GRACE_S)
        if answer is None:  # the zygote died or hung: the sample broke the harness
            self._zygote.close()
            self._zygote = None
            return _Outcome(None, False, False, False, "", "", 0.0,
                            note="the harness process stopped answering; its sandbox was killed")
        return _Outcome(**answer)

    # -- Everything else: a fresh sandbox per step ------------------------------------------

    def _run_built(self, language: str, program: str, marker: str,
                   limits: Limits) -> _Outcome | ExecResult:
        sample = self._fresh("sample")
        host_scratch = self._fresh("scratch")
        build = languages.prepare(language, program, marker, sample, limits.memory_mb)
        for name, text in build.files.items():
            (sample / name).write_text(text, encoding="utf-8", errors="replace")
            self._own(sample / name)
        readonly = [*languages.toolchain().read_only_paths(), *build.readonly]
        try:
            if build.compile is not None:
                compiled = self._step(
                    build.compile, cwd=sample, readonly=readonly, writable=[sample],
                    host_scratch=host_scratch, env=build.env, wall_s=limits.compile_wall_s,
                    rlimits=_RLimits(limits.compile_wall_s, limits.memory_mb, limits.max_procs,
                                     _COMPILE_FSIZE), marker=None)
                if compiled.timed_out or compiled.exit_code != 0:
                    status: Status = "timeout" if compiled.timed_out else "compile_error"
                    note = (f"compilation exceeded its {limits.compile_wall_s:g} s limit"
                            if compiled.timed_out else "")
                    stderr = f"{compiled.stderr_tail}\n[dscoder] {note}" if note else \
                        compiled.stderr_tail
                    return ExecResult(status, None if compiled.timed_out else compiled.exit_code,
                                      compiled.stdout_tail, stderr, compiled.duration_s)
                self._fresh("scratch")
            return self._step(
                build.run, cwd=self.isolation.scratch(host_scratch),
                readonly=[*readonly, sample], writable=[], host_scratch=host_scratch,
                env=build.env, wall_s=limits.run_wall_s,
                rlimits=_RLimits(limits.cpu_s, limits.memory_mb, limits.max_procs,
                                 limits.max_output_bytes), marker=marker)
        finally:
            _rmtree(sample)
            _rmtree(host_scratch)

    def _step(self, argv: Sequence[str], *, cwd: Path, readonly: Sequence[Path],
              writable: Sequence[Path], host_scratch: Path, env: Mapping[str, str],
              wall_s: float, rlimits: _RLimits, marker: str | None) -> _Outcome:
        scratch = self.isolation.scratch(host_scratch)
        # bwrap writes the command's exit code here only if the sandbox was set up and the
        # command ran: how a broken sandbox (a bind source gone) is told from a failing program.
        status_read, status_write = os.pipe() if self.isolation.mode == "bubblewrap" else (-1, -1)
        command = self.isolation.command(
            argv, uid=self.uid, rlimits=rlimits, cwd=cwd, readonly=readonly, writable=writable,
            env={**_base_env(scratch), **env},
            status_fd=status_write if status_write >= 0 else None)
        out_path, err_path = self.folder / "stdout", self.folder / "stderr"
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            start = time.monotonic()
            try:
                proc = subprocess.Popen(
                    command.argv, cwd=command.cwd, env=command.env, stdin=subprocess.DEVNULL,
                    stdout=out, stderr=err, start_new_session=True,
                    pass_fds=(status_write,) if status_write >= 0 else ())
            finally:
                if status_write >= 0:
                    os.close(status_write)
            try:
                code: int | None = proc.wait(timeout=wall_s)
                timed_out = False
            except subprocess.TimeoutExpired:
                code, timed_out = None, True
            finally:
                _kill_sandbox(proc)
            duration = time.monotonic() - start
        if status_read >= 0:
            status = _read_all(status_read)
            if not timed_out and b'"exit-code"' not in status:
                raise SandboxError("bubblewrap could not start the program: "
                                   + err_path.read_text(errors="replace")[-1000:])
        exceeded = max(out_path.stat().st_size, err_path.stat().st_size) >= rlimits.fsize
        stdout, seen = _read_output(out_path, marker)
        stderr, _ = _read_output(err_path, None)
        return _Outcome(code, timed_out, exceeded, seen, _tail(stdout), _tail(stderr), duration)

    def close(self) -> None:
        if self._zygote is not None:
            self._zygote.close()
            self._zygote = None


# Libraries worth loading into a zygote once a program imports them (numpy alone costs 100+ ms
# per program otherwise, and numpy.random, which numpy loads lazily, 50 ms more). An allowlist:
# the zygote imports installed code, never the program's.
_PRELOADABLE = {"numpy": ("numpy", "numpy.random"), "pandas": ("pandas",), "scipy": ("scipy",),
                "sympy": ("sympy",)}
_TOP_LEVEL_IMPORT = re.compile(r"^\s*(?:import|from)\s+(" + "|".join(_PRELOADABLE) + r")\b",
                               re.MULTILINE)


def _preloads(program: str) -> list[str]:
    names = dict.fromkeys(_TOP_LEVEL_IMPORT.findall(program))
    return [module for name in names for module in _PRELOADABLE[name]]


def _classify(outcome: _Outcome) -> Status:
    if outcome.timed_out or outcome.exit_code == 128 + signal.SIGXCPU:
        return "timeout"
    if outcome.output_exceeded or outcome.exit_code == 128 + signal.SIGXFSZ:
        return "sandbox_violation"
    if outcome.exit_code == 0 and outcome.marker_seen:
        return "passed"
    return "failed"


def _note(status: Status, outcome: _Outcome, limits: Limits) -> str:
    if status == "timeout":
        return (f"killed at the {limits.run_wall_s:g} s wall-clock limit" if outcome.timed_out
                else f"killed at the {limits.cpu_s:g} s CPU limit")
    if status == "sandbox_violation":
        return f"output exceeded the {limits.max_output_bytes} byte limit"
    if status == "failed" and outcome.exit_code == 0:
        return "exited with status 0 before its tests finished (no completion marker)"
    return ""


# ---------------------------------------------------------------------------------------------
# Public API


class Executor:
    """A pool of sandbox workers that stay warm between programs; use as a context manager.

    `map` runs (key, language, program) jobs on `workers` threads and yields (key, result) as
    each finishes. A program that breaks its sandbox only fails itself; a sandbox that cannot
    start at all raises `SandboxError`, since every result would be wrong.
    """

    def __init__(self, workers: int | None = None, limits: Limits = Limits()) -> None:
        if workers is not None and workers < 1:
            raise UserError(f"workers must be at least 1, got {workers}")
        # Two per CPU by default: a Python sample spends about as long waiting on the sandbox
        # (pipes, process wake-ups) as computing, so one per CPU leaves the CPUs half idle.
        self.workers = workers or 2 * len(os.sched_getaffinity(0))
        self.limits = limits
        self._isolation = _isolation()
        if self._isolation.mode != "bubblewrap":
            warnings.warn(_describe(self._isolation), RuntimeWarning, stacklevel=2)
        self._root = Path(tempfile.mkdtemp(prefix="dscoder-sandbox-"))
        self._root.chmod(0o711)  # sandbox users may pass through to their own slot only
        self._slots: queue.SimpleQueue[_Slot] = queue.SimpleQueue()
        self._spawner = ThreadPoolExecutor(1, thread_name_prefix="dscoder-sandbox-spawner")
        self._all_slots = [_Slot(self._isolation, self._root / f"slot-{i}", self._spawner)
                           for i in range(self.workers)]
        for slot in self._all_slots:
            self._slots.put(slot)
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="dscoder-sandbox")
        self._closed = False

    def run(self, language: str, program: str) -> ExecResult:
        """Run one program on a free worker, blocking until it is done."""
        languages.check_language(language)
        languages.check_memory(language, self.limits.memory_mb)
        slot = self._slots.get()
        try:
            return slot.run(language, program, self.limits)
        finally:
            self._slots.put(slot)

    def map(self, jobs: Iterable[tuple[str, str, str]]) -> Iterator[tuple[str, ExecResult]]:
        if self._closed:
            raise UserError("this Executor is closed")
        jobs = iter(jobs)
        pending: dict[Future, str] = {}

        def submit_next() -> None:
            for key, language, program in jobs:
                languages.check_language(language)
                languages.check_memory(language, self.limits.memory_mb)
                pending[self._pool.submit(self.run, language, program)] = key
                return

        # Keep a few jobs queued per worker, not the whole (possibly huge) iterable.
        for _ in range(2 * self.workers):
            submit_next()
        try:
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    key = pending.pop(future)
                    result = future.result()
                    submit_next()
                    yield key, result
        finally:
            for future in pending:
                future.cancel()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._pool.shutdown(wait=True, cancel_futures=True)
        for slot in self._all_slots:
            slot.close()
        self._spawner.shutdown(wait=True)  # only now: its thread is the zygotes' parent
        _rmtree(self._root)

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def run_program(language: str, program: str, limits: Limits = Limits()) -> ExecResult:
    """Run one complete program (prompt + completion + tests) in a fresh sandbox."""
    languages.check_language(language)
    with Executor(1, limits) as executor:
        return executor.run(language, program)
