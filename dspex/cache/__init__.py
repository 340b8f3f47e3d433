"""The LM response cache both implementations share (see :class:`ResponseCache`)."""

from dspex.cache._cache import CALL_CACHE, CacheReport, CacheUse, Claims, ResponseCache, key_of

__all__ = ["CALL_CACHE", "CacheReport", "CacheUse", "Claims", "ResponseCache", "key_of"]
