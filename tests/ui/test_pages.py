"""The pure parts of the pages: alias spans from moves, which metric value is best."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from cas_repo.catalog.values import AliasChange
from cas_repo.ui.pages import AliasSpan, alias_spans, best_values, lower_is_better

T = datetime(2026, 3, 2, tzinfo=UTC)


def _move(position: int, alias: str, before: int | None, after: int | None) -> AliasChange:
    return AliasChange("m", alias, before, after, T + timedelta(hours=position), f"h{position}/1/ab", position,
                       None if position == 2 else f"p{position}")


def test_alias_spans_close_on_each_move_and_reopen_after_a_removal():
    spans = alias_spans([_move(1, "prod", None, 1), _move(2, "shadow", None, 1), _move(3, "prod", 1, 2),
                         _move(4, "prod", 2, None), _move(5, "prod", None, 1)])
    h = lambda n: T + timedelta(hours=n)  # noqa: E731
    # Each span names who set it (person@host); a move from before authors were recorded: unknown.
    assert spans == [AliasSpan("prod", 1, h(1), "p1@h1", h(3), 2), AliasSpan("shadow", 1, h(2), "unknown@h2"),
                     AliasSpan("prod", 2, h(3), "p3@h3", h(4), None), AliasSpan("prod", 1, h(5), "p5@h5")]
    assert alias_spans([]) == []


def test_best_is_the_largest_unless_the_name_says_error_or_loss():
    assert [m for m in ("IC", "Rank IC", "max_drawdown", "annualized_return", "mse", "val_loss", "RMSE",
                        "log-loss", "error_rate") if lower_is_better(m)] == [
        "mse", "val_loss", "RMSE", "log-loss", "error_rate"]
    values = {1: {"IC": 0.03, "mse": 0.9, "only": 1.0}, 2: {"IC": 0.05, "mse": 0.7}, 3: {"IC": 0.05}}
    # A metric only one version holds has nothing to be best against.
    assert best_values(values, ["IC", "mse", "only"]) == {"IC": 0.05, "mse": 0.7}
