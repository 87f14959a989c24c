"""The exception hierarchy: one root, a few bases, and errors that say what to do.

Every error raised by cas-repo is a :class:`CasRepoError`. "Not found" errors also
subclass :class:`FileNotFoundError` (the seed's tests rely on it), validation errors
also subclass :class:`ValueError`, and refused pickles also subclass
:class:`pickle.UnpicklingError`, so callers that only know the builtins still work.
"""

from __future__ import annotations

import pickle


class CasRepoError(Exception):
    """Root of every error raised by cas-repo.

    ``str(error)`` speaks to Python callers. An error whose advice names Python calls
    also carries ``cli_message``: the same facts with the advice as `cas-repo` commands
    and flags, which the command line shows instead (:meth:`for_cli`).
    """

    cli_message: str | None = None

    def for_cli(self) -> str:
        """The message as the `cas-repo` command line shows it."""
        return self.cli_message or str(self)

    @classmethod
    def advised(cls, facts: str, advice: str, cli_advice: str) -> CasRepoError:
        """``cls("facts; advice")`` whose command line message is ``"facts; cli_advice"``."""
        error = cls(f"{facts}; {advice}")
        error.cli_message = f"{facts}; {cli_advice}"
        return error


# --- not found -------------------------------------------------------------------


class ModelNotFoundError(CasRepoError, FileNotFoundError):
    """No such model_id, or no such version of it."""

    def __init__(self, model_id: str, version: int | None = None, hint: str = "") -> None:
        self.model_id = model_id
        self.version = version
        what = f"model {model_id!r}" if version is None else f"version {version} of model {model_id!r}"
        msg = f"{what} does not exist"
        super().__init__(f"{msg}; {hint or '`list_models()` shows what the store holds'}")
        self.cli_message = f"{msg}; {hint or '`cas-repo ls` shows what the store holds'}"

    def __str__(self) -> str:  # FileNotFoundError would otherwise format errno/filename
        return self.args[0]


class ModelDeletedError(ModelNotFoundError):
    """The model exists but its latest event is a tombstone."""

    def __init__(self, model_id: str, when: str | None = None) -> None:
        """``when``: the store was read as of a past time (``"as of 2026-01-05 13:30 UTC"``)."""
        super().__init__(
            model_id,
            hint="it was deleted (tombstoned); `undelete_model()` brings it back, "
            "or pass an explicit version to read its history",
        )
        if when is not None:
            self.args = (f"model {model_id!r} was deleted {when}; pass a version to read one",)
            self.cli_message = f"model {model_id!r} was deleted {when}; `{model_id}@VERSION` reads one"
            return
        self.args = (f"model {model_id!r} is deleted; `undelete_model({model_id!r})` brings it "
                     "back, or pass an explicit version to read its history",)
        self.cli_message = (f"model {model_id!r} is deleted; `cas-repo undelete {model_id}` brings it back, "
                            f"`cas-repo log {model_id}` shows its history and `{model_id}@VERSION` reads one")


class ModelPurgedError(ModelNotFoundError):
    """The version's content was freed by ``cas-repo gc``; its history remains."""

    def __init__(self, model_id: str, version: int, when: object) -> None:
        super().__init__(model_id, version)
        self.args = (f"version {version} of model {model_id!r} was purged by gc on {when}: its history "
                     "remains (`cas-repo log`) but its content is gone; load another version",)
        self.cli_message = None  # the message above is the same for both audiences


class ObjectNotFoundError(CasRepoError, FileNotFoundError):
    """An object the catalog refers to is missing from the object store."""

    def __init__(self, key: str, hint: str = "") -> None:
        self.key = key
        super().__init__(
            f"object {key} is missing from the object store; "
            + (hint or "run `cas-repo fsck` to see what is affected")
        )

    def __str__(self) -> str:
        return self.args[0]


# --- validation --------------------------------------------------------------------


class InvalidModelIdError(CasRepoError, ValueError):
    """A model_id that is not 1–128 chars of [A-Za-z0-9._-] starting with an alphanumeric."""


class InvalidMetadataError(CasRepoError, ValueError):
    """Metadata that cannot be stored faithfully (non-JSON values, bad types)."""


class InvalidDigestError(CasRepoError, ValueError):
    """A string that is not a well-formed digest."""


# --- integrity ---------------------------------------------------------------------


