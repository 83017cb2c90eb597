"""Dependency parsing and ordering (SPEC 1.2) for Python, Java, C#, C and C++."""

from __future__ import annotations

import json
import pathlib
import random
import textwrap

import pytest

from dscoder.data.deps import (
    dependency_order,
    file_dependencies,
    order_components,
    transitive_dependencies,
    weakly_connected_components,
)
from dscoder.errors import UserError

# ---------------------------------------------------------------------------------------------
# Repositories of each language built from an abstract graph: module name -> names it imports.


def python_repo(graph: dict[str, list[str]]) -> dict[str, tuple[str, str]]:
    files = {}  # `app` is a namespace package: no __init__.py to join every component
    for name, deps in graph.items():
        lines = [
            f"from app import {dep}" if i % 2 else f"import app.{dep}" for i, dep in enumerate(deps)
        ]
        files[f"app/{name}.py"] = ("Python", "\n".join(lines) + f"\n\ndef {name}():\n    pass\n")
    return files


def java_repo(graph: dict[str, list[str]]) -> dict[str, tuple[str, str]]:
    files = {}
    for name, deps in graph.items():
        imports = "".join(f"import com.example.{dep}.{dep.upper()};\n" for dep in deps)
        fields = "".join(f"  private {dep.upper()} {dep};\n" for dep in deps)
        header = f"package com.example.{name};\n\n{imports}\n"
        source = f"{header}public class {name.upper()} {{\n{fields}}}\n"
        files[f"src/main/java/com/example/{name}/{name.upper()}.java"] = ("Java", source)
    return files


def csharp_repo(graph: dict[str, list[str]]) -> dict[str, tuple[str, str]]:
    files = {}
    for name, deps in graph.items():
        usings = "".join(f"using Example.{dep.upper()};\n" for dep in deps)
        body = f"namespace Example.{name.upper()}\n{{\n    public class Thing{name} {{ }}\n}}\n"
        source = f"using System;\n{usings}\n{body}"
        files[f"src/{name.upper()}.cs"] = ("C#", source)
    return files


def c_repo(graph: dict[str, list[str]]) -> dict[str, tuple[str, str]]:
    files = {}
    for name, deps in graph.items():
        includes = "".join(f'#include "{dep}.h"\n' for dep in deps)
        files[f"src/{name}.h"] = ("C", f"#include <stdio.h>\n{includes}\nint {name}(void);\n")
    return files


def cpp_repo(graph: dict[str, list[str]]) -> dict[str, tuple[str, str]]:
    files = {}
    for name, deps in graph.items():
        includes = "".join(f'#include "{dep}.hpp"\n' for dep in deps)
        files[f"lib/{name}.hpp"] = (
            "C++",
            f"#pragma once\n#include <vector>\n{includes}\nclass {name.upper()} {{}};\n",
        )
    return files


def python_path(name: str) -> str:
    return f"app/{name}.py"


REPOS = {
    "Python": (python_repo, python_path),
    "Java": (java_repo, lambda n: f"src/main/java/com/example/{n}/{n.upper()}.java"),
    "C#": (csharp_repo, lambda n: f"src/{n.upper()}.cs"),
    "C": (c_repo, lambda n: f"src/{n}.h"),
    "C++": (cpp_repo, lambda n: f"lib/{n}.hpp"),
}

CHAIN = {"a": ["b"], "b": ["c"], "c": []}
DIAMOND = {"a": ["b", "c"], "b": ["d"], "c": ["d"], "d": []}
CYCLE = {"a": ["b"], "b": ["c"], "c": ["a"]}


def ordered_names(language: str, graph: dict[str, list[str]], seed: int) -> list[list[str]]:
    """The repository's order, mapped back to graph names."""
    build, path_of = REPOS[language]
    names = {path_of(name): name for name in graph}
    return [[names[p] for p in component] for component in dependency_order(build(graph), seed)]


