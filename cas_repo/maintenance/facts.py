"""What fsck gathers once and its repairs read: the log's fold and what the store holds.

Its own module so that :mod:`.fsck`, which gathers it, and :mod:`.repair`, which acts
on it, both import it and neither imports the other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..catalog import Catalog
    from ..location import Location
    from .logcheck import LogFacts
    from .orphans import DiskPacks
    from .scan import PackScan


@dataclass
class Facts:
    """What the log says and what the store holds, gathered once (internal, mutable)."""

    log: LogFacts
    fresh: Catalog                                       # the fold of the log fsck made (the truth)
    rows: dict[str, Location]
    rows_by_pack: dict[str, list[Location]]
    listed: dict[str, int]
    live: set[str]
    manifests: dict[str, set[int]]
    chunk_lists: dict[str, list[tuple[str, int]]]
    disk: DiskPacks
    scans: dict[str, PackScan]
    cutoff: datetime
    events: int = 0
    bad: set[str] = field(default_factory=set)          # digests whose recorded location is unusable
    intact: set[str] = field(default_factory=set)       # packs whose full hash matched
    in_flight: int = 0
