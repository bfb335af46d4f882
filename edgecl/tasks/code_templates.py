"""The easy code tier's data: parametrised templates and single functions, and their levels.

Each template is (name with {k}, parameter values, argument names, description, body, test
inputs); each single is (name, argument names, description, body, test inputs). The reference
body computes the expected outputs (edgecl.tasks.code_tasks builds the items).
"""

from __future__ import annotations

import string

INTS = [(0,), (1,), (-3,), (10,), (57,)]
STRS = [("",), ("a",), ("hello",), ("Banana",), ("level up",), ("abracadabra",)]
LISTS = [([],), ([1],), ([3, -1, 2],), ([5, 5, 0, 12],), ([-4, 7, 19, 2, 8],)]
NONEMPTY = [([1],), ([3, -1, 2],), ([5, 5, 0, 12],), ([-4, 7, 19, 2, 8],), ([-2, -9],)]
LETTERS = string.ascii_lowercase
# The easy tier's levels, by function name (a template's name without its parameter).
LEVELS = {
    "1-arith": ("add", "subtract", "times", "power", "mod", "at_least", "divisible_by",
                "is_greater_than", "multiply", "is_even", "absolute_value", "square"),
    "2-string": ("repeat", "count_letter", "starts_with", "ends_with", "last", "reverse_string",
                 "to_upper", "remove_spaces", "is_palindrome"),
    "3-list": ("first", "greater_than", "scale_by", "max_of_list", "min_of_list", "sum_of_list",
               "list_length", "last_item", "average"),
    "4-loop": ("count_vowels", "word_count", "factorial", "count_above", "sum_of_multiples_of",
               "sum_of_powers"),
}  # fmt: skip

