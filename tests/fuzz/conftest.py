"""Hypothesis profiles for the fuzz tests (docs/guarantees.md, "Fuzzing").

- ``ci`` (the default, what ``make test`` runs): derandomized, so every run tries the same
  examples, and few enough of them that tests/fuzz stays short.
- ``long`` (``make fuzz``, or ``HYPOTHESIS_PROFILE=long``): random, many more examples.

Neither writes an example database: nothing lands in the repository.
"""

from __future__ import annotations

import os
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis.configuration import set_hypothesis_home_dir

# hypothesis keeps caches of its own (not examples: database=None below) in this directory;
# outside the repository, next to the broker's jars
set_hypothesis_home_dir(
    str(
        Path(os.environ.get("KSTATEFUN_CACHE_DIR", Path.home() / ".cache" / "kstatefun"))
        / "hypothesis"
    )
)

# examples per property: `ci` keeps tests/fuzz short, `long` is what `make fuzz` runs
CI_EXAMPLES = 60
LONG_EXAMPLES = 1000

_COMMON = dict(
    database=None,
    deadline=None,  # a shared 2-core machine: timing is no property
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
settings.register_profile("ci", max_examples=CI_EXAMPLES, derandomize=True, **_COMMON)
settings.register_profile("long", max_examples=LONG_EXAMPLES, derandomize=False, **_COMMON)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def scaled(n: int, long_cap: int | None = None) -> int:
    """``n`` examples in the ``ci`` profile, proportionally more in ``long`` but at most
    ``long_cap`` (for properties that are slower or faster than the usual one)."""
    examples = max(1, n * settings.default.max_examples // CI_EXAMPLES)
    return examples if long_cap is None else min(examples, max(n, long_cap))
