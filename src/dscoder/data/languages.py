"""Which language a file is written in, decided from its name alone, and how to comment a line in it.

The languages are those the DeepSeek-Coder README lists under "Supported Programming Languages"
(89 entries; the paper speaks of 87 languages in its Table 1, see docs/data-rules.md). Names are
display names in the paper's spelling ("C#", "C++", "Protocol Buffer"). The extension table is
this project's choice, modelled on GitHub Linguist's common extensions; where Linguist gives an
extension to several languages we keep one owner (`.h` is C, `.m` is MATLAB, `.pl` is Perl, `.v`
is Verilog) so that detection never depends on file content.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Language:
    name: str
    extensions: tuple[str, ...]
    filenames: tuple[str, ...] = ()
    comment: tuple[str, str] = ("# ", "")  # prefix and suffix of a one-line comment


_HASH = ("# ", "")
_SLASH = ("// ", "")
_DASH = ("-- ", "")
_SEMI = ("; ", "")
_PERCENT = ("% ", "")
_ML = ("(* ", " *)")
_BLOCK = ("/* ", " */")
_XML = ("<!-- ", " -->")

_ALL = (
    Language("Ada", (".adb", ".ads", ".ada"), comment=_DASH),
    Language("Agda", (".agda",), comment=_DASH),
    Language("Alloy", (".als",), comment=_SLASH),
    Language("ANTLR", (".g4", ".g"), comment=_SLASH),
    Language("AppleScript", (".applescript",), comment=_DASH),
    Language("Assembly", (".asm", ".s", ".nasm"), comment=_SEMI),
    Language("Augeas", (".aug",), comment=_ML),
    Language("AWK", (".awk",), comment=_HASH),
    Language("Batchfile", (".bat", ".cmd"), comment=("REM ", "")),
    Language("Bluespec", (".bsv",), comment=_SLASH),
    Language("C", (".c", ".h"), comment=_SLASH),
    Language("C#", (".cs", ".csx"), comment=_SLASH),
    Language("Clojure", (".clj", ".cljs", ".cljc", ".edn"), comment=_SEMI),
    Language("CMake", (".cmake",), ("CMakeLists.txt",), comment=_HASH),
    Language("CoffeeScript", (".coffee",), ("Cakefile",), comment=_HASH),
    Language("Common Lisp", (".lisp", ".lsp", ".cl", ".asd"), comment=_SEMI),
    Language(
        "C++",
        (".cpp", ".cc", ".cxx", ".c++", ".hpp", ".hh", ".hxx", ".h++", ".ipp", ".tpp", ".inl"),
        comment=_SLASH,
    ),
    Language("CSS", (".css",), comment=_BLOCK),
    Language("CUDA", (".cu", ".cuh"), comment=_SLASH),
    Language("Dart", (".dart",), comment=_SLASH),
    Language("Dockerfile", (".dockerfile",), ("Dockerfile", "Containerfile"), comment=_HASH),
    Language("Elixir", (".ex", ".exs"), comment=_HASH),
    Language("Elm", (".elm",), comment=_DASH),
    Language("Emacs Lisp", (".el",), (".emacs",), comment=_SEMI),
    Language("Erlang", (".erl", ".hrl"), comment=_PERCENT),
    Language("F#", (".fs", ".fsi", ".fsx"), comment=_SLASH),
    Language("Fortran", (".f", ".for", ".f77", ".f90", ".f95", ".f03", ".f08"), comment=("! ", "")),
    Language("GLSL", (".glsl", ".vert", ".frag", ".geom", ".comp", ".tesc", ".tese"), comment=_SLASH),
    Language("Go", (".go",), comment=_SLASH),
    Language("Groovy", (".groovy", ".gradle", ".gvy"), ("Jenkinsfile",), comment=_SLASH),
    Language("Haskell", (".hs",), comment=_DASH),
    Language("HTML", (".html", ".htm", ".xhtml"), comment=_XML),
    Language("Idris", (".idr",), comment=_DASH),
    Language("Isabelle", (".thy",), comment=_ML),
    Language("Java", (".java",), comment=_SLASH),
    Language("Java Server Pages", (".jsp", ".jspf"), comment=("<%-- ", " --%>")),
    Language("JavaScript", (".js", ".mjs", ".cjs", ".jsx"), comment=_SLASH),
    # JSON has no comments; "//" is what JSONC and JSON5 readers accept.
    Language("JSON", (".json",), comment=_SLASH),
    Language("Julia", (".jl",), comment=_HASH),
    # A notebook is JSON on disk, hence the same choice as JSON.
    Language("Jupyter Notebook", (".ipynb",), comment=_SLASH),
    Language("Kotlin", (".kt", ".kts"), comment=_SLASH),
    Language("Lean", (".lean",), comment=_DASH),
    Language("Literate Agda", (".lagda",), comment=_DASH),
    Language("Literate CoffeeScript", (".litcoffee",), comment=_HASH),
    Language("Literate Haskell", (".lhs",), comment=_DASH),
    Language("Lua", (".lua",), comment=_DASH),
    Language("Makefile", (".mk", ".mak"), ("Makefile", "GNUmakefile"), comment=_HASH),
    Language("Maple", (".mpl", ".maple"), comment=_HASH),
    Language("Markdown", (".md", ".markdown", ".mdown", ".mkd"), comment=_XML),
    Language("Mathematica", (".wl", ".wls", ".nb"), comment=_ML),
    Language("MATLAB", (".m",), comment=_PERCENT),
    Language("OCaml", (".ml", ".mli"), comment=_ML),
    Language("Pascal", (".pas", ".pp", ".dpr", ".lpr"), comment=_ML),
    Language("Perl", (".pl", ".pm", ".t"), comment=_HASH),
    # A PHP file starts in HTML mode, where "//" would be page text; this comment is PHP's own.
    Language("PHP", (".php", ".phtml", ".php3", ".php4", ".php5", ".phpt"), comment=("<?php // ", " ?>")),
    Language("PowerShell", (".ps1", ".psm1", ".psd1"), comment=_HASH),
    Language("Prolog", (".prolog", ".yap"), comment=_PERCENT),
    Language("Protocol Buffer", (".proto",), comment=_SLASH),
    Language("Python", (".py", ".pyi", ".pyw"), comment=_HASH),
    Language("R", (".r",), comment=_HASH),
    Language("Racket", (".rkt",), comment=_SEMI),
    Language("reStructuredText", (".rst", ".rest"), comment=(".. ", "")),
    Language("RMarkdown", (".rmd",), comment=_XML),
    Language("Ruby", (".rb", ".rake", ".gemspec"), ("Gemfile", "Rakefile"), comment=_HASH),
    Language("Rust", (".rs",), comment=_SLASH),
    Language("SAS", (".sas",), comment=_BLOCK),
    Language("Scala", (".scala", ".sc"), comment=_SLASH),
    Language("Scheme", (".scm", ".ss", ".sld", ".sls"), comment=_SEMI),
    Language("Shell", (".sh", ".bash", ".zsh", ".ksh"), (".bashrc", ".bash_profile", ".zshrc", ".profile"), comment=_HASH),
    Language("Smalltalk", (".st",), comment=('"', '"')),
    Language("Solidity", (".sol",), comment=_SLASH),
    Language("SPARQL", (".sparql", ".rq"), comment=_HASH),
    Language("SQL", (".sql",), comment=_DASH),
    Language("Stan", (".stan",), comment=_SLASH),
    Language("Standard ML", (".sml", ".sig", ".fun"), comment=_ML),
    Language("Stata", (".do", ".ado"), comment=_SLASH),
    Language("SystemVerilog", (".sv", ".svh"), comment=_SLASH),
    Language("Tcl", (".tcl",), comment=_HASH),
    Language("Tcsh", (".tcsh", ".csh"), comment=_HASH),
    Language("TeX", (".tex", ".sty", ".cls", ".ltx", ".dtx"), comment=_PERCENT),
    Language("Thrift", (".thrift",), comment=_SLASH),
    Language("TypeScript", (".ts", ".tsx", ".mts", ".cts"), comment=_SLASH),
    Language("Verilog", (".v", ".vh"), comment=_SLASH),
    Language("VHDL", (".vhd", ".vhdl"), comment=_DASH),
    Language("Visual Basic", (".vb", ".bas", ".vbs", ".vba"), comment=("' ", "")),
    Language("XSLT", (".xsl", ".xslt"), comment=_XML),
    Language("Yacc", (".y", ".yy", ".yacc"), comment=_BLOCK),
    Language("YAML", (".yml", ".yaml"), comment=_HASH),
    Language("Zig", (".zig",), comment=_SLASH),
)

LANGUAGES: dict[str, Language] = {language.name: language for language in _ALL}

# The languages whose files are ordered by their imports and joined into repository-level samples.
DEPENDENCY_LANGUAGES = frozenset({"Python", "Java", "C#", "C", "C++"})


def _index(keys_of) -> dict[str, Language]:
    index: dict[str, Language] = {}
    for language in _ALL:
        for key in keys_of(language):
            owner = index.setdefault(key.lower(), language)
            if owner is not language:
                raise AssertionError(f"{key} is claimed by both {owner.name} and {language.name}")
    return index


_BY_EXTENSION = _index(lambda language: language.extensions)
_BY_FILENAME = _index(lambda language: language.filenames)


def detect_language(path: str) -> Language | None:
    """The language of the file at `path` (any separator), or None for files we do not keep.

    An exact file name (`Makefile`, `CMakeLists.txt`) wins over the extension; both compare
    case-insensitively, so `README.MD` and `makefile` are recognised too.
    """
    name = path.replace("\\", "/").rsplit("/", 1)[-1].lower()
    by_name = _BY_FILENAME.get(name)
    if by_name is not None:
        return by_name
    dot = name.rfind(".")
    if dot <= 0:  # no extension, or a dot file such as ".gitignore"
        return None
    return _BY_EXTENSION.get(name[dot:])


def path_comment(language: Language, path: str) -> str:
    """One comment line naming `path` in `language`'s syntax, without the trailing newline."""
    # A line break in a (legal but odd) file name would end the comment early.
    one_line = " ".join(path.splitlines())
    prefix, suffix = language.comment
    return f"{prefix}{one_line}{suffix}"
