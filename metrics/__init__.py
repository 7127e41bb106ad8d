"""Progress hashes and error buckets in Redis, and metric collection."""
