"""The live wing: debug grants (store, watcher) and cross-process buffer flushes over Redis.

Optional, and the only place `redis` is imported. `configure(redis_url=)` plugs `plug.RedisLive` into
the core's state through the `_state.Live` interface; nothing below `configure()` imports this.
"""
