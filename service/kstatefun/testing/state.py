"""In-memory function state with StateFun's TTL semantics on the harness's virtual clock.

The TTL rules are the runtime's: runtime/effects.py applies writes and refreshes here as it does
to the worker's StateStore, and ``state/store.is_expired`` decides expiry:

- a value of a ``ValueSpec`` with ``expire_after_write=d`` written at ``t`` expires at ``t + d``;
  each write moves that to ``now + d``;
- with ``expire_after_call=d``, every invocation of the address whose effects are applied
  moves the expiry of each of its values to ``now + d`` (a write does too);
- a value is expired once ``now >= expire_at`` (Flink's ``lastAccess + ttl <= now``), and an
  expired value is never returned: it is dropped before the invocation that would see it, and
  before any inspection.
"""

from __future__ import annotations

from dataclasses import dataclass

from kstatefun.model import Address
from kstatefun.runtime.effects import StateLayout
from kstatefun.sdk.functions import FunctionSpec
from kstatefun.state.store import is_expired

Cells = dict[str, "Cell"]


class Cell:
    """One stored value: its bytes and when it expires (None: never)."""

    __slots__ = ("data", "expire_at")

    def __init__(self, data: bytes, expire_at: int | None) -> None:
        self.data = data
        self.expire_at = expire_at


@dataclass(frozen=True, slots=True)
class FunctionInfo:
    """A registered function with its state layout (types, TTLs in milliseconds), computed once."""

    spec: FunctionSpec
    layout: StateLayout

    @staticmethod
    def of(spec: FunctionSpec) -> FunctionInfo:
        return FunctionInfo(spec, StateLayout.of(spec))


class MemoryState:
    """The state of every address, by address and value name: the harness's state target for
    runtime/effects.py (the partition is ignored; an address is its own key)."""

    __slots__ = ("_cells",)

    def __init__(self) -> None:
        self._cells: dict[Address, Cells] = {}

    def live(self, address: Address, fn: FunctionInfo, now_ms: int) -> Cells | None:
        """The address's values that have not expired at ``now_ms`` (expired ones are dropped)."""
        cells = self._cells.get(address)
        if cells is not None and fn.layout.ttl_ms:
            expired = [name for name, cell in cells.items() if is_expired(cell.expire_at, now_ms)]
            for name in expired:
                del cells[name]
            if not cells:
                del self._cells[address]
                return None
        return cells

    # --- the state target of runtime/effects.py ---------------------------------------------

    @staticmethod
    def key_of(address: Address) -> Address:
        return address

    def write(
        self,
        partition: int,
        key: Address,
        name: str,
        typename: str,
        value: bytes | None,
        expire_at_ms: int | None,
    ) -> None:
        if value is not None:
            self._cells.setdefault(key, {})[name] = Cell(value, expire_at_ms)
            return
        cells = self._cells.get(key)
        if cells is not None:
            cells.pop(name, None)
            if not cells:
                del self._cells[key]

    def refresh(
        self, partition: int, key: Address, name: str, now_ms: int, expire_at_ms: int
    ) -> None:
        cell = self._cells.get(key, _NONE).get(name)
        if cell is not None and not is_expired(cell.expire_at, now_ms):
            cell.expire_at = expire_at_ms

    def set(self, address: Address, fn: FunctionInfo, name: str, data: bytes, now_ms: int) -> None:
        """Store one value as if an invocation at ``now_ms`` had written it."""
        ttl = fn.layout.ttl_ms.get(name)
        self.write(0, address, name, "", data, None if ttl is None else now_ms + ttl)


_NONE: Cells = {}
