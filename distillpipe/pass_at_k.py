"""pass@k from n samples of which c passed: the unbiased estimator of the Codex paper
(Chen et al. 2021), 1 - C(n-c, k) / C(n, k), in its stable product form."""

from __future__ import annotations

import math
from collections.abc import Iterable


def pass_at_k(n: int, c: int, k: int) -> float:
    """The chance that at least one of k samples drawn from these n passes."""
    if not 0 <= c <= n or k < 1:
        raise ValueError(f"pass@k needs 0 <= c <= n and k >= 1, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def mean_pass_at_k(tries: Iterable[tuple[int, int]], k: int) -> float | None:
    """pass@k averaged over records, each given as (samples drawn, samples passed)."""
    values = [pass_at_k(n, c, k) for n, c in tries]
    return sum(values) / len(values) if values else None
