"""Django's Redis cache, with one redis client per connection pool.

Django's RedisCacheClient builds a new `redis.Redis` object on every cache call; building one
fills its table of response callbacks, a cost on every call of the ack path (bench/NOTES.md). The
client holds no per-call state and its pool notices forks, so one per pool is enough."""

from __future__ import annotations

from typing import Any

from django.core.cache.backends.redis import RedisCache, RedisCacheClient


class _ReusingClient(RedisCacheClient):
    def get_client(self, key: Any = None, *, write: bool = False) -> Any:
        # Private helpers of Django's client, absent from django-stubs.
        index = self._get_connection_pool_index(write)  # type: ignore[attr-defined]
        clients: dict[int, Any] = self.__dict__.setdefault("_clients", {})
        client = clients.get(index)
        if client is None:
            pool = self._get_connection_pool(write)  # type: ignore[attr-defined]
            client = clients[index] = self._client(connection_pool=pool)  # type: ignore[attr-defined]
        return client


class PooledRedisCache(RedisCache):
    def __init__(self, server: str, params: dict[str, Any]) -> None:
        super().__init__(server, params)
        self._class = _ReusingClient
