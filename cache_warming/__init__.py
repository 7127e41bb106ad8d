"""Read-through caches of catalog data, and warming them before a batch starts."""

from cache_warming.publishers import publisher_profiles, warm_cache_before_batch

__all__ = ["publisher_profiles", "warm_cache_before_batch"]