class IntegrityError(CasRepoError):
    """Stored bytes do not match their digest, or a stored structure is malformed.

    Attributes:
        expected: the digest the bytes should have (hex), if known.
        actual: the digest they have (hex), if computed.
        model_id / version: the version being read, when known.
    """

    def __init__(
        self,
        message: str,
        *,
        expected: str | None = None,
        actual: str | None = None,
        model_id: str | None = None,
        version: int | None = None,
    ) -> None:
        self.message = message
        self.expected = expected
        self.actual = actual
        self.model_id = model_id
        self.version = version
        parts = [message]
        if model_id is not None:
            parts.append(f"model {model_id!r}" + (f" version {version}" if version else ""))
        if expected is not None:
            parts.append(f"expected {expected}")
        if actual is not None:
            parts.append(f"actual {actual}")
        parts.append(self._advice)
        super().__init__("; ".join(p for p in parts if p))

    _advice = "run `cas-repo fsck --full`; the object may be restored from a backup"

    def with_version(self, model_id: str, version: int) -> IntegrityError:
        """Return a copy that names the model version being read."""
        return IntegrityError(
            self.message,
            expected=self.expected,
            actual=self.actual,
            model_id=model_id,
            version=version,
        )


class LogDamagedError(IntegrityError):
    """The log cannot be folded past one position: a commit there is damaged, does not
    follow the one before it, is missing below commits that exist, or is gone after this
    process read it. Nothing from that position on is used.

    Attributes:
        position: the log position at fault.
        reason: what is wrong there, without the advice (fsck's tables give their own).
    """

    _advice = ""  # the message says what to do

    def __init__(self, position: int, message: str, *, reason: str = "", expected: str | None = None,
                 actual: str | None = None) -> None:
        super().__init__(message, expected=expected, actual=actual)
        self.position = position
        self.reason = reason or message


# --- serialization -----------------------------------------------------------------


class SerializationError(CasRepoError):
    """A model could not be serialized or deserialized."""


class UnsafePickleError(SerializationError, pickle.UnpicklingError):
    """A stored pickle names a global (or opcode) outside the allowlist."""

    def __init__(self, global_name: str, reason: str = "") -> None:
        self.global_name = global_name
        msg = (
            f"refused to load {global_name}: it is not in the unpickling allowlist"
            + (f" ({reason})" if reason else "")
            + ". If you trust this model class, allow it in code with "
            f"`cas_repo.allow_globals({global_name!r})` or list it in the CAS_REPO_ALLOW_GLOBALS "
            "environment variable; stored metadata can never extend the allowlist"
        )
        super().__init__(msg)
        self.cli_message = (
            f"refused to load {global_name}: it is not in the unpickling allowlist"
            + (f" ({reason})" if reason else "")
            + f". If you trust this model class, run the command with CAS_REPO_ALLOW_GLOBALS={global_name} "
            "in its environment (comma-separated for several); stored metadata can never extend the allowlist")


# --- files written for the caller ---------------------------------------------------


class OutputFileError(CasRepoError):
    """A file the caller asked for (a model written as a pickle) could not be written."""


class OutputExistsError(OutputFileError, FileExistsError):
    """The file to write exists, and replacing it was not asked for."""

    def __init__(self, path: str) -> None:
        self.path = path
        facts = f"{path} exists; nothing was written"
        super().__init__(f"{facts}: pass overwrite=True to replace it, or choose another path")
        self.cli_message = f"{facts}: pass --force to replace it, or choose another -o path"

    def __str__(self) -> str:  # FileExistsError would otherwise format errno/filename
        return self.args[0]


# --- storage / catalog ---------------------------------------------------------------


class StoreError(CasRepoError):
    """The object store failed (I/O error, full disk, permissions)."""


class AccessRefusedError(StoreError):
    """The object store refused the request's credentials, or denied them access.

    Attributes:
        code: the server's error code (``InvalidAccessKeyId``, ``SignatureDoesNotMatch``,
            ``AccessDenied``, or the HTTP status when the answer had no body).
    """

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


class OutcomeUnknownError(StoreError):
    """A create was sent to an object store and no attempt got an answer: the object
    may or may not be there (read it back to know)."""


class CommitOutcomeUnknownError(StoreError):
    """A commit was sent, but whether the store recorded it could not be learned.

    Attributes:
        position: the log position the commit was sent to.
    """

    def __init__(self, position: int, message: str) -> None:
        super().__init__(message)
        self.position = position


class CatalogError(CasRepoError):
    """The DuckDB catalog failed or is unusable."""


# --- a full disk -------------------------------------------------------------------

