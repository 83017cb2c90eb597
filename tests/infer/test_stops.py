"""Stop strings across arbitrary piece boundaries, and text that is held back then released."""

from __future__ import annotations

import random

from dscoder.infer.stops import StopStringMatcher


def run(stops: list[str], pieces: list[str]) -> tuple[list[str], bool]:
    matcher = StopStringMatcher(stops)
    out = []
    for piece in pieces:
        text, stopped = matcher.push(piece)
        out.append(text)
        if stopped:
            return out, True
    out.append(matcher.flush())
    return out, False


def test_a_stop_string_split_over_pieces_is_found_and_cut():
    out, stopped = run(["\ndef"], ["x = 1\n", "d", "ef g():"])
    assert stopped and "".join(out) == "x = 1"


def test_a_possible_stop_prefix_is_held_then_released():
    matcher = StopStringMatcher(["STOP"])
    assert matcher.push("abcST") == ("abc", False)
    assert matcher.push("O") == ("", False)
    assert matcher.push("x") == ("STOx", False)
    assert matcher.push("ST") == ("", False)
    assert matcher.flush() == "ST"


def test_the_first_stop_to_complete_wins():
    out, stopped = run(["world", "lo"], ["hello world"])
    assert stopped and out == ["hel"]
    # "abc" starts first but "b" completes first, whatever the pieces.
    assert run(["abc", "b"], ["abc"]) == (["a"], True)
    assert run(["abc", "b"], ["a", "b", "c"]) == (["", "a"], True)


def test_without_stops_text_passes_through():
    assert run([], ["a", "b"]) == (["a", "b", ""], False)


def test_random_splits_agree_with_cutting_the_whole_text():
    rng = random.Random(0)
    alphabet = "ab\n "
    for _ in range(500):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30)))
        stops = ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 4))) for _ in range(rng.randint(1, 3))]
        cuts = sorted(rng.sample(range(len(text) + 1), k=min(len(text) + 1, rng.randint(0, 6))))
        pieces = [text[i:j] for i, j in zip([0, *cuts], [*cuts, len(text)], strict=True)]
        # Reading character by character, the first stop string to complete ends the text.
        found = [(text.find(s) + len(s), text.find(s)) for s in stops if s in text]
        expected = text[: min(found)[1]] if found else text
        out, stopped = run(stops, pieces)
        assert ("".join(out), stopped) == (expected, bool(found)), (text, stops, pieces)
