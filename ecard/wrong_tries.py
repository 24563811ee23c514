"""Wrong tries of a secret that guards a row: the card's PIN (R-32, `Card.pin_failures`) and the
e-card's password (R-45, `ECard.password_failures`). One rule for both: a wrong try counts even
though its request fails, and the try that reaches the limit locks the row."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NoReturn

import sqlalchemy as sa
from sqlalchemy.orm import InstrumentedAttribute, Session

from ecard import errors, storage


def count(
    session: Session,
    row: Any,
    failures: InstrumentedAttribute[int],
    *,
    limit: int,
    unlocked: sa.ColumnElement[bool],
    lock: Mapping[Any, Any],
    on_lock: Callable[[int], None],
    wrong: Callable[[int], errors.EcardError],
    locked: Callable[[], errors.EcardError],
) -> NoReturn:
    """Count a wrong try against `row` and raise: `wrong(tries_left)` below `limit`, `locked()`
    at it. The errors should ask the error handler to commit (`commit_state`), or the count is
    lost with the request.

    The count is the database's (`storage.count_wrong_try`), so parallel wrong tries each count.
    At the limit the row is locked by one conditional UPDATE: where `unlocked` holds, set `lock`
    (column: value). Of parallel tries at the limit only the one whose UPDATE changed the row
    runs `on_lock(failures)` (records the lock, with what else a lock does), so a lock is
    recorded once. `row` is refreshed before `on_lock` runs and before either error is raised.
    """
    n = storage.count_wrong_try(session, failures, row.id)
    if n < limit:
        session.refresh(row)
        raise wrong(limit - n)
    model = failures.class_
    changed = session.execute(sa.update(model).where(model.id == row.id, unlocked).values(lock)).rowcount
    session.refresh(row)
    if changed == 1:
        on_lock(n)
    raise locked()
