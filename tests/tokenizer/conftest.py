"""Shared fixtures: a small tokenizer trained on a few standard-library modules."""

from __future__ import annotations

import sysconfig
from pathlib import Path

import pytest

from dscoder.tokenizer import Tokenizer, train_tokenizer

STDLIB = Path(sysconfig.get_paths()["stdlib"])
TRAINING_MODULES = (
    "argparse.py", "textwrap.py", "difflib.py", "csv.py", "string.py", "json/decoder.py",
)
TEST_VOCAB_SIZE = 600

# Code and prose that stress the byte-level path: CJK, Hangul, Cyrillic, emoji (4-byte UTF-8),
# combining marks, tabs, CRLF, NUL, and the Latin letters whose byte-level characters the
# released tokenizer keeps as added tokens (ü, ÿ, À, õ).
VARIED_TEXTS = (
    "def add(a, b):\n    return a + b  # 加法 2024\n",
    "    if (x >= 10 && y != 0) { printf(\"%d\\n\", x / y); }\r\n",
    "# 注释: 计算斐波那契数列 fib(30) = 832040\nclass Fib:\n\tpass\n",
    "Привет, мир! 한국어 테스트 カタカナ ひらがな",
    "emoji 🚀🔥 and accents: café, naïve, e\u0301, über, ÿes, À la, õ\n",
    "null\x00byte and \u200bzero width\u200d joiner",
    "   leading spaces\n\n\n\ttabs\t\ttrailing   \n",
    "SELECT * FROM t WHERE id IN (1, 2, 3);\n-- 1234567890\n",
    "",
)


@pytest.fixture(scope="session")
def varied_texts() -> tuple[str, ...]:
    return VARIED_TEXTS


@pytest.fixture(scope="session")
def stdlib_texts() -> list[str]:
    return [(STDLIB / name).read_text(encoding="utf-8") for name in TRAINING_MODULES]


@pytest.fixture(scope="session")
def tokenizer_dir(stdlib_texts: list[str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("tokenizer")
    train_tokenizer(stdlib_texts, TEST_VOCAB_SIZE).save(directory)
    return directory


@pytest.fixture(scope="session")
def tokenizer(tokenizer_dir: Path) -> Tokenizer:
    return Tokenizer.from_dir(tokenizer_dir)


@pytest.fixture(scope="session")
def hf_tokenizer(tokenizer_dir: Path):
    transformers = pytest.importorskip("transformers")
    return transformers.AutoTokenizer.from_pretrained(str(tokenizer_dir))
