"""Read-through caches of catalog data, and warming them before a batch starts."""

from cache_warming.customers import customer_profiles
from cache_warming.publishers import publisher_profiles
from cache_warming.warming import warm_cache_before_batch

__all__ = ["customer_profiles", "publisher_profiles", "warm_cache_before_batch"]
