"""Code out of a response: fenced blocks by language, the last or all, or the whole text."""

from __future__ import annotations

from distillpipe.filters.codeblocks import extract_code, fenced_blocks

RESPONSE = """First a helper:

```python
def helper():
    return 1
```

Usage in the shell:

```bash
python main.py
```

And the solution:

~~~py
def solve():
    return helper() + 1
~~~
"""


def test_the_last_block_of_the_language_by_default() -> None:
    assert extract_code(RESPONSE, ("python", "py")) == "def solve():\n    return helper() + 1"


def test_all_blocks_of_the_language_joined_in_order() -> None:
    code = extract_code(RESPONSE, ("python", "py"), blocks="all")
    assert code == "def helper():\n    return 1\n\ndef solve():\n    return helper() + 1"


def test_untagged_blocks_count_when_none_is_tagged_with_the_language() -> None:
    text = "Here:\n```\nprint(1)\n```\nand in bash:\n```bash\necho 1\n```"
    assert extract_code(text, ("python",)) == "print(1)"
    assert extract_code(text, ("bash",)) == "echo 1"


def test_no_block_means_no_code_unless_the_whole_text_is_asked_for() -> None:
    prose = "def f():\n    return 1"
    assert extract_code(prose, ("python",)) is None
    assert extract_code(prose, ("python",), mode="whole") == prose
    assert extract_code("   ", ("python",), mode="whole") is None


def test_a_block_cut_at_the_token_limit_still_counts() -> None:
    assert extract_code("```python\ndef f():\n    return", ("python",)) == "def f():\n    return"


def test_longer_fences_and_info_strings() -> None:
    text = "````python title=x.py\nprint('```')\n````"
    [block] = fenced_blocks(text)
    assert (block.tag, block.code) == ("python", "print('```')")
