"""A small instruction set written by code: Python tasks with correct, checked answers.

The embedded demo instruction-tunes on it, so the project needs no downloaded data. Each task
family draws names, constants and phrasings from a seeded generator; every answer is a short
function in a ```python block, and every task carries a check (assertions on the function)
that the tests run against the answer.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ASK = (
    "Write a Python function `{name}({args})` that {what}.",
    "Implement `{name}({args})` in Python: it {what}.",
    "Create a function named `{name}` taking `{args}` that {what}.",
    "Please write `{name}({args})`, a function that {what}.",
    "In Python, define `{name}({args})` which {what}.",
)
INTRO = ("Here is the function:", "Sure.", "This does it:", "Here is an implementation:", "")


@dataclass(frozen=True)
class Task:
    instruction: str
    output: str
    check: str  # a Python assertion that holds when the answer's code is correct

    def record(self) -> dict[str, str]:
        return {"instruction": self.instruction, "output": self.output}


def _answer(rng: random.Random, code: str) -> str:
    intro = rng.choice(INTRO)
    block = f"```python\n{code.strip()}\n```"
    return f"{intro}\n\n{block}" if intro else block


def _body(*lines: str) -> str:
    """A function body from its lines, indented one level."""
    return "".join(f"    {line}\n" for line in lines)


def _function_task(rng: random.Random, names: tuple[str, ...], args: str, what: str, body: str,
                   example: str, expected: object) -> Task:
    """A task whose check calls the function on `example` (argument source) for `expected`;
    half of the instructions quote that example."""
    name = rng.choice(names)
    instruction = rng.choice(ASK).format(name=name, args=args, what=what)
    call = f"{name}({example})"
    if rng.random() < 0.5:
        instruction += f" For example, `{call}` returns `{expected!r}`."
    code = f"def {name}({args}):\n{body}"
    return Task(instruction, _answer(rng, code), f"assert {call} == {expected!r}")


def _two_numbers(rng: random.Random) -> Task:
    a, b = rng.randint(-50, 50), rng.randint(1, 50)
    names, what, expr, expected = rng.choice([
        (("add", "plus", "sum_two"), "returns the sum of a and b", "a + b", a + b),
        (("subtract", "minus", "difference"), "returns a minus b", "a - b", a - b),
        (("multiply", "times", "product"), "returns the product of a and b", "a * b", a * b),
        (("larger", "maximum", "bigger"), "returns the larger of a and b", "a if a > b else b", max(a, b)),
        (("smaller", "minimum", "lesser"), "returns the smaller of a and b", "a if a < b else b", min(a, b)),
        (("average", "mean_of_two", "midpoint"), "returns the mean of a and b", "(a + b) / 2", (a + b) / 2),
        (("remainder", "modulo", "mod"), "returns the remainder of a divided by b", "a % b", a % b),
    ])
    return _function_task(rng, names, "a, b", what, _body(f"return {expr}"), f"{a}, {b}", expected)


def _list_task(rng: random.Random) -> Task:
    values = [rng.randint(-20, 40) for _ in range(rng.randint(3, 7))]
    names, what, body, expected = rng.choice([
        (("total", "list_sum", "sum_list"), "returns the sum of the numbers in a list",
         _body("result = 0", "for x in numbers:", "    result += x", "return result"), sum(values)),
        (("largest", "list_max", "find_max"), "returns the largest number in a non-empty list",
         _body("best = numbers[0]", "for x in numbers[1:]:", "    if x > best:", "        best = x",
               "return best"), max(values)),
        (("smallest", "list_min", "find_min"), "returns the smallest number in a non-empty list",
         _body("best = numbers[0]", "for x in numbers[1:]:", "    if x < best:", "        best = x",
               "return best"), min(values)),
        (("count_even", "evens", "number_of_evens"), "counts the even numbers in a list",
         _body("return sum(1 for x in numbers if x % 2 == 0)"), sum(x % 2 == 0 for x in values)),
        (("only_positive", "positives", "keep_positive"), "returns the positive numbers of a list, in order",
         _body("return [x for x in numbers if x > 0]"), [x for x in values if x > 0]),
        (("squares", "square_all", "squared"), "returns the squares of the numbers in a list",
         _body("return [x * x for x in numbers]"), [x * x for x in values]),
        (("reverse_list", "reversed_copy", "backwards"), "returns a reversed copy of a list",
         _body("return numbers[::-1]"), values[::-1]),
        (("sort_numbers", "sorted_copy", "ascending"), "returns the numbers of a list in ascending order",
         _body("return sorted(numbers)"), sorted(values)),
        (("unique", "dedupe", "distinct"), "returns the distinct numbers of a list in first-seen order",
         _body("seen = []", "for x in numbers:", "    if x not in seen:", "        seen.append(x)",
               "return seen"), list(dict.fromkeys(values))),
    ])
    return _function_task(rng, names, "numbers", what, body, repr(values), expected)


def _string_task(rng: random.Random) -> Task:
    word = rng.choice(["level", "python", "racecar", "banana", "Deep Seek", "hello world", "noon", "coder"])
    names, what, body, expected = rng.choice([
        (("reverse_string", "reverse", "backwards_text"), "returns the string s reversed",
         _body("return s[::-1]"), word[::-1]),
        (("count_vowels", "vowels", "vowel_count"), "counts the vowels (a, e, i, o, u) in the string s",
         _body('return sum(1 for c in s.lower() if c in "aeiou")'), sum(c in "aeiou" for c in word.lower())),
        (("is_palindrome", "palindrome", "reads_same_backwards"),
         "returns True when the string s reads the same backwards", _body("return s == s[::-1]"),
         word == word[::-1]),
        (("shout", "to_upper", "upper"), "returns the string s in upper case",
         _body("return s.upper()"), word.upper()),
        (("count_words", "word_count", "words"), "returns the number of words in the string s",
         _body("return len(s.split())"), len(word.split())),
        (("title_case", "capitalize_words", "titled"), "capitalizes the first letter of every word in s",
         _body('return " ".join(w[:1].upper() + w[1:] for w in s.split())'),
         " ".join(w[:1].upper() + w[1:] for w in word.split())),
    ])
    return _function_task(rng, names, "s", what, body, repr(word), expected)


def _number_task(rng: random.Random) -> Task:
    n = rng.randint(2, 12)
    names, what, body, expected = rng.choice([
        (("factorial", "fact", "factorial_of"), "returns n! (the factorial of n)",
         _body("result = 1", "for i in range(2, n + 1):", "    result *= i", "return result"),
         math.factorial(n)),
        (("fibonacci", "fib", "nth_fibonacci"),
         "returns the n-th Fibonacci number, with fib(0) = 0 and fib(1) = 1",
         _body("a, b = 0, 1", "for _ in range(n):", "    a, b = b, a + b", "return a"), _fib(n)),
        (("is_prime", "prime", "check_prime"), "returns True when n is a prime number",
         _body("if n < 2:", "    return False", "i = 2", "while i * i <= n:", "    if n % i == 0:",
               "        return False", "    i += 1", "return True"), all(n % d for d in range(2, n))),
        (("sum_to", "triangle", "sum_up_to"), "returns the sum of the integers from 1 to n",
         _body("return n * (n + 1) // 2"), n * (n + 1) // 2),
        (("sum_of_squares", "squares_sum", "square_total"), "returns 1*1 + 2*2 + ... + n*n",
         _body("return sum(i * i for i in range(1, n + 1))"), sum(i * i for i in range(1, n + 1))),
        (("is_even", "even", "check_even"), "returns True when n is even",
         _body("return n % 2 == 0"), n % 2 == 0),
        (("to_fahrenheit", "celsius_to_fahrenheit", "c_to_f"), "converts n degrees Celsius to Fahrenheit",
         _body("return n * 9 / 5 + 32"), n * 9 / 5 + 32),
    ])
    return _function_task(rng, names, "n", what, body, str(n), expected)


def _dict_task(rng: random.Random) -> Task:
    words = rng.sample(["apple", "pear", "fig", "kiwi", "plum", "lime", "date"], 4)
    text = " ".join(rng.choice(words) for _ in range(6))
    counts: dict[str, int] = {}
    for w in text.split():
        counts[w] = counts.get(w, 0) + 1
    a, b = {words[0]: 1, words[1]: 2}, {words[1]: 3, words[2]: 4}
    names, args, what, body, example, expected = rng.choice([
        (("word_counts", "count_words_in", "frequencies"), "text",
         "returns a dictionary mapping each word of text to how often it occurs",
         _body("counts = {}", "for word in text.split():", "    counts[word] = counts.get(word, 0) + 1",
               "return counts"), repr(text), counts),
        (("merge", "merge_dicts", "combined"), "a, b",
         "returns a new dictionary with the items of a and b, b winning on equal keys",
         _body("result = dict(a)", "result.update(b)", "return result"), f"{a!r}, {b!r}", {**a, **b}),
        (("invert", "swap_keys_values", "inverted"), "d",
         "returns a dictionary whose keys are the values of d and whose values are its keys",
         _body("return {value: key for key, value in d.items()}"), repr(a), {v: k for k, v in a.items()}),
        (("common", "intersection", "shared_items"), "a, b",
         "returns the items of list a that also occur in list b, in the order of a",
         _body("return [x for x in a if x in b]"), f"{words[:3]!r}, {words[1:]!r}", words[1:3]),
    ])
    return _function_task(rng, names, args, what, body, example, expected)


def _fib(n: int) -> int:
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return a


FAMILIES: tuple[Callable[[random.Random], Task], ...] = (
    _two_numbers, _list_task, _string_task, _number_task, _dict_task)


def generate_tasks(count: int, seed: int = 0) -> list[Task]:
    """`count` tasks with distinct instructions, families in turn, deterministic for a seed."""
    rng = random.Random(seed)
    tasks: list[Task] = []
    seen: set[str] = set()
    attempts = 0
    while len(tasks) < count and attempts < 50 * count:
        attempts += 1
        task = FAMILIES[len(tasks) % len(FAMILIES)](rng)
        if task.instruction not in seen:
            seen.add(task.instruction)
            tasks.append(task)
    return tasks


def write_instructions(path: Path, count: int, seed: int = 0) -> Path:
    """The tasks as instruction-tuning JSONL (`instruction`, `output`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(task.record()) + "\n" for task in generate_tasks(count, seed)]
    path.write_text("".join(lines), encoding="utf-8")
    return path
