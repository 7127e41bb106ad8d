"""``batchline demo --api``: where the API listens."""

from __future__ import annotations

import socket

from cli.demo_api import usable_port


def test_the_demo_takes_another_port_when_its_port_is_taken() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        other = usable_port("127.0.0.1", busy)
        assert other != busy
    assert usable_port("127.0.0.1", other) == other  # free: kept
