"""A raw HTTP/1.1 GET whose request target is sent as given: not percent-encoded, UTF-8 bytes allowed.

urllib and websockets' client percent-encode what they send; Binance's users do not all do so, and the
simulator must accept both forms, so tests need a client that sends the target byte for byte."""

from __future__ import annotations

import json
import socket
from typing import Any
from urllib.parse import urlsplit


def raw_get(http_url: str, target: str, timeout: float = 10.0) -> tuple[int, Any]:
    """(status, decoded JSON body) of ``GET <target>`` with the target's UTF-8 bytes on the request line."""
    url = urlsplit(http_url)
    request = b"GET " + target.encode("utf-8") + b" HTTP/1.1\r\nHost: " + url.netloc.encode() + \
        b"\r\nConnection: close\r\n\r\n"
    with socket.create_connection((url.hostname, url.port), timeout=timeout) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(body) if body else None
