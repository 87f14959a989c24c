"""fsck's report: each finding says what is wrong, what it means and what to do."""

from __future__ import annotations

from dataclasses import dataclass, field

ERROR, WARNING = "error", "warning"

# code -> (severity, what it means, what to do). docs/maintenance.md lists the same table.
CODES: dict[str, tuple[str, str, str]] = {
    "pack-missing": (ERROR, "a pack that live versions need is not in the object store",
                     "restore the pack from a backup; `fsck --repair` re-points objects that have another "
                     "copy; otherwise the versions listed are lost (`cas-repo delete` or `retain` them)"),
    "pack-damaged": (ERROR, "a pack the catalog uses cannot be read (truncated, or not a pack)",
                     "restore the pack from a backup; `fsck --repair` re-points objects that have another copy"),
    "pack-size": (ERROR, "a pack's size differs from the size recorded when it was written (truncated or "
                  "overwritten)", "run `cas-repo fsck --full` to see which objects are damaged"),
    "row-mismatch": (ERROR, "a catalog row points at a place in a pack that does not hold that object",
                     "`fsck --repair` re-points the row at an intact copy if the store has one"),
    "unlocated": (ERROR, "a live object (manifest, chunk or event record) has no location in the catalog",
                  "`fsck --repair` finds it in the packs if it is there; otherwise `cas-repo rebuild-catalog`"),
    "entry-corrupt": (ERROR, "an object's bytes do not hash to its digest (bit rot or tampering)",
                      "`fsck --repair` re-points it at an intact copy if there is one; otherwise restore the "
                      "pack from a backup, and the versions listed cannot be loaded"),
    "pack-corrupt": (ERROR, "a pack's bytes do not hash to its name, though every object in it verifies "
                     "(its header or index is damaged)", "restore the pack from a backup"),
    "pack-misplaced": (ERROR, "a pack is stored under the wrong name: its bytes are those of another pack",
                       "`fsck --repair` copies it to its right name"),
    "manifest-mismatch": (ERROR, "the catalog's chunk list or size of a manifest differs from the manifest",
                          "`fsck --repair` rewrites the chunk list from the manifest (the object is the truth)"),
    "record-seal": (ERROR, "an event record's seal does not verify under this store's key: it was written "
                    "without the key, or forged", "do not trust the versions listed; restore the pack from a "
                    "backup, or re-save them with the key"),
    "record-mismatch": (ERROR, "an event in the catalog differs from its record in the store",
                        "`cas-repo rebuild-catalog` recreates the catalog from the records"),
    "catalog-empty": (ERROR, "the catalog holds no events but the object store holds event records: the "
                      "catalog file was lost or replaced", "run `cas-repo rebuild-catalog`"),
    "unknown-event": (WARNING, "the store holds an event record the catalog lacks: a save interrupted "
                      "before its commit, or a catalog that lost rows",
                      "harmless if it was an interrupted save (gc removes it after the grace period); "
                      "`cas-repo rebuild-catalog` adopts it otherwise"),
    "stale-rows": (WARNING, "catalog rows point at a pack that is gone, but nothing live needs them",
                   "run `cas-repo gc` (it drops them)"),
    "stale-pack-row": (WARNING, "the catalog lists a pack that is gone and that no object row uses",
                       "`fsck --repair` or `cas-repo gc` drops the row"),
    "orphan-pack": (WARNING, "a pack no catalog row refers to (an interrupted save, a finished repack, or a "
                    "copy stored twice by concurrent saves)", "`cas-repo gc` deletes it after the grace period"),
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
    packs: int
    pack_bytes: int
    objects: int
    events: int
    hashed_bytes: int
    in_flight: int
    findings: tuple[Finding, ...]

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
