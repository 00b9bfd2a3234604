"""In-memory function state with StateFun's TTL semantics on the harness's virtual clock.

All TTL decisions live here:

- a value of a ``ValueSpec`` with ``expire_after_write=d`` written at ``t`` expires at ``t + d``;
  each write moves that to ``now + d``;
- with ``expire_after_call=d``, every invocation of the address whose effects are applied
  moves the expiry of each of its values to ``now + d`` (a write does too);
- a value is expired once ``now >= expire_at`` (Flink's ``lastAccess + ttl <= now``), and an
  expired value is never returned: it is dropped before the invocation that would see it, and
  before any inspection.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from kstatefun.model import Address
from kstatefun.sdk.functions import FunctionSpec

Cells = dict[str, "Cell"]


class Cell:
    """One stored value: its bytes and when it expires (None: never)."""

    __slots__ = ("data", "expire_at")

    def __init__(self, data: bytes, expire_at: int | None) -> None:
        self.data = data
        self.expire_at = expire_at


@dataclass(frozen=True, slots=True)
class FunctionInfo:
    """A registered function with its TTLs in milliseconds, computed once."""

    spec: FunctionSpec
    ttl_ms: Mapping[str, int]  # only the values that expire
    after_call: tuple[tuple[str, int], ...]

    @staticmethod
    def of(spec: FunctionSpec) -> FunctionInfo:
        ttl = {name: s.duration for name, s in spec.specs.items() if s.duration > 0}
        after_call = tuple(
            (name, ttl[name]) for name, s in spec.specs.items() if name in ttl and s.after_call
        )
        return FunctionInfo(spec, ttl, after_call)


class MemoryState:
    """The state of every address, by address and value name."""

    __slots__ = ("_cells",)

    def __init__(self) -> None:
        self._cells: dict[Address, Cells] = {}

    def live(self, address: Address, fn: FunctionInfo, now_ms: int) -> Cells | None:
        """The address's values that have not expired at ``now_ms`` (expired ones are dropped)."""
        cells = self._cells.get(address)
        if cells is not None and fn.ttl_ms:
            expired = [
                name
                for name, cell in cells.items()
                if cell.expire_at is not None and cell.expire_at <= now_ms
            ]
            for name in expired:
                del cells[name]
            if not cells:
                del self._cells[address]
                return None
        return cells

    def commit(
        self,
        address: Address,
        fn: FunctionInfo,
        cells: Cells | None,
        mutations: Mapping[str, bytes | None],
        now_ms: int,
    ) -> None:
        """Apply one successful invocation: its writes and deletes, then the call refresh.

        ``cells`` is what ``live`` returned for this invocation.
        """
        if not mutations and not (fn.after_call and cells):
            return
        if cells is None:
            cells = self._cells.setdefault(address, {})
        ttl_ms = fn.ttl_ms
        for name, data in mutations.items():
            if data is None:
                cells.pop(name, None)
            else:
                ttl = ttl_ms.get(name)
                cells[name] = Cell(data, None if ttl is None else now_ms + ttl)
        for name, ttl in fn.after_call:
            cell = cells.get(name)
            if cell is not None:
                cell.expire_at = now_ms + ttl
        if not cells:
            self._cells.pop(address, None)

    def write(
        self, address: Address, fn: FunctionInfo, name: str, data: bytes, now_ms: int
    ) -> None:
        """Store one value as if an invocation at ``now_ms`` had written it."""
        ttl = fn.ttl_ms.get(name)
        cells = self._cells.setdefault(address, {})
        cells[name] = Cell(data, None if ttl is None else now_ms + ttl)
