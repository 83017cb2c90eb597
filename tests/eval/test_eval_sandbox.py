"""The adversarial suite: hostile programs are contained, scored as not passed, and leave nothing.

Every hostile program runs through one pooled Executor, the way an evaluation runs them; after
them all, the same workers must still pass an honest program, and once the Executor is closed no
sandbox process may remain (checked by scanning /proc).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from dscoder.errors import UserError
from dscoder.eval import sandbox
from dscoder.eval.sandbox import (
    ExecResult,
    Executor,
    Limits,
    SandboxError,
    SandboxUnavailableError,
    isolation_report,
    run_program,
)

# Tight limits keep the suite fast; the compile limit stays generous so C++ compiles on a busy
# machine.
LIMITS = Limits(compile_wall_s=120, run_wall_s=3, cpu_s=2, memory_mb=512, max_procs=32,
                max_output_bytes=1 << 16)


def _proc_status(pid: str) -> dict[str, str]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return fields


def sandbox_uids(executor: Executor) -> set[int]:
    """The uids an Executor's workers run programs as (when the tests run as root)."""
    return {slot.uid for slot in executor._all_slots if slot.uid is not None}


def leftovers(uids: set[int]) -> list[str]:
    """Processes (zombies too) run by one of `uids` or descended from this test process.

    Other programs on this machine may run sandboxes at the same time, under other uids.
    """
    me = os.getpid()
    parents, found = {}, []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = _proc_status(entry.name)
        except OSError:
            continue  # exited while we looked
        parents[int(entry.name)] = int(status["PPid"])
        if int(status["Uid"].split()[0]) in uids:
            found.append(f"{entry.name} {status['Name']} {status['State']}")
    for pid in parents:
        ancestor, hops = parents.get(pid), 0
        while ancestor and ancestor != me and hops < 64:
            ancestor, hops = parents.get(ancestor), hops + 1
        if ancestor == me:
            found.append(f"{pid} (descends from the test process)")
    return found


