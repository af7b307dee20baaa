"""The reconciler's leader lock (services/reconciler/leader.py) against the real Redis."""

from __future__ import annotations

import time

import redis

from services.reconciler.leader import LeaderLock


def test_one_leader_at_a_time_renewal_release_and_takeover_after_expiry(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    a, b = LeaderLock(client, ttl_ms=400), LeaderLock(client, ttl_ms=400)
    assert a.acquire_or_renew() is True
    assert b.acquire_or_renew() is False  # held
    time.sleep(0.25)
    assert a.acquire_or_renew() is True  # renewed: still a's after the first TTL would have run out
    time.sleep(0.25)
    assert b.acquire_or_renew() is False
    assert b.release() is False  # b cannot release a's lock
    assert a.release() is True
    assert b.acquire_or_renew() is True  # free: b takes it
    time.sleep(0.5)  # b dies without releasing: the lock expires
    assert a.acquire_or_renew() is True
    assert b.acquire_or_renew() is False  # b's stale hold cannot be renewed over a's
    assert client.get("cxr:reconciler:leader") == a.token.encode()


def test_redis_emptied_by_a_restart_lets_the_next_pass_take_the_lock_again(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    lock = LeaderLock(client, ttl_ms=5000)
    assert lock.acquire_or_renew() is True
    client.flushdb()  # what a restart without persistence leaves
    assert lock.acquire_or_renew() is True
