"""The gateway's record of each runner's slots, for prompt-cache affinity.

The gateway is a runner's only client, so it knows which slot each request it
sent is on and whose prompt each slot holds. ``routing.affinity.choose_slot``
decides; this module keeps the table, names the slot in the request body
(llama-server's ``id_slot``) and forgets a runner's slots when it restarts.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from ..routing.affinity import SlotView, choose_slot
from ..runners import Runner
from .surfaces import Operation


class SlotTable:
    """One runner process's slots."""

    def __init__(self, count: int, base_url: str):
        self.base_url = base_url  # a new process (a new port) starts with empty slots
        self.slots = [SlotView()] * count

    def take(self, key: str, size: int) -> int:
        """Choose the slot for conversation ``key`` (a prompt of ``size`` bytes) and mark it busy."""
        now = time.monotonic()
        index = choose_slot(key, self.slots)
        slot = self.slots[index]
        self.slots[index] = SlotView(slot.busy + 1, key, size, now)
        return index

    def give_back(self, index: int) -> None:
        slot = self.slots[index]
        self.slots[index] = dataclasses.replace(slot, busy=max(0, slot.busy - 1))


class SlotTables:
    """Every affine runner's table, by runner name."""

    def __init__(self) -> None:
        self._tables: dict[str, SlotTable] = {}

    def table(self, runner: Runner) -> SlotTable:
        """The table of the runner's current process (a ready runner with slots)."""
        count = runner.slots or 1
        table = self._tables.get(runner.name)
        if table is None or table.base_url != runner.base_url or len(table.slots) != count:
            table = self._tables[runner.name] = SlotTable(count, runner.base_url)
        return table


def affine_request(runner: Runner, operation: Operation, payload: dict[str, Any]) -> bool:
    """Whether the request goes to the slot holding its conversation: the runner pins slots (and has
    several), the operation runs a prompt, and the client did not name a slot itself."""
    kind = runner.plan.kind
    return (operation.uses_slot and kind.slot_field is not None and kind.slot_field not in payload
            and (runner.slots or 0) > 1 and kind.slot_affinity(runner.spec))


def pinned(body: bytes, field: str, index: int) -> bytes:
    """``body`` (a JSON object) with ``field: index`` added as its first member."""
    rest = body.lstrip()[1:].lstrip()
    member = f'{{"{field}":{index}'.encode()
    return member + (b"}" if rest.startswith(b"}") else b"," + rest)