# What every full-disk error ends with: how to free space when even a commit cannot be
# written (gc and delete both commit first). docs/maintenance.md, "When the disk is full".
def full_disk_steps(objects_root: str | None = None) -> str:
    """How to free space on a full disk; ``objects_root``: the store's ``objects`` folder, if known."""
    root = objects_root or "STORE/objects"
    return (
        "`cas-repo gc` and `cas-repo delete` write a log commit first, so they fail too until some space is "
        "free. Free space without a commit: `cas-repo gc --no-commit` removes temp files of interrupted "
        "writes, packs a finished gc forgot, and packs no commit mentions that are older than --grace "
        "(default 24h; `--grace 1h` takes more, never less than 15m). Safe to delete by hand: the catalog "
        "index (`catalog.duckdb` and `catalog.duckdb.wal`, `store.catalog.path`; it is rebuilt from the log), "
        f"`.tmp-*` files under {root} untouched for 15 minutes, and the files under {root}/checkpoints/ "
        f"(derived from the log). Never delete anything under {root}/log/ or {root}/packs/. Then "
        "`cas-repo delete`/`cas-repo retain` and `cas-repo gc` free the rest "
        "(docs/maintenance.md, \"When the disk is full\")")


class DiskFullError(CasRepoError):
    """A write failed because its filesystem is full (ENOSPC, or a quota); nothing was recorded."""


class StoreFullError(StoreError, DiskFullError):
    """The disk holding the store folder is full; every version stored before is intact."""

    def __init__(self, action: str, path: str, cause: str, objects_root: str | None = None) -> None:
        self.path = path
        super().__init__(
            f"could not {action} {path}: {cause}. The disk is full: nothing was recorded, and every version "
            "stored before is intact. " + full_disk_steps(objects_root))


class CatalogFullError(CatalogError, DiskFullError):
    """The disk holding the catalog index is full; the index is intact and was not moved aside."""

    def __init__(self, path: str, what: str, cause: str) -> None:
        self.path = path
        super().__init__(
            f"{what} failed: the disk holding the catalog index {path} is full ({cause}). The index is "
            "not damaged and was left in place: free space on that disk and retry. The index is derived, "
            f"so deleting {path} and {path}.wal is safe (the next command rebuilds it from the store's log "
            "once there is room). If the store is on the same disk: " + full_disk_steps())


class CatalogLockedError(CatalogError):
    """The catalog lock could not be taken within the timeout."""


class CatalogCorruptError(CatalogError):
    """The catalog file cannot be opened; the object store still holds the truth."""

    def __init__(self, path: str, cause: str) -> None:
        super().__init__(
            f"the catalog {path} cannot be opened ({cause}). The objects are intact and hold "
            "every version: move the file aside and run `cas-repo rebuild-catalog` to recreate it"
        )


class QueryError(CatalogError, ValueError):
    """A user SQL query is malformed or refers to something that does not exist."""


class ReadOnlyQueryError(QueryError):
    """A user SQL query tried to write or change the session."""


class InvalidFilterError(QueryError):
    """A search filter or order key that does not follow the filter grammar (docs/search.md)."""


class ConcurrentModificationError(CatalogError):
    """A catalog write kept conflicting with other writers past the retry budget."""


# --- Qlib integration -----------------------------------------------------------------


class QlibRecorderError(CasRepoError):
    """Qlib's Recorder (MLflow) failed while mirroring a save; nothing was stored in cas-repo."""


class QlibNotInitializedError(QlibRecorderError):
    """A store with ``use_qlib_recorder=True`` saved before ``qlib.init()`` was called."""

    def __init__(self, detail: str = "") -> None:
        super().__init__(
            "the Qlib Recorder is not initialised" + (f" ({detail})" if detail else "")
            + ": call qlib.init(...) (with an exp_manager, e.g. an MLflow file: or sqlite: URI) "
            "before saving with use_qlib_recorder=True, or open the store without it; "
            "nothing was saved")


class RecorderNotFoundError(CasRepoError, FileNotFoundError):
    """No version records this Qlib recorder id (and artifact)."""

    def __init__(self, recorder_id: str, artifact: str | None = None) -> None:
        self.recorder_id = recorder_id
        what = f"Qlib recorder {recorder_id!r}" + (f" artifact {artifact!r}" if artifact else "")
        super().__init__(f"no version records {what}; runs logged outside cas-repo can be "
                         "imported with `cas-repo import-mlruns PATH`")

    def __str__(self) -> str:
        return self.args[0]


