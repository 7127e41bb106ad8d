"""Recovery: the sweeper (lost work back to the pool, stragglers finalized), slot reconciliation."""