def assert_smallest_in_degree_order(dependencies: dict[str, set[str]], order: list[str]) -> None:
    """Each emitted file had the fewest not-yet-emitted dependencies among those left."""
    remaining = set(order)
    for path in order:
        degree = {p: len((dependencies.get(p, set()) - {p}) & remaining) for p in remaining}
        assert degree[path] == min(degree.values()), (path, degree)
        remaining.remove(path)


# ---------------------------------------------------------------------------------------------
# Shapes in every language


@pytest.mark.parametrize("language", sorted(REPOS))
def test_chain_emits_dependencies_first(language):
    build, path_of = REPOS[language]
    dependencies = file_dependencies(build(CHAIN))
    assert dependencies[path_of("a")] == {path_of("b")}
    assert dependencies[path_of("c")] == set()
    assert ordered_names(language, CHAIN, seed=0) == [["c", "b", "a"]]


@pytest.mark.parametrize("language", sorted(REPOS))
def test_diamond_puts_base_first_and_apex_last_with_seeded_middle(language):
    orders = {tuple(ordered_names(language, DIAMOND, seed)[0]) for seed in range(16)}
    assert orders == {("d", "b", "c", "a"), ("d", "c", "b", "a")}
    assert ordered_names(language, DIAMOND, seed=3) == ordered_names(language, DIAMOND, seed=3)


@pytest.mark.parametrize("language", sorted(REPOS))
def test_cycle_resolves_to_a_seeded_rotation(language):
    rotations = {("b", "a", "c"), ("a", "c", "b"), ("c", "b", "a")}
    orders = {tuple(ordered_names(language, CYCLE, seed)[0]) for seed in range(16)}
    assert orders <= rotations
    assert len(orders) > 1  # the seed decides where the cycle is cut
    assert ordered_names(language, CYCLE, seed=7) == ordered_names(language, CYCLE, seed=7)


@pytest.mark.parametrize("language", sorted(REPOS))
def test_unrelated_files_form_separate_components(language):
    graph = {"a": ["b"], "b": [], "c": ["d"], "d": [], "e": []}
    components = ordered_names(language, graph, seed=0)
    assert sorted(components) == [["b", "a"], ["d", "c"], ["e"]]


# ---------------------------------------------------------------------------------------------
# Python


def repo(language: str, files: dict[str, str]) -> dict[str, tuple[str, str]]:
    """A one-language repository; sources are written indented, as they read in the test."""
    return {path: (language, textwrap.dedent(text)) for path, text in files.items()}


def test_python_ignores_imports_in_strings_and_comments():
    source = """\
        \"\"\"Usage:
        import b
        \"\"\"
        # import c
        text = "from b import x"
        import d
    """
    deps = file_dependencies(repo("Python", {"a.py": source, "b.py": "", "c.py": "", "d.py": ""}))
    assert deps["a.py"] == {"d.py"}


def test_python_relative_imports_and_packages():
    mod = """\
        from . import helper
        from .helper import name
        from ..util import f
        from .. import VERSION
    """
    deps = file_dependencies(
        repo(
            "Python",
            {
                "pkg/__init__.py": "VERSION = 1\n",
                "pkg/util.py": "",
                "pkg/sub/__init__.py": "from .. import util\n",
                "pkg/sub/mod.py": mod,
                "pkg/sub/helper.py": "from ... import outside\n",
            },
        )
    )
    assert deps["pkg/sub/__init__.py"] == {"pkg/util.py"}
    assert deps["pkg/sub/mod.py"] == {"pkg/sub/helper.py", "pkg/util.py", "pkg/__init__.py"}
    assert deps["pkg/sub/helper.py"] == set()  # climbs above the repository