@pytest.fixture(scope="module")
def host_listener():
    """A TCP server on the host's loopback; no sandboxed program may reach it."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(0.2)
    accepted = []
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1], accepted
    stop.set()
    thread.join()
    server.close()


@pytest.fixture(scope="module")
def host_secret(tmp_path_factory):
    """A file only the host user may read, as ~/.ssh keys are."""
    folder = tmp_path_factory.mktemp("secret")
    secret = folder / "token"
    secret.write_text("HOST-SECRET-7f3a9c")
    secret.chmod(0o600)
    return secret


FAILED_OR_TIMEOUT = ("failed", "timeout")


def hostile_programs(port: int, secret: Path, escape: str) -> dict[str, tuple[str, str, object]]:
    """name -> (language, program, the status it must get, or a tuple of allowed ones)."""
    read_secret = (
        f"import os\nfor path in ({str(secret)!r}, '/root/.bashrc', '/etc/shadow', "
        f"{str(Path(__file__))!r}):\n"
        "    try:\n        print(open(path).read())\n"
        "    except OSError as error:\n        print('blocked', path, error.errno)\n"
        "raise SystemExit(1)\n"
    )
    return {
        "infinite loop": ("python", "while True:\n    pass\n", "timeout"),
        "infinite loop (C++)": ("cpp", "int main() { volatile long i = 0; for (;;) i++; }\n",
                                "timeout"),
        "sleep forever": ("sh", "sleep 1000\n", "timeout"),
        "fork bomb": (
            "python",
            "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n"
            "        pass\n", "timeout"),
        # contained, the bomb either runs out (bash then reaches its failing end) or keeps
        # bash retrying forks until the wall-clock limit
        "fork bomb (bash)": ("sh", ":(){ :|:& };:\nwait\nexit 1\n", FAILED_OR_TIMEOUT),
        "fork bomb (C++)": (
            "cpp", "#include <unistd.h>\nint main() { for (;;) fork(); }\n", "timeout"),
        # a growing bomb touches every page: on a busy machine the wall clock may come first
        "memory bomb": (
            "python", "chunks = []\nwhile True:\n    chunks.append(b'x' * 10 ** 8)\n",
            FAILED_OR_TIMEOUT),
        "allocation past the memory limit": (
            "python", "block = bytearray(600 * 2 ** 20)\nprint('allocated')\n", "failed"),
        "memory bomb (C++)": (
            "cpp",
            "#include <cstdlib>\n#include <cstring>\n"
            "int main() { for (;;) { char* p = (char*)std::malloc(1 << 24); if (!p) return 3;"
            " std::memset(p, 1, 1 << 24); } }\n", FAILED_OR_TIMEOUT),
        "write outside its folder": (
            "python",
            "import os\nwritten = []\n"
            f"for path in ('/etc/dscoder-escape', {escape!r}, '/var/tmp/dscoder-escape',"
            f" {str(Path(__file__).parent / 'dscoder-escape')!r}):\n"
            "    try:\n        open(path, 'w').write('x')\n        written.append(path)\n"
            "    except OSError:\n        pass\n"
            "print('wrote', written)\nraise SystemExit(1)\n", "failed"),
        "read host files": ("python", read_secret, "failed"),
        "open a network connection": (
            "python",
            f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2)\n"
            "print('connected')\n", "failed"),
        "huge output": ("python", "while True:\n    print('x' * 1000)\n", "sandbox_violation"),
        "huge output (bash)": ("sh", "yes\n", "sandbox_violation"),
        "huge file": (
            "python", "with open('big', 'wb') as f:\n    f.write(b'0' * (1 << 20))\n",
            "sandbox_violation"),
        "exit(0) before the tests": ("python", "import sys\nsys.exit(0)\nassert False\n",
                                     "failed"),
        "os._exit(0) before the tests": ("python", "import os\nos._exit(0)\n", "failed"),
        "exit(0) in C++": ("cpp", "#include <cstdlib>\nint main() { std::exit(0); }\n",
                           "failed"),
        # The harness survives (the zygote is its namespace's init, immune to its samples),
        # and a program that then claims success without running its tests fails.
        "kill the parent": (
            "python", "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\nos._exit(0)\n",
            "failed"),
        "kill the parent (bash)": ("sh", "kill -9 $PPID\nkill -9 -1\nexit 0\n", "failed"),
        "stop the parent": (
            "python", "import os, signal\nos.kill(os.getppid(), signal.SIGSTOP)\nos._exit(0)\n",
            "failed"),
        "child sleeps past the limit": (
            "python",
            "import subprocess\nsubprocess.run(['sleep', '1000'])\n", "timeout"),
        "detached child outlives the program": (
            "python",
            "import subprocess, os\n"
            "subprocess.Popen(['sleep', '1000'], start_new_session=True,"
            " stdout=subprocess.DEVNULL)\nos._exit(0)\n", "failed"),
        "detached child outlives the program (bash)": (
            "sh", "(setsid sleep 1000 &)\nnohup sleep 1000 >/dev/null 2>&1 &\nexit 0\n",
            "failed"),
    }


@pytest.fixture(scope="module")
def hostile_results(host_listener, host_secret, tmp_path_factory):
    port, _ = host_listener
    escape = str(tmp_path_factory.getbasetemp() / "dscoder-escape")
    programs = hostile_programs(port, host_secret, escape)
    with Executor(workers=2, limits=LIMITS) as executor:
        uids = sandbox_uids(executor)
        results = dict(executor.map(
            (name, language, program) for name, (language, program, _) in programs.items()))
        # The run goes on: every worker still passes an honest program afterwards.
        honest = dict(executor.map(
            (f"honest {i}", "python", "assert sum(range(4)) == 6\n") for i in range(4)))
        honest_sh = executor.run("sh", "[[ $((2 + 2)) == 4 ]]\n")
    return programs, results, honest, honest_sh, escape, uids, leftovers(uids)


HOSTILE = list(hostile_programs(0, Path("/x"), "/x"))


@pytest.mark.slow
@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_program_is_contained_and_not_passed(hostile_results, name):
    programs, results, *_ = hostile_results
    expected = programs[name][2]
    result: ExecResult = results[name]
    assert result.status != "passed"
    assert result.status in ((expected,) if isinstance(expected, str) else expected), (
        result.status, result.stderr_tail[-800:])


def test_the_run_continues_after_hostile_programs(hostile_results):
    _, _, honest, honest_sh, *_ = hostile_results
    assert {r.status for r in honest.values()} == {"passed"}
    assert honest_sh.status == "passed"


def test_nothing_is_left_running(hostile_results):
    *_, uids, left_after_close = hostile_results
    assert len(uids) == 2
    assert left_after_close == []


def test_no_file_escapes_and_no_secret_leaks(hostile_results, host_secret):
    _, results, _, _, escape, *_ = hostile_results
    assert not Path(escape).exists()
    assert not Path("/etc/dscoder-escape").exists()
    assert not Path("/var/tmp/dscoder-escape").exists()
    assert not (Path(__file__).parent / "dscoder-escape").exists()
    leaked = results["read host files"]
    assert "HOST-SECRET" not in leaked.stdout_tail + leaked.stderr_tail
    assert "import os" not in leaked.stdout_tail  # this test file is not readable either
    assert "root:" not in leaked.stdout_tail  # /etc/shadow


def test_network_connection_never_reaches_the_host(hostile_results, host_listener):
    _, accepted = host_listener
    _, results, *_ = hostile_results
    assert "connected" not in results["open a network connection"].stdout_tail
    assert accepted == []


def test_output_is_capped(hostile_results):
    _, results, *_ = hostile_results
    for name in ("huge output", "huge output (bash)"):
        assert len(results[name].stdout_tail.encode()) <= 8192
        assert "output exceeded" in results[name].stderr_tail


def test_early_exit_is_explained(hostile_results):
    _, results, *_ = hostile_results
    result = results["exit(0) before the tests"]
    assert result.exit_code == 0
    assert "before its tests finished" in result.stderr_tail


def test_programs_run_unprivileged_without_capabilities():
    program = (
        "import os\nstatus = open('/proc/self/status').read()\n"
        "caps = [l.split()[1] for l in status.splitlines() if l.startswith('CapEff')]\n"
        "print('uid', os.getuid(), 'caps', caps[0])\n"
        "print('procs', sorted(p for p in os.listdir('/proc') if p.isdigit()))\n"
    )
    result = run_program("python", program, LIMITS)
    assert result.status == "passed"
    uid_line, procs_line = result.stdout_tail.strip().splitlines()
    assert uid_line.split()[1] != "0"
    assert uid_line.endswith("caps 0000000000000000")
    # its own PID namespace: the zygote (its init) and itself
    assert len(eval(procs_line.split(" ", 1)[1])) == 2


def test_compile_and_run_limits_are_separate():
    slow_run = "#include <unistd.h>\nint main() { sleep(30); }\n"
    compile_limited = run_program("cpp", slow_run, Limits(compile_wall_s=0.01, run_wall_s=60))
    assert compile_limited.status == "timeout"
    assert "compilation exceeded" in compile_limited.stderr_tail
    run_limited = run_program("cpp", slow_run, Limits(compile_wall_s=120, run_wall_s=1))
    assert run_limited.status == "timeout"
    assert "wall-clock" in run_limited.stderr_tail


def test_passing_and_failing_programs():
    assert run_program("python", "assert 1 + 1 == 2\n").status == "passed"
    failed = run_program("python", "assert 1 + 1 == 3\n")
    assert failed.status == "failed"
    assert failed.exit_code == 1
    assert "AssertionError" in failed.stderr_tail
    compile_error = run_program("cpp", "int main() { return x; }\n", LIMITS)
    assert compile_error.status == "compile_error"
    assert "error" in compile_error.stderr_tail


def test_bad_arguments_are_user_errors():
    with pytest.raises(UserError):
        run_program("cobol", "DISPLAY 'HI'.")
    with pytest.raises(UserError):
        Limits(run_wall_s=0)
    with pytest.raises(UserError):
        Executor(workers=0)
    with pytest.raises(UserError, match="at least 1024 MB"):
        run_program("js", "1\n", Limits(memory_mb=512))


def test_isolation_report_names_bubblewrap():
    report = isolation_report()
    assert report.startswith("isolation: bubblewrap"), report
    assert "WARNING" not in report


# --- the fallback: unshare, when bubblewrap is missing or blocked --------------------------


@pytest.fixture
def fallback(monkeypatch):
    monkeypatch.setenv("DSCODER_SANDBOX", "unshare")
    return monkeypatch


def test_fallback_is_loud_and_still_contains(fallback, host_listener):
    port, accepted = host_listener
    assert "WARNING" in isolation_report()
    hostile = {
        "fork bomb": (":(){ :|:& };:\nwait\nexit 1\n", FAILED_OR_TIMEOUT),
        "network": (f"exec 3<>/dev/tcp/127.0.0.1/{port} || exit 1\necho connected\n", "failed"),
        "exit 0 early": ("exit 0\n", "failed"),
        "detached sleeper": ("(setsid sleep 1000 &)\nexit 0\n", "failed"),
        "huge output": ("yes\n", "sandbox_violation"),
        "honest": ("[[ $((6 * 7)) == 42 ]]\n", "passed"),
    }
    with pytest.warns(RuntimeWarning, match="WEAKER ISOLATION"):
        executor = Executor(workers=2, limits=LIMITS)
    with executor:
        uids = sandbox_uids(executor)
        results = dict(executor.map(
            (name, "sh", program) for name, (program, _) in hostile.items()))
    for name, (_, expected) in hostile.items():
        assert results[name].status in ((expected,) if isinstance(expected, str) else expected)
    assert accepted == []
    assert leftovers(uids) == []


def test_unknown_sandbox_mode_is_a_user_error(monkeypatch):
    monkeypatch.setenv("DSCODER_SANDBOX", "chroot")
    with pytest.raises(UserError):
        Executor(workers=1)
    assert issubclass(SandboxUnavailableError, UserError)


def test_executor_yields_results_as_they_finish():
    jobs = [("slow", "sh", "sleep 1.5\n"), ("fast", "sh", "true\n")]
    started = time.monotonic()
    with Executor(workers=2, limits=LIMITS) as executor:
        order = [key for key, _ in executor.map(jobs)]
    assert order == ["fast", "slow"]
    assert time.monotonic() - started < 30


def test_forked_python_samples_do_not_share_random_state():
    program = "import random\nimport numpy\nprint(random.random(), numpy.random.rand())\n"
    with Executor(workers=1, limits=LIMITS) as executor:
        outputs = [executor.run("python", program).stdout_tail for _ in range(3)]
    assert len(set(outputs)) == 3, outputs


def test_a_broken_sandbox_raises_instead_of_scoring(monkeypatch, tmp_path):
    """A folder the sandbox must show is gone: that is no verdict on the program."""
    from dataclasses import replace

    from dscoder.eval import languages

    broken = replace(languages.toolchain(), tsc=str(tmp_path / "gone" / "lib" / "tsc.js"))
    monkeypatch.setattr(languages, "toolchain", lambda: broken)
    with pytest.raises(SandboxError, match="could not start"):
        run_program("sh", "true\n", LIMITS)


def test_zygote_refuses_to_run_outside_its_own_pid_namespace(tmp_path):
    """Its cleanup kills every process it may signal: run anywhere but as a namespace's init,
    it must stop before that. Tried in a throwaway PID namespace, as PID 2."""
    unshare = ["unshare", "--pid", "--fork"] + ([] if os.geteuid() == 0 else ["--user"])
    done = subprocess.run(
        [*unshare, "/bin/sh", "-c", '"$@"; exit $?', "sh",
         sys.executable, "-I", "-c", sandbox._ZYGOTE_SOURCE, str(tmp_path)],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert done.returncode == 1
    assert "must run as the init of its own PID namespace" in done.stderr
