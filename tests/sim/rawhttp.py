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


def raw_ws_first_frame(http_url: str, target: str, timeout: float = 10.0) -> tuple[int, str | None]:
    """Open a WebSocket with ``target`` sent as raw UTF-8 bytes; (HTTP status, first text frame or None).

    Every WebSocket client library percent-encodes the target, so the handshake is written by hand; the
    server's frames are unmasked, and the first one of a generated stream is small, so one frame is parsed."""
    url = urlsplit(http_url)
    request = (b"GET " + target.encode("utf-8") + b" HTTP/1.1\r\nHost: " + url.netloc.encode() +
               b"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
               b"Sec-WebSocket-Version: 13\r\n\r\n")
    with socket.create_connection((url.hostname, url.port), timeout=timeout) as sock:
        sock.sendall(request)
        buffer = b""
        while b"\r\n\r\n" not in buffer:
            chunk = sock.recv(65536)
            if not chunk:
                break
            buffer += chunk
        head, _, rest = buffer.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        if status != 101:
            return status, None

        def read(n: int) -> bytes:
            nonlocal rest
            while len(rest) < n:
                rest += sock.recv(65536)
            data, rest = rest[:n], rest[n:]
            return data

        while True:
            opcode, length = read(2)
            length &= 0x7F
            if length == 126:
                length = int.from_bytes(read(2), "big")
            elif length == 127:
                length = int.from_bytes(read(8), "big")
            payload = read(length)
            if opcode & 0x0F == 0x1:
                return status, payload.decode("utf-8")
