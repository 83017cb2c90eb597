from collections import Counter

import pytest

from dscoder.data.languages import DEPENDENCY_LANGUAGES, LANGUAGES, Language, detect_language, path_comment

# The DeepSeek-Coder README's "Supported Programming Languages" list (the source of LANGUAGES).
README_LANGUAGE_COUNT = 89


def test_every_readme_language_is_known_once_by_its_display_name():
    assert len(LANGUAGES) == README_LANGUAGE_COUNT
    for name in ("Python", "Java", "C++", "C#", "C", "JavaScript", "TypeScript", "Go", "Rust", "PHP", "Markdown", "JSON", "YAML", "HTML", "XSLT"):
        assert LANGUAGES[name].name == name
    assert DEPENDENCY_LANGUAGES == {"Python", "Java", "C#", "C", "C++"}
    assert DEPENDENCY_LANGUAGES <= LANGUAGES.keys()


def test_no_extension_or_file_name_belongs_to_two_languages():
    extensions = Counter(ext for language in LANGUAGES.values() for ext in language.extensions)
    names = Counter(name.lower() for language in LANGUAGES.values() for name in language.filenames)
    assert [ext for ext, count in extensions.items() if count > 1] == []
    assert [name for name, count in names.items() if count > 1] == []
    for language in LANGUAGES.values():
        assert language.extensions or language.filenames
        for ext in language.extensions:
            assert ext.startswith(".") and ext == ext.lower()
            assert detect_language(f"dir/file{ext}") is language


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("pkg/utils.py", "Python"),
        ("stubs/os.pyi", "Python"),
        ("src/Main.JAVA", "Java"),
        ("src\\engine\\core.cpp", "C++"),
        ("include/list.h", "C"),
        ("app/Program.cs", "C#"),
        ("build/Makefile", "Makefile"),
        ("makefile", "Makefile"),
        ("cmake/CMakeLists.txt", "CMake"),
        ("Dockerfile", "Dockerfile"),
        ("home/.bashrc", "Shell"),
        ("README.MD", "Markdown"),
        ("style/page.xslt", "XSLT"),
        ("config.yml", "YAML"),
        ("notes.txt", None),
        ("photo.png", None),
        (".gitignore", None),
        ("LICENSE", None),
    ],
)
def test_detect_language_by_name_then_extension(path, expected):
    language = detect_language(path)
    assert (language.name if language else None) == expected


@pytest.mark.parametrize(
    ("name", "path", "expected"),
    [
        ("Python", "pkg/utils.py", "# pkg/utils.py"),
        ("Java", "src/A.java", "// src/A.java"),
        ("C", "lib/x.c", "// lib/x.c"),
        ("HTML", "index.html", "<!-- index.html -->"),
        ("SQL", "db/schema.sql", "-- db/schema.sql"),
        ("OCaml", "main.ml", "(* main.ml *)"),
        ("CSS", "site.css", "/* site.css */"),
    ],
)
def test_path_comment_uses_the_language_comment_syntax(name, path, expected):
    assert path_comment(LANGUAGES[name], path) == expected


def test_path_comment_is_always_one_line():
    for language in LANGUAGES.values():
        comment = path_comment(language, "odd\nname.txt")
        assert "\n" not in comment and "odd name.txt" in comment


def test_language_defaults_to_hash_comments():
    language = Language("Toy", (".toy",))
    assert path_comment(language, "a.toy") == "# a.toy"
