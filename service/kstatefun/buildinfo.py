"""What runs: kstatefun's version, and which of its modules are compiled (docs/performance.md,
"The compiled build").

A wheel built with ``KSTATEFUN_COMPILE=1`` (hatch_build.py) carries ``MODULES`` compiled by
mypyc, each an extension module next to its source, which Python imports instead of the
source; every other install (editable ones always) runs them as Python. The build reads
``MODULES`` from this file without importing kstatefun: keep it to the standard library.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from importlib.machinery import EXTENSION_SUFFIXES

# The modules W1's record path runs through (bench/hotpath.py's profile). Not sdk/context.py
# and sdk/messages.py: compiled code checks every argument's declared type on entry, and its
# TypeError would replace the SDK's own errors, which name the argument and how to build it;
# nor sdk/types.py (users subclass Type, and Python code cannot subclass a compiled class) or
# sdk/storage.py (it makes a class per function type at run time).
MODULES = (
    "kstatefun.model",
    "kstatefun.kafka.partitioner",
    "kstatefun.observability.metrics",
    "kstatefun.runtime.commit",
    "kstatefun.runtime.dispatcher",
    "kstatefun.runtime.effects",
    "kstatefun.runtime.local",
    "kstatefun.runtime.router",
    "kstatefun.state.deadlines",
    "kstatefun.state.partitioned",
    "kstatefun.state.store",
    "kstatefun.timers.store",
    "kstatefun.wire.avro",
    "kstatefun.wire.protobuf",
)


def compiled_modules() -> list[str]:
    """The modules of ``MODULES`` that this install loads as extension modules (found, not
    imported)."""
    out = []
    for name in MODULES:
        spec = importlib.util.find_spec(name)
        origin = spec.origin if spec is not None else None
        if origin is not None and origin.endswith(tuple(EXTENSION_SUFFIXES)):
            out.append(name)
    return out


def build() -> str:
    """``compiled``, ``pure`` or, for a broken install, ``partly compiled``: what the worker's
    start log, ``kstatefun --version`` and the kstatefun_build_info metric say."""
    compiled = compiled_modules()
    if not compiled:
        return "pure"
    return "compiled" if len(compiled) == len(MODULES) else "partly compiled"


def version() -> str:
    """The installed distribution's version; ``unknown`` from a source tree never installed."""
    try:
        return importlib.metadata.version("kstatefun")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"
