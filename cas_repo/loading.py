"""Reading a version's model back: manifest, then chunks, every byte verified before unpickling.

1. Locate the manifest in the state the version's row came from (no new I/O).
2. Read and verify it; read and verify each chunk, straight into the buffers the
   unpickler will use (:func:`cas_repo.content.from_content`).
3. A pack that vanished under the read was moved by a concurrent gc, whose commit is in
   the log by then: fold it in and read once more. A second miss is damage.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .content import from_content
from .digest import Digest
from .errors import IntegrityError, ModelPurgedError, ObjectNotFoundError
from .location import Location
from .log.ledger import Ledger
from .log.state import VersionRow
from .manifest import Manifest
from .objects.keys import parse_pack_key
from .objects.store import ObjectStore


class PackGone(Exception):
    """A pack a read needed is not in the object store (moved by gc, or lost)."""

    def __init__(self, key: str, digest: str) -> None:
        super().__init__(key)
        self.pack, self.digest = key, digest


class VersionReader:
    """Loads versions' models from the object store, at the locations the ledger's fold gives."""

    def __init__(self, ledger: Ledger, objects: ObjectStore) -> None:
        self.ledger = ledger
        self.objects = objects

    def load(self, row: VersionRow) -> Any:
        """The model of ``row``, verified.

        Raises:
            ModelPurgedError: gc freed that version's content.
            IntegrityError: stored bytes were altered or lost (names model and version).
            UnsafePickleError: the pickle names a global outside the allowlist.
        """
        try:
            try:
                return self.assemble(row)
            except PackGone:
                # A concurrent gc moved the entries and dropped the pack: its commit is in
                # the log now, so folding it in gives the new locations.
                self.ledger.refresh()
                return self.assemble(row)
        except PackGone as gone:
            raise IntegrityError(f"pack {gone.pack} is missing from the object store", expected=gone.digest,
                                 actual="missing").with_version(row.model_id, row.version) from None
        except IntegrityError as exc:
            raise exc.with_version(row.model_id, row.version) from exc

    def load_many(self, rows: Iterable[VersionRow], max_workers: int = 4) -> list[Any]:
        """The models of ``rows``, in order, read by a small thread pool."""
        rows = list(rows)
        if not rows:
            return []
        with ThreadPoolExecutor(max_workers=max(1, min(max_workers, len(rows)))) as pool:
            return list(pool.map(self.load, rows))

    def locate(self, digests: Sequence[Digest | str], row: VersionRow) -> list[Location]:
        """Where the entries ``digests`` of ``row``'s version are, in the state last folded."""
        # The state the row came from (a moved pack makes load fold in and retry).
        with self.ledger.cached() as st:
            found = st.locate(digests)
            if len(found) < len({d if isinstance(d, str) else d.hex for d in digests}):
                ref = st.models[row.model_id].versions[row.version - 1] if row.model_id in st.models else None
                if ref is not None and ref.mark == "purge":
                    raise ModelPurgedError(row.model_id, row.version, ref.mark_at)
        out = []
        for d in digests:
            h = d if isinstance(d, str) else d.hex
            if h not in found:
                raise IntegrityError("the store has no copy of an entry this version needs", expected=h,
                                     actual="missing")
            out.append(found[h])
        return out

    def assemble(self, row: VersionRow) -> Any:
        """Read, verify and unpickle ``row``'s model (raises PackGone for a vanished pack)."""
        manifest = Manifest.from_bytes(self.read(self.locate([row.manifest], row))[0])

        def read_into(digests: Sequence[Digest], views: Sequence[memoryview]) -> None:
            try:
                self.objects.read_into(self.locate(digests, row), views)
            except ObjectNotFoundError as exc:
                raise PackGone(exc.key, digests[0].hex) from exc

        return from_content(manifest, lambda digests: self.read(self.locate(digests, row)), read_into)

    def read(self, locs: Sequence[Location]) -> list[bytes | memoryview]:
        """The verified bytes at ``locs`` (raises PackGone for a vanished pack)."""
        try:
            return self.objects.read_many(locs)
        except ObjectNotFoundError as exc:
            gone = parse_pack_key(exc.key)
            lost = next((l for l in locs if l.pack == gone), locs[0])
            raise PackGone(exc.key, lost.digest.hex) from exc