def test_python_absolute_forms_resolve_modules_or_their_deepest_existing_prefix():
    main = """\
        import pkg.sub.mod
        from pkg.sub import mod2, CONSTANT
        import pkg.missing
        import os, numpy
    """
    deps = file_dependencies(
        repo(
            "Python",
            {
                "main.py": main,
                "pkg/__init__.py": "",
                "pkg/sub/__init__.py": "CONSTANT = 1\n",
                "pkg/sub/mod.py": "",
                "pkg/sub/mod2.py": "",
            },
        )
    )
    assert deps["main.py"] == {
        "pkg/sub/mod.py",
        "pkg/sub/mod2.py",
        "pkg/sub/__init__.py",  # CONSTANT
        "pkg/__init__.py",  # pkg.missing
    }


def test_python_imports_in_functions_type_checking_and_python2_files_count():
    a = """\
        from typing import TYPE_CHECKING
        if TYPE_CHECKING:
            import b

        def f():
            import c
    """
    old = """\
        print "python 2"
        import b
    """
    deps = file_dependencies(repo("Python", {"a.py": a, "old.py": old, "b.py": "", "c.py": ""}))
    assert deps["a.py"] == {"b.py", "c.py"}
    assert deps["old.py"] == {"b.py"}


def test_python_src_layout_and_script_directories_act_as_roots():
    deps = file_dependencies(
        repo(
            "Python",
            {
                "src/mylib/__init__.py": "from mylib.core import run\n",
                "src/mylib/core.py": "",
                "tests/test_core.py": "import mylib.core\nimport helpers\n",
                "tests/helpers.py": "",
                "scripts/json.py": "",
                "tools/report.py": "import json\n",  # the stdlib's, not scripts/json.py
            },
        )
    )
    assert deps["src/mylib/__init__.py"] == {"src/mylib/core.py"}
    assert deps["tests/test_core.py"] == {"src/mylib/core.py", "tests/helpers.py"}
    assert deps["tools/report.py"] == set()


def test_python_from_package_import_prefers_submodule_over_package():
    files = {"a/__init__.py": "", "a/b.py": "", "c.py": "from a import b\n"}
    assert file_dependencies(repo("Python", files))["c.py"] == {"a/b.py"}


def test_python_stdlib_json_and_email_edges_and_order():
    stdlib = pathlib.Path(json.__file__).parent.parent
    files = {
        path.relative_to(stdlib).as_posix(): ("Python", path.read_text(encoding="utf-8"))
        for package in ("json", "email")
        for path in (stdlib / package).rglob("*.py")
    }
    dependencies = file_dependencies(files)
    assert {"json/decoder.py", "json/encoder.py"} <= dependencies["json/__init__.py"]
    assert "json/scanner.py" in dependencies["json/decoder.py"]
    assert "email/mime/nonmultipart.py" in dependencies["email/mime/text.py"]
    assert "email/_parseaddr.py" in dependencies["email/utils.py"]
    components = order_components(dependencies, seed=0)
    position = {path: i for component in components for i, path in enumerate(component)}
    component_of = {path: i for i, component in enumerate(components) for path in component}
    assert component_of["json/scanner.py"] == component_of["json/__init__.py"]
    assert position["json/scanner.py"] < position["json/decoder.py"] < position["json/__init__.py"]
    for component in components:
        assert_smallest_in_degree_order(dependencies, component)


# ---------------------------------------------------------------------------------------------
# Java


def test_java_imports_by_package_declaration_wildcards_static_and_nested():
    strings = """\
        package com.shop.util;
        public class Strings {
            public static String trim(String s) { return s; }
            public static class Builder { }
        }
    """
    app = """\
        package com.shop;
        import com.shop.model.*;
        import static com.shop.util.Strings.trim;
        // import com.shop.Ghost;
        import java.util.List;
        public class App { String s = "import com.shop.Ghost;"; }
    """
    lines = """\
        package com.other;
        import com.shop.model.Line;
        import com.shop.util.Strings.Builder;
        class Lines { }
    """
    deps = file_dependencies(
        repo(
            "Java",
            {
                # The declared package, not the path, decides where a type lives.
                "model/User.java": "package com.shop.model;\npublic class User { }\n",
                "model/Order.java": "package com.shop.model;\nclass Order { }\nclass Line { }\n",
                "util/Strings.java": strings,
                "App.java": app,
                "Ghost.java": "package com.shop;\nclass Ghost { }\n",
                "Lines.java": lines,
            },
        )
    )
    assert deps["App.java"] == {"model/User.java", "model/Order.java", "util/Strings.java"}
    assert deps["Lines.java"] == {"model/Order.java", "util/Strings.java"}


