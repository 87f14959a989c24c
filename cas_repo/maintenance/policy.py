"""The store's retention policy: set, read and cleared through the log, so every machine sees one.

Setting it is one commit holding a :class:`~cas_repo.log.ops.PolicyOp`, built like an
alias move: on the state at the position it lands, naming the policy it replaces
(``previous``, that policy's commit). Two processes setting it at once race for a
position like any writers; the loser rebuilds on the winner's state, so both are in the
history and the later one is the policy. A caller that must not overwrite a policy it
has not seen passes ``expected`` (the position it read) and gets
:class:`~cas_repo.errors.PolicyChangedError` instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from ..catalog.history import policy_history as catalog_policy_history
from ..errors import PolicyChangedError
from ..log.ops import PolicyOp
from ..log.state import StoreState
from ..repository import ModelStore
from .common import utcnow
from .policy_spec import Policy

# ``expected`` left out: set whatever the current policy is.
ANY = object()


@dataclass(frozen=True, slots=True)
class PolicyRecord:
    """A policy as the store recorded it: ``policy`` None when this record cleared it."""

    position: int
    previous: int | None
    policy: Policy | None
    at: datetime
    writer: str
    author: str | None

    @property
    def host(self) -> str:
        return self.writer.partition("/")[0]


@dataclass(frozen=True, slots=True)
class PolicySetResult:
    """What :func:`set_policy` did: the commit (None: the policy was that already) and what it replaced."""

    position: int | None
    previous: PolicyRecord | None


def _record(position: int, op: PolicyOp, author: str | None) -> PolicyRecord:
    return PolicyRecord(position, op.previous, None if op.policy is None else Policy.from_json(op.policy), op.at,
                        op.by, author)


def _current(store: ModelStore) -> tuple[int | None, PolicyOp | None]:
    with store.ledger.current() as st:
        return st.policy_position, st.policy_op


def policy_record(store: ModelStore) -> PolicyRecord | None:
    """The newest policy operation (a set or a clear), or None if the store never had a policy.

    Raises:
        InvalidPolicyError: the stored policy has a field this cas-repo does not know (a
            newer one set it).
    """
    position, op = _current(store)
    if position is None or op is None:
        return None
    commit = store.ledger.log.read(position)
    return _record(position, op, commit.author if commit is not None else None)


def current_policy(store: ModelStore) -> PolicyRecord | None:
    """The store's policy now, with who set it and when; None when it has none (never set, or cleared)."""
    record = policy_record(store)
    return record if record is not None and record.policy is not None else None


def policy_history(store: ModelStore) -> list[PolicyRecord]:
    """Every policy the store had, set or cleared, oldest first."""
    with store.catalog.session() as s:
        changes = catalog_policy_history(s)
    return [PolicyRecord(c.log_position, c.previous, None if c.policy is None else Policy.from_json(c.policy),
                         c.set_at, c.set_by, c.author) for c in changes]


def set_policy(store: ModelStore, policy: Policy | None, *, expected: object = ANY,
               now: datetime | None = None) -> PolicySetResult:
    """Make ``policy`` the store's policy (None: clear it), as one log commit.

    Args:
        expected: the position of the policy the caller read (None: it read none); if the
            store's policy is another one when the commit lands, nothing is committed.

    Raises:
        PolicyChangedError: ``expected`` is not the store's policy any more.
    """
    body = None if policy is None else policy.to_json()
    before: dict[str, object] = {}

    def build(st: StoreState) -> list[PolicyOp]:
        if expected is not ANY and st.policy_position != expected:
            raise PolicyChangedError(expected if isinstance(expected, int) else None, st.policy_position)
        before["position"], before["op"] = st.policy_position, st.policy_op
        if st.policy == body and (st.policy_op is not None or body is None):
            return []  # that is the policy already (or none is set, and none was asked for)
        return [PolicyOp(body, st.policy_position, now or utcnow(), store.ledger.writer)]

    position, ops = store.ledger.commit(build)
    prev_position, prev_op = before.get("position"), before.get("op")
    previous = None
    if isinstance(prev_position, int) and isinstance(prev_op, PolicyOp):
        commit = store.ledger.log.read(prev_position)
        previous = _record(prev_position, prev_op, commit.author if commit is not None else None)
    return PolicySetResult(position if ops else None, previous)


def clear_policy(store: ModelStore, *, expected: object = ANY, now: datetime | None = None) -> PolicySetResult:
    """Clear the store's policy (``maintain`` then does nothing until one is set again)."""
    return set_policy(store, None, expected=expected, now=now)
