"""How to compile and run a complete program in each of the eight HumanEval languages.

A program is the benchmark prompt, the completion and the tests, already joined. This module
turns it into files plus a compile command and a run command; `dscoder.eval.sandbox` runs those
commands inside the sandbox. It never runs anything untrusted itself.

Every program gets a *completion marker*: a random line the harness prints only after the tests
have run to their end. Exit status 0 alone is not enough, because a completion that calls
`exit(0)` (or `System.exit(0)`, `process.exit(0)`, `os._exit(0)`) before the tests would pass.
Where a language allows it, the marker is printed by a wrapper *around* the tests' entry point
(C++ via the linker's `--wrap=main`, Java and C# via an extra entry class), so a program whose
`main` returns early still passes only if `main` itself ran to its end; elsewhere it is the last
statement of the file. The marker defends against early exits and against killing the harness;
it is not a secret from a program that reads its own source on purpose.
"""

from __future__ import annotations

import atexit
import functools
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from dscoder.errors import UserError

LANGUAGES = ("python", "cpp", "java", "php", "ts", "cs", "sh", "js")

# The TypeScript compiler the harnesses were written against; the npm default moved past it.
TYPESCRIPT_MAJOR = "5"

_INSTALL_HINT = "run scripts/install-runtimes.sh (it installs every evaluation runtime)"


class RuntimeMissingError(UserError):
    """A language's compiler or interpreter is not installed on this machine."""


@dataclass(frozen=True)
class Build:
    """What the sandbox needs to compile and run one program.

    `files` are written into the sample folder; `compile` runs there with that folder writable;
    `run` runs with the sample folder read-only and a private scratch folder as the working
    directory. Paths in the commands are absolute, valid both inside and outside the sandbox.
    """

    files: Mapping[str, str]
    compile: tuple[str, ...] | None
    run: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    readonly: tuple[Path, ...] = ()  # host folders the steps read, beyond the toolchain's


@dataclass(frozen=True)
class Toolchain:
    """Absolute paths of the runtimes on this machine; None where one is missing."""

    python: str
    gxx: str | None
    javac: str | None
    java: str | None
    javatuples: str | None
    php: str | None
    mcs: str | None
    mono: str | None
    node: str | None
    tsc: str | None
    bash: str | None

    def read_only_paths(self) -> list[Path]:
        """Folders the sandbox must show (read-only) for these tools to work.

        Tools under /usr are covered by the sandbox's system binds; anything else (a pyenv or
        venv interpreter, an nvm node, the project-local TypeScript) is added here.
        """
        paths: list[Path] = [Path(sys.prefix), Path(sys.base_prefix)]
        for tool in (self.python, self.gxx, self.javac, self.java, self.php, self.mcs,
                     self.mono, self.node, self.bash):
            if tool:
                paths.append(Path(os.path.realpath(tool)).parent.parent)
        if self.tsc:
            paths.append(Path(self.tsc).parent.parent)  # the typescript package folder
        if self.javatuples:
            paths.append(Path(os.path.realpath(self.javatuples)).parent)
        return _outermost(p for p in paths if not _is_system_path(p))


def _is_system_path(path: Path) -> bool:
    return path == Path("/usr") or Path("/usr") in path.parents or path == Path("/")


def _outermost(paths) -> list[Path]:
    """Drop duplicates and paths inside another listed path."""
    unique = sorted({p.resolve() for p in paths})
    kept: list[Path] = []
    for path in unique:
        if not any(k == path or k in path.parents for k in kept):
            kept.append(path)
    return kept


def _runtimes_dir() -> Path:
    """Where scripts/install-runtimes.sh puts npm packages (override: DSCODER_RUNTIMES)."""
    override = os.environ.get("DSCODER_RUNTIMES")
    if override:
        return Path(override)
    return Path(__file__).resolve().parents[3] / ".runtimes"  # the repository root


def _find_tsc() -> str | None:
    local = _runtimes_dir() / "node_modules" / "typescript" / "lib" / "tsc.js"
    if local.is_file():
        return str(local)
    on_path = shutil.which("tsc")
    if on_path:
        candidate = Path(os.path.realpath(on_path)).parent.parent / "lib" / "tsc.js"
        if candidate.is_file():
            return str(candidate)
    return None


def _find_javatuples() -> str | None:
    override = os.environ.get("DSCODER_JAVATUPLES")
    if override:
        return override
    for jar in (Path("/usr/share/java/javatuples.jar"),
                *sorted(Path("/usr/share/java").glob("javatuples*.jar"))):
        if jar.is_file():
            return str(jar)
    return None


