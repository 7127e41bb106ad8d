"""Recovery: the lease sweeper, re-dispatch from the ledger, and failed-batch recovery."""