def test_java_same_package_references_need_no_import():
    service = """\
        package p;
        class Service {
            Repo repo = new Repo();
            void run() { Util.log(); }
            @Marker void f() { }
        }
    """
    other = """\
        package q;
        class Other { /* Repo */ String repo = "Repo"; }
    """
    deps = file_dependencies(
        repo(
            "Java",
            {
                "a/Service.java": service,
                "a/Repo.java": "package p;\nclass Repo { }\n",
                "b/Util.java": "package p;\nclass Util { static void log() { } }\n",
                "b/Marker.java": "package p;\n@interface Marker { }\n",
                "c/Other.java": other,
            },
        )
    )
    assert deps["a/Service.java"] == {"a/Repo.java", "b/Util.java", "b/Marker.java"}
    assert deps["c/Other.java"] == set()


# ---------------------------------------------------------------------------------------------
# C#


def test_csharp_usings_map_to_namespace_declarations():
    order = """\
        namespace Shop {
            namespace Models { public partial class Order { } }
        }
    """
    program = """\
        using System;
        using Shop.Models;
        // using Shop.Ghosts;
        namespace Shop.App { class Program { string s = "using Shop.Ghosts;"; } }
    """
    alias = """\
        using static Shop.Util.Text;
        using O = Shop.Models.Order;
        class Alias { }
    """
    deps = file_dependencies(
        repo(
            "C#",
            {
                "Models/User.cs": "namespace Shop.Models;\npublic class User { }\n",
                "Models/Order.cs": order,
                "Models/Order.Lines.cs": "namespace Shop.Models { partial class Order { } }\n",
                "Util/Text.cs": "namespace Shop.Util { static class Text { } class Other { } }\n",
                "Program.cs": program,
                "Ghosts/Ghost.cs": "namespace Shop.Ghosts { class Ghost { } }\n",
                "Alias.cs": alias,
                "Inner.cs": "namespace Shop { using Util; class Inner { } }\n",
            },
        )
    )
    assert deps["Program.cs"] == {"Models/User.cs", "Models/Order.cs", "Models/Order.Lines.cs"}
    assert deps["Alias.cs"] == {"Util/Text.cs", "Models/Order.cs", "Models/Order.Lines.cs"}
    assert deps["Inner.cs"] == {"Util/Text.cs"}  # `using Util;` inside `namespace Shop`


def test_csharp_same_and_enclosing_namespace_types_need_no_using():
    service = """\
        namespace Shop.Core {
            class Service { Repo repo; void F() { Log.Write(); } }
        }
    """
    elsewhere = """\
        namespace Other { class Elsewhere { /* Repo */ string s = "Repo"; } }
    """
    deps = file_dependencies(
        repo(
            "C#",
            {
                "Service.cs": service,
                "Repo.cs": "namespace Shop.Core;\nclass Repo { }\n",
                "Log.cs": "namespace Shop { static class Log { } }\n",
                "Elsewhere.cs": elsewhere,
            },
        )
    )
    assert deps["Service.cs"] == {"Repo.cs", "Log.cs"}
    assert deps["Elsewhere.cs"] == set()


# ---------------------------------------------------------------------------------------------
# C and C++


