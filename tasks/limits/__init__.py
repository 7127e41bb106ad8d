"""Limits shared by every worker, kept in Redis: leased concurrency slots and token buckets.

``semaphore`` caps how many items run at once (globally, per customer, per
publisher); ``rate`` paces calls to external services. Both read the server's
clock (``TIME`` inside Lua) so hosts with skewed clocks still agree.
"""
