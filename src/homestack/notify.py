"""systemd readiness (sd_notify): tell a Type=notify unit's manager that the server accepts requests.

The protocol is one datagram on the socket named by $NOTIFY_SOCKET; without it (not under
systemd) this does nothing.
"""

from __future__ import annotations

import os
import socket


def notify_ready() -> bool:
    """Send READY=1 if systemd asked for it; True when sent."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):  # an abstract socket: a leading NUL byte
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto(b"READY=1", address)
    except OSError:  # the manager went away: nothing to tell
        return False
    return True
