"""Container probe for ``batchline api``: GET a URL, optionally with a key read from a file.

``/readyz`` needs a key, and a Kubernetes ``httpGet`` probe can only send literal
headers, so the readiness probe runs this instead, with a read key mounted from a
Secret as a file (never an argument or a URL, which ``ps`` and logs would show)::

    python -m api.probe http://127.0.0.1:8080/readyz --key-file /var/run/batchline-probe/key

Exit 0 on a 2xx answer, 1 otherwise (the answer's first bytes go to stderr). The
standard library only: a probe that starts every few seconds must start fast.
"""

from __future__ import annotations

import argparse
import sys
import urllib.error
import urllib.request
from pathlib import Path


def probe(url: str, key: str | None, timeout: float) -> tuple[bool, str]:
    """GET ``url`` (with ``Authorization: Bearer key`` when given): (answered 2xx, why not)."""
    request = urllib.request.Request(url)
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return 200 <= response.status < 300, ""
    except urllib.error.HTTPError as error:
        return False, f"{error.code}: {error.read(500).decode(errors='replace')}"
    except (urllib.error.URLError, TimeoutError, OSError) as error:
        return False, str(error)


def main(argv: list[str] | None = None) -> int:
    """Probe the URL in ``argv``; the exit code is the container's health."""
    parser = argparse.ArgumentParser(prog="python -m api.probe", description=__doc__)
    parser.add_argument("url")
    parser.add_argument("--key-file", type=Path, help="a file holding an API key (read scope)")
    parser.add_argument("--timeout", type=float, default=5.0)
    args = parser.parse_args(argv)
    key = args.key_file.read_text().strip() if args.key_file else None
    healthy, why = probe(args.url, key, args.timeout)
    if not healthy:
        print(f"{args.url}: {why}", file=sys.stderr)
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
