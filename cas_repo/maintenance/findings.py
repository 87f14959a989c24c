"""fsck's report: each finding says what is wrong, what it means and what to do."""

from __future__ import annotations

from dataclasses import dataclass, field

ERROR, WARNING = "error", "warning"

# code -> (severity, what it means, what to do). docs/maintenance.md lists the same table.
CODES: dict[str, tuple[str, str, str]] = {
    "log-gap": (ERROR, "a commit of the log is missing below commits that exist: readers stop with an error "
                "before it and writers refuse to commit (log commits must never be deleted)",
                "`fsck --repair-from COPY` restores it from a copy or mirror of the store; or put the file back "
                "from a backup"),
    "log-cut": (ERROR, "the log ends before a position this store has recorded (a checkpoint past its end): its "
                "newest commits were deleted, or an older copy of the store was put back",
                "`fsck --repair-from COPY` restores the commits from a copy or mirror of the store"),
    "log-unreadable": (ERROR, "a log commit cannot be used: its bytes do not match its digest (changed or "
                       "damaged), it is cut short, it names another position, or (keyed store) it is not "
                       "sealed by this store's key — written without the key, or forged",
                       "`fsck --repair-from COPY` restores it from a copy or mirror of the store; if the store "
                       "has a key, check CAS_REPO_KEY"),
    "log-chain": (ERROR, "a log commit does not follow the commit before it: that one (or an earlier one) was "
                  "changed, removed or replaced with a valid-looking commit, or this one comes from another "
                  "store; readers stop with an error here",
                  "`fsck --repair-from COPY` restores the commits from a copy or mirror of the store"),
    "log-refused": (ERROR, "a log commit holds an operation the fold does not admit (its model's version or "
                    "event number does not follow): every reader skips it alike",
                    "nothing is lost that any reader ever saw; report it (a cas-repo bug or a hand-made commit)"),
    "checkpoint-bad": (WARNING, "a checkpoint cannot be used (damaged, written before commits were chained, or "
                       "not sealed by this store's key); readers fall back to an older one or to the log",
                       "harmless; a later checkpoint supersedes it (`fsck --repair-from COPY` restores it)"),
    "checkpoint-mismatch": (ERROR, "a checkpoint differs from the fold of the log up to its position: a process "
                            "starting from it sees a wrong state",
                            "delete that checkpoint file (it is derived from the log) and report it"),
    "index-mismatch": (ERROR, "this machine's catalog index differs from a fresh fold of the log (rows written "
                       "to it by hand, or a damaged file DuckDB did not notice)",
                       "`fsck --repair` (or `cas-repo rebuild-catalog`) rebuilds the index from the log"),
    "pack-missing": (ERROR, "a pack that live versions need is not in the object store",
                     "restore the pack from a copy (`fsck --repair-from COPY`); `fsck --repair` moves its "
                     "entries to intact copies if every one has one; otherwise the versions listed are lost "
                     "(`cas-repo delete` them)"),
    "pack-damaged": (ERROR, "a pack the log uses cannot be read (truncated, or not a pack)",
                     "restore the pack from a copy (`fsck --repair-from COPY`); `fsck --repair` moves its "
                     "entries to intact copies if every one has one"),
    "pack-size": (ERROR, "a pack's size differs from the size recorded when it was written (truncated or "
                  "overwritten)", "run `cas-repo fsck --full` to see which objects are damaged; `fsck --repair` "
                  "moves its entries to intact copies"),
    "row-mismatch": (ERROR, "the log locates an entry at a place in a pack that does not hold it",
                     "`fsck --repair` moves the pack's entries to intact copies if the store has them"),
    "unlocated": (ERROR, "a live entry (manifest or chunk) has no location in the log",
                  "`fsck --repair` copies it from any intact copy in the store and records the copy"),
    "entry-corrupt": (ERROR, "an entry's bytes do not hash to its digest (bit rot or tampering)",
                      "`fsck --repair` moves the pack's entries to intact copies if there are; otherwise "
                      "restore the pack from a copy (`fsck --repair-from COPY`), and the versions listed cannot be "
                      "loaded"),
    "pack-corrupt": (ERROR, "a pack's bytes do not hash to its name, though every entry in it verifies "
                     "(its header or index is damaged)", "restore the pack from a copy (`fsck --repair-from COPY`)"),
    "pack-misplaced": (ERROR, "a pack is stored under the wrong name: its bytes are those of another pack",
                       "`fsck --repair` copies it to its right name"),
    "manifest-mismatch": (ERROR, "the chunk list or size the log records for a manifest differs from the "
                          "manifest (gc judges liveness by that list)",
                          "report it (a cas-repo bug or a hand-made commit); do not run gc until it is resolved"),
    "stale-pack": (WARNING, "a pack the log still lists is gone, but nothing live needs it",
                   "run `cas-repo gc` (it forgets the pack)"),
    "orphan-pack": (WARNING, "a pack no log commit mentions (an interrupted save, a repack never committed, or "
                    "a copy stored twice by racing saves)", "`cas-repo gc` drops it after the grace period"),
    "forgotten-pack": (WARNING, "a pack a committed gc forgot is still in the object store (that gc stopped "
                       "before deleting it)", "`cas-repo gc` deletes it"),
    "temp-file": (WARNING, "a temp file left by an interrupted write, older than the grace period",
                  "`fsck --repair` or `cas-repo gc` removes it"),
}


@dataclass(frozen=True, slots=True)
class Finding:
    """One problem: its code and severity, what it concerns, and who is affected."""

    code: str
    subject: str
    detail: str = ""
    affected: tuple[str, ...] = ()
    repaired: bool = False
    severity: str = field(default="")

    def __post_init__(self) -> None:
        if self.code not in CODES:
            raise ValueError(f"unknown fsck finding code {self.code!r}")
        if not self.severity:
            object.__setattr__(self, "severity", CODES[self.code][0])

    @property
    def meaning(self) -> str:
        return CODES[self.code][1]

    @property
    def action(self) -> str:
        return CODES[self.code][2]


@dataclass(frozen=True, slots=True)
class FsckReport:
    """The result of one fsck run."""

    full: bool
    repair: bool
    commits: int
    packs: int
    pack_bytes: int
    objects: int
    events: int
    hashed_bytes: int
    in_flight: int
    findings: tuple[Finding, ...]
    restored: tuple[str, ...] = ()      # keys put back from a copy (--repair-from)
    unrestored: tuple[str, ...] = ()    # what the copy could not put back, and why
    set_aside: tuple[str, ...] = ()     # damaged objects moved under damaged/ when replaced

    @property
    def errors(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity == ERROR and not f.repaired)

    @property
    def warnings(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity == WARNING and not f.repaired)

    @property
    def clean(self) -> bool:
        """No unrepaired error (warnings are harmless leftovers gc cleans up)."""
        return not self.errors


@dataclass
class Found:
    """Findings so far, each with the digests it concerns and any data a repair needs (internal)."""

    items: list[tuple[Finding, list[str], object]] = field(default_factory=list)

    def add(self, code: str, subject: str, detail: str = "", digests: list[str] | None = None,
            payload: object = None, severity: str = "") -> None:
        self.items.append((Finding(code, subject, detail, severity=severity), digests or [], payload))