@functools.lru_cache(maxsize=1)
def toolchain() -> Toolchain:
    """Find the runtimes once per process."""
    return Toolchain(
        python=sys.executable,
        gxx=shutil.which("g++"),
        javac=shutil.which("javac"),
        java=shutil.which("java"),
        javatuples=_find_javatuples(),
        php=shutil.which("php"),
        mcs=shutil.which("mcs"),
        mono=shutil.which("mono"),
        node=shutil.which("node"),
        tsc=_find_tsc(),
        bash=shutil.which("bash"),
    )


def missing_runtimes(language: str) -> list[str]:
    """The tools `language` needs that this machine lacks (empty when it can run)."""
    tools = toolchain()
    needed = {
        "python": {"python": tools.python},
        "cpp": {"g++": tools.gxx},
        "java": {"javac": tools.javac, "java": tools.java, "javatuples": tools.javatuples},
        "php": {"php": tools.php},
        "ts": {"node": tools.node, f"typescript@{TYPESCRIPT_MAJOR}": tools.tsc},
        "cs": {"mcs": tools.mcs, "mono": tools.mono},
        "sh": {"bash": tools.bash},
        "js": {"node": tools.node},
    }[check_language(language)]
    return [name for name, path in needed.items() if not path]


def check_language(language: str) -> str:
    if language not in LANGUAGES:
        raise UserError(f"unknown language {language!r}; expected one of {', '.join(LANGUAGES)}")
    return language


# The JVM (javac too) and V8 reserve this much address space just to start, with the heap and
# thread flags set below; under a smaller RLIMIT_AS every program would fail, whatever it is.
MIN_MEMORY_MB = {"java": 1024, "ts": 1024, "js": 1024}


def check_memory(language: str, memory_mb: int) -> None:
    need = MIN_MEMORY_MB.get(language, 0)
    if memory_mb < need:
        raise UserError(f"{language} needs a memory limit of at least {need} MB (its runtime "
                        f"reserves that much address space at start), got {memory_mb} MB")


def _require(language: str) -> Toolchain:
    missing = missing_runtimes(language)
    if missing:
        raise RuntimeMissingError(f"{language} needs {', '.join(missing)}: {_INSTALL_HINT}")
    return toolchain()


# ---------------------------------------------------------------------------------------------
# Python runs in the sandbox's warm interpreter (see sandbox.py), so it needs only its source.


def python_source(program: str, marker: str) -> str:
    # os.write, not print: the program may have replaced or closed sys.stdout.
    return f'{program}\n__import__("os").write(1, b"\\n{marker}\\n")\n'


# ---------------------------------------------------------------------------------------------
# C++: g++ -std=c++17, with a precompiled <bits/stdc++.h> (every MultiPL-E prompt includes it;
# it cuts a compile from ~1.8 s to ~0.4 s).

_CPP_FLAGS = ("-std=c++17",)
_STDCXX_INCLUDE = re.compile(r"#\s*include\s*<bits/stdc\+\+\.h>")
_pch_lock = threading.Lock()
_pch_dir: Path | None = None


def _cpp_pch(gxx: str) -> Path | None:
    """Build the precompiled header once per process; None when g++ cannot build it."""
    global _pch_dir
    with _pch_lock:
        if _pch_dir is None or not (_pch_dir / "dscoder_pch.h.gch").is_file():  # none, or deleted
            folder = Path(tempfile.mkdtemp(prefix="dscoder-pch-"))
            folder.chmod(0o755)  # the sandbox's unprivileged user reads it
            header = folder / "dscoder_pch.h"
            header.write_text("#include <bits/stdc++.h>\n")
            built = subprocess.run(
                [gxx, *_CPP_FLAGS, "-x", "c++-header", str(header), "-o", f"{header}.gch"],
                capture_output=True, timeout=300,
            )
            if built.returncode != 0:
                shutil.rmtree(folder, ignore_errors=True)
                return None
            (folder / "dscoder_pch.h.gch").chmod(0o644)
            atexit.register(shutil.rmtree, folder, True)
            _pch_dir = folder
        return _pch_dir


