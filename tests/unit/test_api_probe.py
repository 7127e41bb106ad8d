"""``python -m api.probe``: the exit code follows the answer, the key goes in a header."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from api.probe import main

KEY = "bl_0123456789ab_secret"


class _Ready(BaseHTTPRequestHandler):
    """200 on /readyz for the right key, 401 without it, 503 on /down."""

    def do_GET(self) -> None:
        if self.path == "/down":
            self.send_response(503)
        elif self.headers.get("Authorization") == f"Bearer {KEY}":
            self.send_response(200)
        else:
            self.send_response(401)
        self.end_headers()
        self.wfile.write(b'{"ready": false}')

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def server() -> Iterator[str]:
    httpd = HTTPServer(("127.0.0.1", 0), _Ready)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_the_probe_sends_the_key_file_and_exits_by_status(server: str, tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text(KEY + "\n")  # Secrets mounted as files may end with a newline
    assert main([f"{server}/readyz", "--key-file", str(key_file)]) == 0
    assert main([f"{server}/readyz"]) == 1
    assert main([f"{server}/down", "--key-file", str(key_file)]) == 1


def test_the_probe_fails_when_nothing_answers(tmp_path: Path) -> None:
    assert main(["http://127.0.0.1:9/readyz", "--timeout", "2"]) == 1
