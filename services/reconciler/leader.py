"""A leader lock in Redis, so that of several reconciler replicas only one acts at a time.

SET key token NX PX ttl takes it; the holder renews it before each pass and deletes it on exit, both
only while the key still holds its own token (a Lua script: check and act atomically), so a replica
whose lock expired can never extend or release the lock another replica took since. A holder that
dies without releasing it is replaced once the TTL runs out. The lock only limits duplicate work:
correctness never depends on it (each job is claimed with a compare-and-set in SQL).
"""

from __future__ import annotations

import uuid

import redis

KEY = "cxr:reconciler:leader"

_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('del', KEYS[1])
end
return 0
"""


class LeaderLock:
    def __init__(self, client: redis.Redis, ttl_ms: int, key: str = KEY) -> None:
        self.client = client
        self.ttl_ms = ttl_ms
        self.key = key
        self.token = uuid.uuid4().hex  # identifies this replica's hold; not a secret
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)

    def acquire_or_renew(self) -> bool:
        """True while this replica is the leader. Raises redis errors (the caller treats that as 'not now')."""
        if self._renew(keys=[self.key], args=[self.token, self.ttl_ms]):
            return True
        # Not ours (or gone: expired, or Redis restarted empty): try to take it.
        return bool(self.client.set(self.key, self.token, nx=True, px=self.ttl_ms))

    def release(self) -> bool:
        return bool(self._release(keys=[self.key], args=[self.token]))