def _cpp(program: str, marker: str, sample: Path, memory_mb: int) -> Build:
    tools = _require("cpp")
    # The linker routes the C runtime's call to main through __wrap_main, which prints the
    # marker only when the real main returned 0: exit(0) inside the completion skips it.
    wrapper = (
        '\nextern "C" int __real_main(int, char**);\n'
        'extern "C" int __wrap_main(int argc, char** argv) {\n'
        "    int status = __real_main(argc, argv);\n"
        f'    if (status == 0) __builtin_printf("%s", "\\n{marker}\\n");\n'
        "    return status;\n"
        "}\n"
    )
    argv = [tools.gxx, *_CPP_FLAGS]
    readonly: tuple[Path, ...] = ()
    if _STDCXX_INCLUDE.search(program):
        pch = _cpp_pch(tools.gxx)
        if pch is not None:
            argv += ["-include", str(pch / "dscoder_pch.h")]
            readonly = (pch,)
    argv += [str(sample / "program.cpp"), "-o", str(sample / "program"), "-Wl,--wrap=main"]
    if "openssl" in program:  # HumanEval_162 (md5) links OpenSSL
        argv += ["-lcrypto", "-lssl"]
    return Build(
        files={"program.cpp": program + wrapper},
        compile=tuple(argv),
        run=(str(sample / "program"),),
        readonly=readonly,
    )


# ---------------------------------------------------------------------------------------------
# Java: javac, then java -ea with javatuples. The JVM is told it has two CPUs and a bounded heap
# so that its thread count and address space fit the sandbox's process and memory limits.

_FIRST_CLASS = re.compile(
    r"^[ \t]*(?:(?:public|final|abstract|static|sealed|partial|internal)\s+)*class\s+(\w+)",
    re.MULTILINE,
)


def _main_class(program: str, language: str) -> str:
    found = _FIRST_CLASS.search(program)
    if not found:
        raise UserError(f"{language} program has no class declaration to take main from")
    return found.group(1)


def _jvm_flags(memory_mb: int) -> list[str]:
    return [
        f"-Xmx{max(64, memory_mb // 4)}m",
        "-Xss8m",
        "-XX:ActiveProcessorCount=2",
        "-XX:+UseSerialGC",
        "-XX:TieredStopAtLevel=1",  # C1 only: HumanEval tests are short, startup dominates
        "-XX:ReservedCodeCacheSize=64m",
        "-XX:CompressedClassSpaceSize=64m",
        "-XX:-UsePerfData",  # no hsperfdata files in /tmp
    ]


def _java(program: str, marker: str, sample: Path, memory_mb: int) -> Build:
    tools = _require("java")
    main_class = _main_class(program, "java")
    entry = (
        "\nclass DscoderEntry {\n"
        "    public static void main(String[] args) throws Throwable {\n"
        f"        {main_class}.main(args);\n"
        f'        System.out.print("\\n{marker}\\n");\n'
        "        System.out.flush();\n"
        "    }\n"
        "}\n"
    )
    classpath = f"{sample}:{tools.javatuples}"
    source = sample / f"{main_class}.java"
    return Build(
        files={source.name: program + entry},
        compile=(
            tools.javac, *(f"-J{flag}" for flag in _jvm_flags(memory_mb)),
            "-encoding", "UTF-8", "-nowarn", "-cp", classpath, "-d", str(sample), str(source),
        ),
        run=(tools.java, *_jvm_flags(memory_mb), "-ea", "-cp", classpath, "DscoderEntry"),
    )


# ---------------------------------------------------------------------------------------------
# C#: mcs -d:DEBUG, then mono. Mono's default trace listener ignores a failed Debug.Assert, so
# the entry class installs one that fails the run (the public harness greps stderr instead).


