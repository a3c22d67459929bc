"""ROUGE-L novelty filtering at scale: candidates/s against a 50,000-instruction pool.

Target (issue 3): >= 50x brute force, with identical keep/reject decisions.
Brute force is Stanford Alpaca's ``generate_instruction.py``: the pool is
tokenised once, then rouge-score's ``_score_lcs`` runs against every pool
instruction for each candidate (here in one process, as the fast path uses one).
Both are measured in the same run; brute force on a sample of the candidates,
whose decisions (and maximum scores) must match the fast path's exactly.

The pool is synthetic but instruction-like: templates filled from a few
hundred words with Zipf-like frequencies, so common words ("the", "a",
"write") are in most entries, as in real instruction sets. Candidates are a
mix of near-copies of pool entries (one word changed: rejected) and free-form
sentences (mostly kept), and half the pool is free-form too.

    python bench/novelty.py [--pool 50000] [--candidates 400] [--sample 4]
"""

from __future__ import annotations

import argparse
import os
import random
import time

from rouge_score import rouge_scorer

from distillpipe.novelty import NoveltyIndex

TARGET_RATIO = 50
THRESHOLD = 0.7

VERBS = str.split(
    "write explain describe list give summarize translate classify rewrite create suggest "
    "compare design plan identify generate convert find name outline evaluate predict sort"
)
FUNCTION_WORDS = str.split("the a an of to and in for with on how why what that is are")
TEMPLATES = (
    "{verb} a {adj} {noun} about the {noun2} of {topic}.",
    "{verb} three {adj} ways to {verb2} the {noun} in {topic}.",
    "Can you {verb} the {noun} and {verb2} why the {noun2} is {adj}?",
    "{verb} the following {noun} as {adj} or not {adj}, with a reason.",
    "{verb} how a {adj} {noun} could help {topic} and its {noun2}.",
    "Please {verb} a short {noun} for a {adj} {noun2} who loves {topic}.",
    "{verb} the main {noun} of {topic} in {n} sentences.",
    "What is the {adj} {noun} of {topic}, and how does it affect the {noun2}?",
)


def word_list(rng: random.Random, count: int, length: int) -> list[str]:
    letters = "abcdefghijklmnopqrstuvwxyz"
    return [
        "".join(rng.choice(letters) for _ in range(rng.randint(3, length))) for _ in range(count)
    ]


class InstructionMaker:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        vocab = random.Random(0)
        self.nouns = word_list(vocab, 800, 9)
        self.adjs = word_list(vocab, 300, 8)
        self.topics = word_list(vocab, 400, 10)
        self.weights = [1 / (rank + 1) for rank in range(800)]  # Zipf-like

    def pick(self, words: list[str]) -> str:
        return self.rng.choices(words, weights=self.weights[: len(words)])[0]

    def make(self) -> str:
        text = self.rng.choice(TEMPLATES).format(
            verb=self.rng.choice(VERBS),
            verb2=self.rng.choice(VERBS),
            adj=self.pick(self.adjs),
            noun=self.pick(self.nouns),
            noun2=self.pick(self.nouns),
            topic=self.pick(self.topics),
            n=self.rng.randint(2, 9),
        )
        return text[0].upper() + text[1:]

    def free_form(self) -> str:
        """A sentence of 6-20 words, function words common, content words Zipf-like."""
        words = [self.rng.choice(VERBS)]
        for _ in range(self.rng.randint(5, 19)):
            if self.rng.random() < 0.35:
                words.append(self.rng.choice(FUNCTION_WORDS))
            else:
                words.append(self.pick(self.rng.choice((self.nouns, self.adjs, self.topics))))
        return " ".join(words).capitalize() + "."

    def near_copy(self, text: str) -> str:
        words = text.split()
        position = self.rng.randrange(len(words))
        words[position] = self.pick(self.nouns)
        return " ".join(words)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pool", type=int, default=50_000)
    parser.add_argument("--candidates", type=int, default=400)
    parser.add_argument("--sample", type=int, default=4, help="candidates scored by brute force")
    args = parser.parse_args()

    maker = InstructionMaker(seed=1)
    pool = [maker.make() if i % 2 else maker.free_form() for i in range(args.pool)]
    candidates = [
        maker.near_copy(maker.rng.choice(pool)) if i % 3 == 0 else maker.free_form()
        for i in range(args.candidates)
    ]

    started = time.perf_counter()
    index = NoveltyIndex()
    for text in pool:
        index.add(text)
    build_seconds = time.perf_counter() - started

    started = time.perf_counter()
    fast = [index.check(text, THRESHOLD) for text in candidates]
    fast_seconds = time.perf_counter() - started
    fast_rate = len(candidates) / fast_seconds

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    pool_tokens = [scorer._tokenizer.tokenize(text) for text in pool]
    sample = list(range(0, len(candidates), max(1, len(candidates) // args.sample)))[: args.sample]
    started = time.perf_counter()
    brute = []
    for position in sample:
        tokens = scorer._tokenizer.tokenize(candidates[position])
        scores = [rouge_scorer._score_lcs(tokens, other).fmeasure for other in pool_tokens]
        brute.append(max(scores))
    brute_seconds = time.perf_counter() - started
    brute_rate = len(sample) / brute_seconds

    for position, best in zip(sample, brute, strict=True):
        novel, match = fast[position]
        assert novel == (best < THRESHOLD), (candidates[position], best, match)
        if novel:
            assert match.score == best
    kept = sum(novel for novel, _ in fast)
    ratio = fast_rate / brute_rate
    load = os.getloadavg()[0]
    print(f"pool {args.pool:,} instructions (index built in {build_seconds:.1f}s)")
    print(f"fast:  {len(candidates)} candidates in {fast_seconds:.2f}s = {fast_rate:,.1f}/s")
    print(f"       kept {kept}, rejected {len(candidates) - kept} (threshold {THRESHOLD})")
    print(f"brute: {len(sample)} candidates in {brute_seconds:.2f}s = {brute_rate:,.3f}/s")
    print(f"decisions identical on the {len(sample)} sampled candidates")
    print(f"ratio: {ratio:,.0f}x (target >= {TARGET_RATIO}x), load average {load:.1f}")


if __name__ == "__main__":
    main()
