"""The daily quota's unit: one image of a user's ANIMEAPI_DAILY_LIMIT, taken per request.

A request for n images holds n units (take_more after the body is read); each of its n rows
adopts one. One owner at a time. The throttle takes the unit for the request; a generation row adopts it
(and records its day); from then on the pipeline gives it back if that generation fails, sync or
async, wherever it fails. A request that created no generation (a 400, a policy refusal, a crash
before the row) has its unit released by the view. Both are safe to call twice.
"""

import datetime
import logging
from dataclasses import dataclass, field

from . import limits

log = logging.getLogger(__name__)


@dataclass
class DailyUnit:
    user_id: int
    day: datetime.date
    test: bool
    state: limits.LimitState
    count: int = 1  # units held: one per image the request asks for
    _owner: str = field(default="request")  # "request", "generation" or "released"

    def take_more(self, extra: int) -> None:
        """Hold `extra` more units of the same day (a request for 1 + extra images): all or
        DailyLimitReached, with the units already held left for release()."""
        if extra <= 0:
            return
        allowed, state, _ = limits.take_daily_quota(user_id=self.user_id, test=self.test, amount=extra,
                                                    day=self.day.isoformat())
        if not allowed:
            raise DailyLimitReached(state)
        self.count += extra
        self.state = state

    def release(self) -> None:
        """Give the units back if the request still holds them (no generation was created)."""
        if self._owner != "request":
            return
        self._owner = "released"
        give_back(user_id=self.user_id, day=self.day, test=self.test, amount=self.count)

    def adopt(self) -> datetime.date:
        """Hand the units to the generations being created (one each): their day, for a later give_back."""
        self._owner = "generation"
        return self.day

    @property
    def released(self) -> bool:
        return self._owner == "released"


class DailyLimitReached(Exception):
    def __init__(self, state: limits.LimitState):
        super().__init__("daily limit reached")
        self.state = state


def take(*, user_id: int, test: bool) -> DailyUnit:
    """One unit of today's quota, or DailyLimitReached; LimitsUnavailable when Redis is down."""
    allowed, state, day = limits.take_daily_quota(user_id=user_id, test=test)
    if not allowed:
        raise DailyLimitReached(state)
    return DailyUnit(user_id=user_id, day=datetime.date.fromisoformat(day), test=test, state=state)


def give_back(*, user_id: int, day: datetime.date | None, test: bool, amount: int = 1) -> None:
    """Return `amount` units of `day`'s quota. A Redis outage loses nothing worse than this unit until
    midnight: refusing an answer over it would be worse."""
    if day is None:
        return
    try:
        limits.give_back_daily_quota(user_id=user_id, day=day.isoformat(), test=test, amount=amount)
    except limits.LimitsUnavailable:
        log.warning("could not give back a daily unit of user %s (%s)", user_id, day)