def _cs(program: str, marker: str, sample: Path, memory_mb: int) -> Build:
    tools = _require("cs")
    main_class = _main_class(program, "cs")
    entry = (
        "\nclass DscoderEntry {\n"
        "    sealed class FailFast : System.Diagnostics.TraceListener {\n"
        "        public override void Write(string message) {}\n"
        "        public override void WriteLine(string message) {}\n"
        "        public override void Fail(string message) { Fail(message, null); }\n"
        "        public override void Fail(string message, string detail) {\n"
        '            System.Console.Error.WriteLine("Debug.Assert failed: " + message + " "'
        " + detail);\n"
        "            System.Console.Error.WriteLine(System.Environment.StackTrace);\n"
        "            System.Environment.Exit(1);\n"
        "        }\n"
        "    }\n"
        "    static int Main(string[] args) {\n"
        "        System.Diagnostics.Debug.Listeners.Clear();\n"
        "        System.Diagnostics.Debug.Listeners.Add(new FailFast());\n"
        f"        var main = typeof({main_class}).GetMethod(\"Main\",\n"
        "            System.Reflection.BindingFlags.Static | System.Reflection.BindingFlags.Public"
        " | System.Reflection.BindingFlags.NonPublic);\n"
        '        if (main == null) throw new System.MissingMethodException("no Main");\n'
        "        object status;\n"
        "        try {\n"
        "            status = main.Invoke(null, main.GetParameters().Length == 0 ? null"
        " : new object[] { args });\n"
        "        } catch (System.Reflection.TargetInvocationException e) {\n"
        "            System.Runtime.ExceptionServices.ExceptionDispatchInfo"
        ".Capture(e.InnerException).Throw();\n"
        "            throw;\n"
        "        }\n"
        "        if (status is int && (int)status != 0) return (int)status;\n"
        f'        System.Console.Out.Write("\\n{marker}\\n");\n'
        "        System.Console.Out.Flush();\n"
        "        return 0;\n"
        "    }\n"
        "}\n"
    )
    return Build(
        files={"program.cs": program + entry},
        compile=(
            tools.mcs, "-d:DEBUG", "-r:System.Numerics.dll", "-main:DscoderEntry",
            f"-out:{sample / 'program.exe'}", str(sample / "program.cs"),
        ),
        run=(tools.mono, str(sample / "program.exe")),
    )


# ---------------------------------------------------------------------------------------------
# Interpreted languages: the marker is the file's last statement.


def _php(program: str, marker: str, sample: Path, memory_mb: int) -> Build:
    tools = _require("php")
    # A file that ends in HTML mode (after `?>`) needs a fresh `<?php` for our statement.
    tail = "" if program.rfind("?>") <= program.rfind("<?php") else "\n<?php"
    source = f'{program}{tail}\necho "\\n{marker}\\n";\n'
    return Build(
        files={"program.php": source},
        compile=None,
        run=(
            tools.php, "-n",  # -n: no php.ini, so host configuration cannot change behaviour
            "-d", "display_errors=stderr", "-d", "error_reporting=E_ALL",
            "-d", f"memory_limit={memory_mb}M",
            str(sample / "program.php"),
        ),
    )


def _sh(program: str, marker: str, sample: Path, memory_mb: int) -> Build:
    tools = _require("sh")
    return Build(
        files={"program.sh": f"{program}\nprintf '\\n%s\\n' '{marker}'\n"},
        compile=None,
        run=(tools.bash, str(sample / "program.sh")),
    )


def _node_flags(memory_mb: int) -> list[str]:
    # V8 sizes its heap from the machine, not from RLIMIT_AS; --v8-pool-size bounds its threads.
    return [f"--max-old-space-size={max(64, memory_mb // 2)}", "--v8-pool-size=2"]


def _js(program: str, marker: str, sample: Path, memory_mb: int) -> Build:
    tools = _require("js")
    return Build(
        files={"program.js": f'{program}\nconsole.log("\\n{marker}");\n'},
        compile=None,
        run=(tools.node, *_node_flags(memory_mb), str(sample / "program.js")),
    )


def _ts(program: str, marker: str, sample: Path, memory_mb: int) -> Build:
    tools = _require("ts")
    # --skipLibCheck only skips type-checking TypeScript's own .d.ts files (a 2.5x saving);
    # the program itself is checked in full, and a type error fails it as the harnesses do.
    return Build(
        files={"program.ts": f'{program}\nconsole.log("\\n{marker}");\n'},
        compile=(
            tools.node, *_node_flags(memory_mb), tools.tsc,
            "--target", "esnext", "--skipLibCheck", "--pretty", "false",
            str(sample / "program.ts"),
        ),
        run=(tools.node, *_node_flags(memory_mb), str(sample / "program.js")),
    )


_BUILDERS = {"cpp": _cpp, "java": _java, "cs": _cs, "php": _php, "sh": _sh, "js": _js, "ts": _ts}


def prepare(language: str, program: str, marker: str, sample: Path, memory_mb: int) -> Build:
    """The files and commands that compile and run `program` from the folder `sample`.

    Python is not prepared here: the sandbox runs it in a warm interpreter (`python_source`).
    """
    check_language(language)
    check_memory(language, memory_mb)
    if language == "python":
        raise ValueError("python programs run through python_source, not prepare")
    return _BUILDERS[language](program, marker, sample, memory_mb)
