"""A snapshot schedule for the Qdrant server the compose and Kubernetes targets run.

Qdrant takes a full snapshot on ``POST /snapshots`` and lists and deletes them through its API,
so one small script does the whole job from any container that can reach it: the official image
has bash but neither curl nor wget, so it speaks HTTP over bash's ``/dev/tcp``. Snapshot names
carry their creation time, so sorting them by name finds the oldest to delete.
"""

from __future__ import annotations

from ..config.deploy import Deploy

# $1: method, $2: path. Prints the response body (Connection: close ends it).
_SCRIPT = r"""set -eu
host={host}; port={port}
req() {{
  exec 3<>/dev/tcp/$host/$port
  printf '%s %s HTTP/1.1\r\nHost: %s\r\nContent-Length: 0\r\nConnection: close\r\n\r\n' "$1" "$2" "$host" >&3
  sed '1,/^\r$/d' <&3
  exec 3>&-
}}
req POST /snapshots
for name in $(req GET /snapshots | grep -o 'full-snapshot-[^"]*\.snapshot' | sort -r | tail -n +{first_deleted}); do
  req DELETE "/snapshots/$name"
done
"""


def snapshot_script(deploy: Deploy, host: str, port: int) -> str:
    """Take one snapshot, then delete all but the newest ``qdrant_snapshots_kept``."""
    return _SCRIPT.format(host=host, port=port, first_deleted=deploy.qdrant_snapshots_kept + 1)


def cron_schedule(hours: int) -> str:
    """``qdrant_snapshot_hours`` (a divisor or multiple of 24, checked by the config) as a cron line."""
    if hours >= 24:
        return "17 3 * * *" if hours == 24 else f"17 3 */{hours // 24} * *"
    return f"17 */{hours} * * *"
