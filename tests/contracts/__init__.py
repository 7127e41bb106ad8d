"""Contract suites: one set of tests each implementation of a seam must pass.

As huey's ``StorageTests`` run against every storage backend, each module here
runs its tests against every Writer, Publisher or rate gate through a
parametrized fixture, so an in-memory or offline implementation cannot drift
from the one that talks to a real service. Implementations that need a server
(a local HTTP server, the session's Redis) carry the ``integration`` marker.
"""
