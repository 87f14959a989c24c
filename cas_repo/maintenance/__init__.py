"""Maintenance tools: fsck, gc (plan → commit → delete; or, on a full disk, no commit), retention
(one-off, or the store's own policy applied by ``maintain``), the dedup audit, index rebuild,
mirrors and copies between stores.

Each tool is a function that takes a :class:`~cas_repo.ModelStore` (or a store's
location) and returns a report value; the CLI (`cas-repo fsck|gc|retain|maintain|policy|
audit|rebuild-catalog|mirror|copy`) only renders those reports. The store's retention policy is held
in its log (:mod:`.policy`) and applied by :func:`run_maintenance`. Tools plan with the catalog index and
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
from .maintain import MaintenancePlan, MaintenanceReport, maintain_every, plan_maintenance, run_maintenance
from .mirror import Mirror, MirrorReport, open_mirror
from .policy import PolicyRecord, PolicySetResult, clear_policy, current_policy, policy_history, set_policy
from .policy_spec import KeepBest, Policy, RetireModelsBelow, load_policy_file, policy_diff
from .rebuild import RebuildReport, rebuild_catalog
from .reclaim import ReclaimReport, reclaim_space
from .retention import RestoreReport, RetentionPolicy, RetentionReport, VersionRef, apply_retention, restore_versions

__all__ = [
    "DEFAULT_GRACE",
    "AuditReport",
    "CopiedVersion",
    "CopyReport",
    "Finding",
    "FsckReport",
    "GcPlan",
    "GcReport",
    "KeepBest",
    "MaintenancePlan",
    "MaintenanceReport",
    "Mirror",
    "MirrorReport",
    "PackRef",
    "Policy",
    "PolicyRecord",
    "PolicySetResult",
    "ProgressFactory",
    "RebuildReport",
    "ReclaimReport",
    "RestoreReport",
    "RetentionPolicy",
    "RetentionReport",
    "RetireModelsBelow",
    "VersionRef",
    "apply_retention",
    "audit",
    "clear_policy",
    "collect_garbage",
    "copy_versions",
    "current_policy",
    "format_duration",
    "fsck",
    "fsck_store",
    "load_policy_file",
    "maintain_every",
    "no_progress",
    "open_mirror",
    "parse_duration",
    "plan_gc",
    "plan_maintenance",
    "policy_diff",
    "policy_history",
    "rebuild_catalog",
    "reclaim_space",
    "render_html",
    "restore_versions",
    "run_gc",
    "run_maintenance",
    "set_policy",
]
