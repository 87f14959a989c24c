"""Values of the catalog's choosing reads: leaderboard standings and shared bytes (no I/O)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True, slots=True)
class Standing:
    """One model on a leaderboard: its best version by the metric, and that version's facts."""

    rank: int
    model_id: str
    version: int
    value: float
    experiment_name: str
    model_type: str
    saved_at: datetime
    metrics: dict[str, float] = field(hash=False)
    aliases: tuple[str, ...] = ()

    @property
    def ref(self) -> str:
        return f"{self.model_id}@{self.version}"


@dataclass(frozen=True, slots=True)
class Leaderboard:
    """Models ranked by their best version's ``metric`` (best first)."""

    metric: str
    higher_is_better: bool
    experiment: str | None
    standings: tuple[Standing, ...]


@dataclass(frozen=True, slots=True)
class SharedBytes:
    """Distinct chunk bytes several versions share, as ``cas-repo diff`` counts them.

    ``matrix[i][j]``: bytes of chunks both version i and version j hold (``matrix[i][i]``
    is version i's distinct bytes); ``with_others[i]``: bytes of version i that at least
    one other version holds too.
    """

    matrix: tuple[tuple[int, ...], ...]
    with_others: tuple[int, ...]

    @property
    def totals(self) -> tuple[int, ...]:
        return tuple(row[i] for i, row in enumerate(self.matrix))
