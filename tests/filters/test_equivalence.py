"""Final answers against references: real-looking teacher outputs, equivalent forms
(LaTeX, fractions, units, letters, sets, intervals) and the near-misses that must fail."""

from __future__ import annotations

import pytest

from distillpipe.filters.equivalence import (
    choice_letter,
    equivalent,
    extract_final,
    reference_answer,
)

GSM8K_REFERENCE = (
    "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n"
    "Natalia sold 48+24 = <<48+24=72>>72 clips altogether in April and May.\n#### 72"
)

# (reference as the dataset stores it, a teacher's whole response, how it matches or None)
TABLE = [
    (GSM8K_REFERENCE, "In May: 48 / 2 = 24.\nSo 48 + 24 = 72.\nThe answer is 72.", "exact"),
    (GSM8K_REFERENCE, "She sold 48 + 24 = 72 clips.\n#### 72", "exact"),
    (GSM8K_REFERENCE, "48 * 15 = 720, so the total is $\\boxed{720}$.", None),
    ("#### 1,000", "Each box holds 250, so 4 boxes hold 1000. The answer is 1000.", "normalised"),
    ("18", "Janet sells 9 eggs at $2 each, making \\$18 every day.\n#### 18", "exact"),
    ("18 dollars", "She makes 16 - 3 - 4 = 9 eggs * $2 = $18.\n**Answer:** $18", "normalised"),
    ("12 apples", "12 apples remain. The final answer is 12.", "normalised"),
    ("5 m", "The rope is 500 cm, i.e. 5 cm per piece. The answer is 5 cm.", None),
    ("\\frac{1}{2}", "Two of four outcomes are even: $\\boxed{0.5}$.", "normalised"),
    ("\\frac{1}{2}", "The probability is $\\boxed{\\frac{1}{3}}$.", None),
    ("so $\\boxed{\\frac{\\sqrt{3}}{2}}$", "Hence $\\boxed{\\dfrac{\\sqrt3}{2}}$.", "math"),
    ("\\frac{3}{4}", "So x = 3/4. The answer is 3/4.", "normalised"),
    ("\\frac{3}{4}", "So x = 4/3. The answer is 4/3.", None),
    ("[0, 1)", "f takes every value from 0 up to, not including, 1: $\\boxed{[0,1)}$", "math"),
    ("[0, 1)", "The range is $\\boxed{[0,1]}$.", None),
    ("\\{1, 2\\}", "The roots are $x=1$ and $x=2$, so the set is $\\boxed{\\{2, 1\\}}$.", "math"),
    ("(1, 2)", "The intersection point is $\\boxed{(2, 1)}$.", None),
    ("(x+1)^2", "Expanding, we get $\\boxed{x^2+2x+1}$.", "math"),
    ("x+1", "Simplifying gives $\\boxed{x-1}$.", None),
    ("2", "Solving the equation, $\\boxed{x = 2}$.", "math"),
    ("3.14", "The area is $\\boxed{\\pi}$.", None),
    ("25\\%", "The discount is $\\boxed{25\\%}$.", "exact"),
    ("B", "Iron oxide on its surface makes Mars look red. The answer is (B).", "choice"),
    ("(C)", "We can eliminate A and D.\nAnswer: C) Paris", "choice"),
    ("C", "Between B and C, B fits best. The answer is B.", None),
    ("A", "Answer: A cat, since it is a mammal", None),
    ("Paris", "France's capital city is Paris. The answer is Paris.", "exact"),
    ("Paris", "I believe the answer is Lyon.", None),
    ("72", "I am not sure how to solve this problem.", None),
]  # fmt: skip


@pytest.mark.parametrize(("reference", "response", "method"), TABLE)
def test_teacher_outputs_against_references(reference: str, response: str, method: str | None):
    answer = extract_final(response, "auto")
    assert equivalent(reference_answer(reference, "auto"), answer) == method


@pytest.mark.parametrize(
    ("text", "shape", "expected"),
    [
        ("so 6 * 7 = 42\n#### 42", "gsm8k", "42"),
        ("no marker here: 42", "gsm8k", None),
        ("first \\boxed{1}, then \\boxed{\\frac{a}{b}}", "boxed", "\\frac{a}{b}"),
        ("The answer is (D).", "choice", "D"),
        ("**B**", "choice", "B"),
        ("  Paris \n", "whole", "Paris"),
        ("Working: 3 + 4 = 7. Answer: 7", "auto", "7"),
    ],
)
def test_extraction_by_shape(text: str, shape, expected: str | None) -> None:
    assert extract_final(text, shape) == expected


def test_a_worked_reference_gives_its_final_answer_and_a_plain_one_itself() -> None:
    assert reference_answer(GSM8K_REFERENCE, "auto") == "72"
    assert reference_answer("so it is \\boxed{\\frac{1}{2}}", "auto") == "\\frac{1}{2}"
    assert reference_answer("  Paris ", "auto") == "Paris"
    assert reference_answer(42, "auto") == "42"


def test_choice_letters_in_the_usual_phrasings() -> None:
    assert choice_letter("Option C is the only consistent one. The correct option is C.") == "C"
    assert choice_letter("(A) is wrong because ... so the answer is (B)") == "B"
    assert choice_letter("A reasonable guess, but no letter is given") is None
