"""How many examples the expensive property tests draw.

`make test` uses the base counts (derandomized, so the same examples each run);
`HYPOTHESIS_PROFILE=explore` draws four times as many, fresh each run.
"""

from __future__ import annotations

import os

EXPLORE = os.environ.get("HYPOTHESIS_PROFILE") == "explore"


def examples(n: int) -> int:
    return n * 4 if EXPLORE else n
