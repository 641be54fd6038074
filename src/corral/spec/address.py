"""HOST:PORT addresses (the control listener's `control.listen`, `--listen`)."""

from __future__ import annotations


def parse_address(text: str) -> tuple[str, int]:
    """HOST:PORT (IPv6 as [HOST]:PORT); port 0 picks a free one. Raises ValueError."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{text!r}: expected HOST:PORT (port 0-65535)")
    host = host.strip("[]")
    if not host:
        raise ValueError(f"{text!r}: expected HOST:PORT with a host")
    return host, int(port)
