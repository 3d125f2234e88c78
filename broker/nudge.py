"""Wake-ups between processes over Redis pub/sub, so the scheduler reacts to a finished trial
at once instead of at its next poll. Without Redis (the embedded filesystem broker) nothing is
sent and the scheduler simply polls; a lost nudge costs one poll interval, never a result.
"""
from __future__ import annotations

import logging
from collections import Counter
from functools import lru_cache

from scion.settings import get_settings

log = logging.getLogger(__name__)

CHANNEL = "scion:nudge"
TRIAL, JOB = b"trial", b"job"  # what happened: a trial finished; a job arrived (leases to take)


def _redis_url(broker: str) -> str | None:
    return broker if broker.startswith(("redis://", "rediss://", "unix://")) else None


class Nudger:
    """The sending side (workers, API): fire and forget."""

    def __init__(self, broker: str) -> None:
        self.url = _redis_url(broker)
        self._client = None

    def nudge(self, what: bytes = TRIAL, count: int = 1) -> None:
        """Say that ``count`` of ``what`` happened (trials finished together count as one nudge)."""
        if self.url is None:
            return
        try:
            if self._client is None:
                import redis

                self._client = redis.Redis.from_url(self.url, socket_timeout=1, socket_connect_timeout=1)
            self._client.publish(CHANNEL, what if count == 1 else b"%s %d" % (what, count))
        except Exception:  # the scheduler polls anyway
            self._client = None
            log.debug("nudge failed", exc_info=True)


class NudgeListener:
    """The receiving side (scheduler): ``wait`` returns early when nudged."""

    def __init__(self, broker: str) -> None:
        self.url = _redis_url(broker)
        self._pubsub = None

    def wait(self, timeout: float, sleep) -> Counter[bytes]:
        """Block up to ``timeout`` seconds or until a nudge; ``sleep`` is the fallback. Returns what
        the nudges said, each with how many times it happened (empty after a quiet timeout; one JOB
        when it cannot tell, as after a sleep)."""
        if self.url is None:
            sleep(timeout)
            return Counter({JOB: 1})
        try:
            if self._pubsub is None:
                import redis

                self._pubsub = redis.Redis.from_url(self.url, socket_connect_timeout=2).pubsub(
                    ignore_subscribe_messages=True)
                self._pubsub.subscribe(CHANNEL)
            said: Counter[bytes] = Counter()
            message = self._pubsub.get_message(timeout=timeout)
            while message is not None:  # one pass serves them all
                what, _, count = message["data"].partition(b" ")
                said[what] += int(count or 1)
                message = self._pubsub.get_message(timeout=0)
            return said
        except Exception:
            self._pubsub = None
            log.debug("nudge listener failed; polling", exc_info=True)
            sleep(timeout)
            return Counter({JOB: 1})


@lru_cache(maxsize=1)
def nudger() -> Nudger:
    """This process's sender, for the configured broker."""
    return Nudger(get_settings().broker)