class AmbiguousRecorderError(CasRepoError, LookupError):
    """One recorder run holds several stored artifacts; the caller must name one."""


# --- maintenance ---------------------------------------------------------------------


class MaintenanceError(CasRepoError):
    """A maintenance tool (fsck, gc, retain, rebuild-catalog) could not proceed."""


class GcRefusedError(MaintenanceError):
    """gc found the catalog and the object store out of step and deleted nothing."""


class RetentionPolicyError(MaintenanceError, ValueError):
    """A retention policy that cannot be applied as written (bad predicate, no criterion)."""


class MirrorError(MaintenanceError):
    """A mirror run stopped before copying more: the source is damaged, or is not a store."""


class MirrorDivergedError(MirrorError):
    """The mirror holds a commit the source does not hold at that position: something wrote
    into the mirror (a mirror takes no writes of its own), or it mirrors another store."""


class InvalidPolicyError(RetentionPolicyError):
    """A store policy refused: ``field`` names what is wrong ("" for the policy as a whole)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class NoPolicyError(MaintenanceError, LookupError):
    """The store holds no retention policy, so there is nothing for ``maintain`` to apply."""

    def __init__(self) -> None:
        super().__init__("this store has no retention policy; set one with "
                         "cas_repo.maintenance.set_policy(store, policy) (docs/maintenance.md)")
        self.cli_message = ("this store has no retention policy; set one with `cas-repo policy set FILE` "
                            "(docs/maintenance.md shows an example file)")


class PolicyChangedError(MaintenanceError):
    """The store's policy changed between reading it and setting a new one."""

    def __init__(self, expected: int | None, actual: int | None) -> None:
        def name(p: int | None) -> str:
            return "none" if p is None else f"the one of log commit {p}"

        super().__init__(f"the store's policy changed while this one was being set (expected {name(expected)}, "
                         f"found {name(actual)}); review it with current_policy(store) and set yours again")
        self.cli_message = (f"the store's policy changed while this one was being set (expected {name(expected)}, "
                            f"found {name(actual)}); review it with `cas-repo policy show` and set yours again")
        self.expected, self.actual = expected, actual


# --- aliases ---------------------------------------------------------------------


class InvalidAliasError(InvalidMetadataError):
    """An alias name or a ``model@…`` reference that cannot be read one way only."""


class AliasNotFoundError(CasRepoError, LookupError):
    """``model@alias`` names an alias that is not set."""

    def __init__(self, model_id: str, alias: str, when: str | None = None) -> None:
        """``when``: the store was read as of a past time (``"as of 2026-01-05 13:30 UTC"``)."""
        self.model_id, self.alias = model_id, alias
        if when is not None:
            super().__init__(f"model {model_id!r} had no alias {alias!r} {when}")
            return
        facts = f"model {model_id!r} has no alias {alias!r}"
        super().__init__(f"{facts}; `aliases({model_id!r})` lists its aliases, "
                         f"`set_alias({model_id!r}, {alias!r}, VERSION)` sets one")
        self.cli_message = (f"{facts}; `cas-repo alias ls {model_id}` lists its aliases, "
                            f"`cas-repo alias set {model_id} {alias} VERSION` sets one")


class AliasTargetError(CasRepoError, ValueError):
    """An alias cannot point at that version (missing, purged, or its model tombstoned)."""


# --- following the log -----------------------------------------------------------


class WatchError(CasRepoError):
    """Following the log, or handing its changes to a handler, cannot go on."""


class InvalidWatchFilterError(WatchError, ValueError):
    """A follow filter or start position that cannot be used (an unknown kind, a negative position)."""


class CursorError(WatchError):
    """A watch cursor file cannot be used: unreadable, of another store, or past the log's end."""


class CursorLockedError(CursorError):
    """Another watcher holds the cursor file's lock."""


class HandlerFailedError(WatchError):
    """A change's handler still failed after its retries; the cursor was left before that change."""

    def __init__(self, change_id: str, message: str) -> None:
        self.change_id = change_id
        super().__init__(message)


class DeliveryError(WatchError):
    """One attempt to hand a change to its handler failed.

    ``permanent``: retrying cannot help (the receiver refused the request). ``retry_after``:
    seconds the receiver asked to wait before the next attempt (None: it did not say).
    """

    def __init__(self, message: str, *, permanent: bool = False, retry_after: float | None = None) -> None:
        self.permanent = permanent
        self.retry_after = retry_after
        super().__init__(message)
