"""Maintenance tools: fsck, gc (plan → commit → delete; or, on a full disk, no commit), retention,
the dedup audit, index rebuild, mirrors and copies between stores.

Each tool is a function that takes a :class:`~cas_repo.ModelStore` (or a store's
location) and returns a report value; the CLI (`cas-repo fsck|gc|retain|audit|
rebuild-catalog`) only renders those reports. Tools plan with the catalog index and
change the store only through log commits (``store.ledger.commit``), never by writing
catalog rows: the index is folded from the log on every machine alike. The one
exception is ``gc --no-commit`` (:mod:`.reclaim`), for a disk too full for a commit: it
reads the log alone and deletes only files no commit can point into.
"""

from .audit import AuditReport, audit
from .collect import GcReport, collect_garbage, run_gc
from .common import DEFAULT_GRACE, ProgressFactory, format_duration, no_progress, parse_duration
from .copying import CopiedVersion, CopyReport, copy_versions
from .findings import Finding, FsckReport
from .fsck import fsck, fsck_store
from .gc import GcPlan, PackRef, plan_gc
from .html_report import render_html
from .mirror import Mirror, MirrorReport, open_mirror
from .rebuild import RebuildReport, rebuild_catalog
from .reclaim import ReclaimReport, reclaim_space
from .retention import RestoreReport, RetentionPolicy, RetentionReport, VersionRef, apply_retention, restore_versions

__all__ = [
    "DEFAULT_GRACE", "AuditReport", "CopiedVersion", "CopyReport", "Finding", "FsckReport", "GcPlan", "GcReport",
    "Mirror", "MirrorReport", "PackRef", "ProgressFactory", "RebuildReport", "ReclaimReport", "RestoreReport",
    "RetentionPolicy", "RetentionReport", "VersionRef", "apply_retention", "audit", "collect_garbage",
    "copy_versions", "format_duration", "fsck", "fsck_store", "no_progress", "open_mirror",
    "parse_duration", "plan_gc", "rebuild_catalog", "reclaim_space", "render_html", "restore_versions", "run_gc",
]
