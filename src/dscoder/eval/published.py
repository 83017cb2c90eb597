"""DeepSeek-Coder's published pass@1 (%, greedy decoding), for the comparison tables.

Source: the DeepSeek-Coder README's evaluation section and the paper (arXiv 2401.14196), as
condensed in docs/SPEC.md section 6. Keys are the benchmark names of summary.json.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PublishedRow:
    model: str
    kind: str  # "base" or "instruct": which of our runs it is fair to set beside
    scores: dict[str, float]  # benchmark name -> pass@1 in percent


_HUMANEVAL_ORDER = ("python", "cpp", "java", "php", "ts", "cs", "sh", "js")


def _multilingual(values: tuple[float, ...], mbpp: float) -> dict[str, float]:
    scores = {f"humaneval-{language}": value for language, value in zip(_HUMANEVAL_ORDER, values)}
    scores["mbpp"] = mbpp
    return scores


PUBLISHED: tuple[PublishedRow, ...] = (
    PublishedRow("DSC-Base 1.3B", "base", {
        **_multilingual((34.8, 31.1, 32.3, 24.2, 28.9, 36.7, 10.1, 28.6), 46.2), "ds1000": 16.2}),
    PublishedRow("DSC-Base 6.7B", "base", {
        **_multilingual((49.4, 50.3, 43.0, 38.5, 49.7, 50.0, 28.5, 48.4), 60.6),
        "ds1000": 30.5,
        "gsm8k": 43.2, "math": 19.2, "gsm-hard": 40.3, "svamp": 58.4,
        "tabmwp": 67.9, "asdiv": 67.2, "mawps": 87.0,
    }),
    PublishedRow("DSC-Base 33B", "base", {
        **_multilingual((56.1, 58.4, 51.9, 44.1, 52.8, 51.3, 32.3, 55.3), 66.0), "ds1000": 40.2}),
    PublishedRow("DSC-Instruct 1.3B", "instruct",
                 _multilingual((65.2, 45.3, 51.9, 45.3, 59.7, 55.1, 12.7, 52.2), 49.4)),
    PublishedRow("DSC-Instruct 6.7B", "instruct",
                 _multilingual((78.6, 63.4, 68.4, 68.9, 67.2, 72.8, 36.7, 72.7), 65.4)),
    PublishedRow("DSC-Instruct 33B", "instruct",
                 _multilingual((79.3, 68.9, 73.4, 72.7, 67.9, 74.1, 43.0, 73.9), 70.0)),
)
