"""The image's HEALTHCHECK: exit 0 only while `/readyz` answers ready (model loaded and warm, not draining).

Reads the port from DUO_PORT (default 8000) and speaks HTTPS when DUO_SSL_CERTFILE is set, without checking the
certificate (it is the container's own, reached on loopback).
"""

from __future__ import annotations

import json
import os
import ssl
import sys
import urllib.request


def main() -> int:
    tls = bool(os.environ.get("DUO_SSL_CERTFILE"))
    url = f"{'https' if tls else 'http'}://127.0.0.1:{os.environ.get('DUO_PORT') or '8000'}/readyz"
    context = ssl._create_unverified_context() if tls else None
    try:
        with urllib.request.urlopen(url, timeout=4, context=context) as response:
            status = json.loads(response.read()).get("status")
    except (OSError, ValueError) as exc:  # refused, timed out, 503 (loading / closing), not JSON
        print(f"not ready: {exc}", file=sys.stderr)
        return 1
    print(status)
    return 0 if status == "ready" else 1


if __name__ == "__main__":
    sys.exit(main())
