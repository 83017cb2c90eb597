"""Stop strings found in streamed text, across token boundaries, and cut from the output.

Text arrives in pieces (one per token, and a token may end in the middle of a stop string), so
the matcher holds back any tail that could still grow into a stop string. Nothing it releases
ever contains a stop string or a part of one that later completes. Generation stops at the
first stop string to be completed (reading the text character by character), and the output
ends where that stop string begins.
"""

from __future__ import annotations

from collections.abc import Sequence


class StopStringMatcher:
    """Feed text with `push`; it returns the text that is safe to emit and whether a stop
    string was found (everything from the stop string on is dropped). `flush` releases the
    held-back tail when generation ends for another reason."""

    def __init__(self, stops: Sequence[str]) -> None:
        self.stops = tuple(stop for stop in stops if stop)
        self._held = ""
        self.stopped = False

    def push(self, text: str) -> tuple[str, bool]:
        if self.stopped:
            return "", True
        if not self.stops:
            return text, False
        buffer = self._held + text
        # The stop string that completes first is the one generation stops at, so the
        # result does not depend on where the pieces were split.
        found = [(start + len(stop), start) for stop in self.stops if (start := buffer.find(stop)) >= 0]
        if found:
            self.stopped = True
            self._held = ""
            return buffer[: min(found)[1]], True
        keep = self._partial_stop_length(buffer)
        self._held = buffer[len(buffer) - keep:]
        return buffer[: len(buffer) - keep], False

    def flush(self) -> str:
        held, self._held = self._held, ""
        return held

    def _partial_stop_length(self, buffer: str) -> int:
        """Length of the longest tail of `buffer` that is a proper prefix of some stop string."""
        longest = 0
        for stop in self.stops:
            for length in range(min(len(stop) - 1, len(buffer)), longest, -1):
                if buffer.endswith(stop[:length]):
                    longest = length
                    break
        return longest