# (name template, parameter values, argument names, description, body, test inputs)
TEMPLATES: list[tuple[str, list, str, str, str, list]] = [
    ("add_{k}", list(range(1, 31)), "x", "returns x plus {k}", "return x + {k}", INTS),
    ("subtract_{k}", list(range(1, 31)), "x", "returns x minus {k}", "return x - {k}", INTS),
    ("times_{k}", list(range(2, 26)), "x", "returns x multiplied by {k}", "return x * {k}", INTS),
    ("power_{k}", list(range(2, 7)), "x", "returns x to the power {k}", "return x ** {k}", INTS),
    (
        "mod_{k}",
        list(range(2, 21)),
        "x",
        "returns the remainder of x divided by {k}",
        "return x % {k}",
        INTS,
    ),
    (
        "at_least_{k}",
        list(range(0, 20)),
        "x",
        "returns the larger of x and {k}",
        "return max(x, {k})",
        INTS,
    ),
    (
        "divisible_by_{k}",
        list(range(2, 16)),
        "x",
        "returns True if x is divisible by {k}, else False",
        "return x % {k} == 0",
        [(0,), (7,), (12,), (30,), (-15,), (60,)],
    ),
    (
        "is_greater_than_{k}",
        list(range(0, 21)),
        "x",
        "returns True if x is greater than {k}",
        "return x > {k}",
        [(-1,), (0,), (5,), (10,), (20,), (21,)],
    ),
    (
        "repeat_{k}_times",
        list(range(2, 10)),
        "s",
        "returns the string s repeated {k} times",
        "return s * {k}",
        STRS,
    ),
    (
        "count_letter_{k}",
        list(LETTERS),
        "s",
        "returns how many times the letter '{k}' occurs in the string s",
        "return s.count({k!r})",
        STRS + [("{k}{k}x{k}",)],
    ),
    (
        "starts_with_{k}",
        list(LETTERS),
        "s",
        "returns True if the string s starts with '{k}'",
        "return s.startswith({k!r})",
        STRS + [("{k}bc",)],
    ),
    (
        "ends_with_{k}",
        list(LETTERS),
        "s",
        "returns True if the string s ends with '{k}'",
        "return s.endswith({k!r})",
        STRS + [("xy{k}",)],
    ),
    (
        "last_{k}_chars",
        list(range(1, 7)),
        "s",
        "returns the last {k} characters of the string s",
        "return s[-{k}:]",
        [("abcdefgh",), ("hello world",), ("python3.11",)],
    ),
    (
        "first_{k}_items",
        list(range(1, 7)),
        "items",
        "returns a list of the first {k} elements of the list items",
        "return items[:{k}]",
        LISTS + [([9, 8, 7, 6, 5, 4, 3, 2],)],
    ),
    (
        "greater_than_{k}",
        list(range(0, 21)),
        "nums",
        "returns a list of the numbers in nums that are greater than {k}, in order",
        "return [n for n in nums if n > {k}]",
        LISTS + [([0, 5, 10, 15, 20, 25],)],
    ),
    (
        "count_above_{k}",
        list(range(0, 16)),
        "nums",
        "returns how many numbers in nums are greater than {k}",
        "return sum(1 for n in nums if n > {k})",
        LISTS + [([0, 5, 10, 15, 20, 25],)],
    ),
    (
        "sum_of_multiples_of_{k}",
        list(range(2, 12)),
        "nums",
        "returns the sum of the numbers in nums that are divisible by {k}",
        "return sum(n for n in nums if n % {k} == 0)",
        LISTS + [([2, 3, 4, 6, 9, 10, 12, 15, 20],)],
    ),
    (
        "sum_of_powers_{k}",
        list(range(2, 6)),
        "nums",
        "returns the sum of every number in nums raised to the power {k}",
        "return sum(n ** {k} for n in nums)",
        LISTS,
    ),
    (
        "scale_by_{k}",
        list(range(2, 12)),
        "nums",
        "returns a new list with every number in nums multiplied by {k}",
        "return [n * {k} for n in nums]",
        LISTS,
    ),
]
SINGLES: list[tuple[str, str, str, str, list]] = [
    ("add", "a, b", "returns the sum of a and b", "return a + b", [(1, 2), (-5, 5), (10, 32)]),
    (
        "multiply",
        "a, b",
        "returns the product of a and b",
        "return a * b",
        [(3, 4), (-2, 5), (0, 9)],
    ),
    ("reverse_string", "s", "returns the string s reversed", "return s[::-1]", STRS),
    (
        "max_of_list",
        "nums",
        "returns the largest number in the non-empty list nums",
        "return max(nums)",
        NONEMPTY,
    ),
    (
        "min_of_list",
        "nums",
        "returns the smallest number in the non-empty list nums",
        "return min(nums)",
        NONEMPTY,
    ),
    ("sum_of_list", "nums", "returns the sum of the numbers in nums", "return sum(nums)", LISTS),
    (
        "count_vowels",
        "s",
        "returns the number of vowels (a, e, i, o, u, either case) in s",
        "return sum(1 for c in s.lower() if c in 'aeiou')",
        STRS,
    ),
    (
        "is_palindrome",
        "s",
        "returns True if the string s reads the same backwards",
        "return s == s[::-1]",
        STRS + [("racecar",)],
    ),
    ("is_even", "x", "returns True if x is even", "return x % 2 == 0", INTS),
    ("absolute_value", "x", "returns the absolute value of x", "return abs(x)", INTS),
    ("to_upper", "s", "returns the string s in upper case", "return s.upper()", STRS),
    (
        "word_count",
        "s",
        "returns the number of words (separated by spaces) in s",
        "return len(s.split())",
        STRS + [("one two  three",)],
    ),
    (
        "list_length",
        "items",
        "returns the number of elements in the list items",
        "return len(items)",
        LISTS,
    ),
    ("square", "x", "returns x squared", "return x * x", INTS),
    (
        "last_item",
        "items",
        "returns the last element of the non-empty list items",
        "return items[-1]",
        NONEMPTY,
    ),
    (
        "remove_spaces",
        "s",
        "returns s with every space removed",
        "return s.replace(' ', '')",
        STRS,
    ),
    (
        "average",
        "nums",
        "returns the average of the non-empty list nums",
        "return sum(nums) / len(nums)",
        NONEMPTY,
    ),
    (
        "factorial",
        "n",
        "returns n! (the factorial of n, with 0! = 1) for n >= 0",
        "result = 1\n    for i in range(2, n + 1):\n        result *= i\n    return result",
        [(0,), (1,), (5,), (7,)],
    ),
]
