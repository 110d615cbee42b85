"""One bounded connectivity check, shared by the hub weights resolver and the HES downloader."""
from __future__ import annotations

import socket
import threading


def host_answers(host: str, port: int = 443, timeout: float = 1.0) -> bool:
    """True when a TCP connection to host:port opens within about `timeout` seconds.

    DNS lookups have no timeout of their own, so the attempt runs in a daemon thread that we stop
    waiting for: offline machines answer False quickly instead of hanging.
    """
    result: list[bool] = []

    def attempt() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                result.append(True)
        except OSError:
            result.append(False)

    worker = threading.Thread(target=attempt, daemon=True)
    worker.start()
    worker.join(timeout + 0.5)
    return bool(result and result[0])