def test_c_includes_relative_root_include_dirs_and_suffixes():
    socket_c = """\
        #include "socket.h"
        #include "../util/log.h"
        #include "config.h"
        #include <mylib/api.h>
        #include <stdio.h>
    """
    socket_h = """\
        /* #include "ghost.h" */
        const char *s = "#include \\"ghost.h\\"";
    """
    log_h = """\
        #ifdef DEBUG
        #include "util/trace.h"
        #endif
    """
    files = {
        "src/net/socket.c": socket_c,
        "src/net/socket.h": socket_h,
        "src/util/log.h": log_h,
        "src/util/trace.h": "",
        "config.h": "",
        "include/mylib/api.h": "",
        "ghost.h": "",
    }
    deps = file_dependencies(repo("C", files))
    assert deps["src/net/socket.c"] == {
        "src/net/socket.h",
        "src/util/log.h",
        "config.h",
        "include/mylib/api.h",
    }
    assert deps["src/net/socket.h"] == set()  # includes in comments and strings do not count
    assert deps["src/util/log.h"] == {"src/util/trace.h"}  # found by its path suffix


def test_cpp_includes_prefer_the_including_directory_and_reach_c_headers():
    files = {
        "a/widget.cpp": ("C++", '#include "common.hpp"\n#include "legacy.h"\n'),
        "a/common.hpp": ("C++", ""),
        "b/common.hpp": ("C++", ""),
        "third_party/include/legacy.h": ("C", ""),
        "README.md": ("Markdown", '#include "a/common.hpp"\n'),
    }
    deps = file_dependencies(files)
    assert deps["a/widget.cpp"] == {"a/common.hpp", "third_party/include/legacy.h"}
    assert "README.md" not in deps


def test_cpp_includes_count_inside_code_but_not_inside_comments_or_literals():
    table = """\
        enum class Op {
        #include "ops.def"
        };
        class Registry {
        #include "members.inc"
        };
        const char *doc = R"(
        #include "raw.h"
        )";
        // a comment continued \\
        #include "continued.h"
        /*
        #include "block.h"
        */
    """
    names = ("ops.def", "members.inc", "raw.h", "continued.h", "block.h")
    continued_only = '// a comment continued \\\n#include "continued.h"\n#include "ops.def"\n'
    files = repo(
        "C++",
        {"table.cpp": table, "continued.cpp": continued_only, **{name: "" for name in names}},
    )
    deps = file_dependencies(files)
    assert deps["table.cpp"] == {"ops.def", "members.inc"}
    assert deps["continued.cpp"] == {"ops.def"}


# ---------------------------------------------------------------------------------------------
# Ordering


def test_order_components_is_independent_of_mapping_order():
    edges = {"a": {"b", "c"}, "b": {"d"}, "c": {"d"}, "d": set(), "e": {"f"}, "f": {"e"}}
    reversed_edges = dict(reversed(list(edges.items())))
    for seed in range(5):
        assert order_components(edges, seed) == order_components(reversed_edges, seed)


def test_order_components_follows_smallest_in_degree_on_random_graphs():
    rng = random.Random(0)
    nodes = [f"f{i:03d}" for i in range(300)]
    dependencies = {node: {rng.choice(nodes) for _ in range(rng.randint(0, 3))} for node in nodes}
    components = order_components(dependencies, seed=1)
    assert sorted(p for c in components for p in c) == sorted(nodes)
    assert [min(c) for c in components] == sorted(min(c) for c in components)
    for component in components:
        assert_smallest_in_degree_order(dependencies, component)


def test_order_components_handles_self_loops_and_dependencies_that_are_not_keys():
    assert order_components({"a": {"a", "lib"}, "z": set()}, seed=0) == [["lib", "a"], ["z"]]


def test_weakly_connected_components_ignore_direction():
    components = weakly_connected_components({"a": {"b"}, "c": {"b"}, "d": set()})
    assert components == [["a", "b", "c"], ["d"]]


def test_transitive_dependencies_follow_chains_and_cycles():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert transitive_dependencies(graph, "a") == {"b", "c"}
    assert transitive_dependencies(graph, "d") == {"a", "b", "c"}


@pytest.mark.parametrize("path", ["/abs/a.py", "../a.py", "pkg/./a.py"])
def test_paths_must_be_repository_relative(path):
    with pytest.raises(UserError):
        file_dependencies({path: ("Python", "")})
