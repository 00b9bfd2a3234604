"""A direct HTTP load loop against a StateFun SDK endpoint: what the endpoint sustains when
called without kstatefun in between (W3's reference; tests/remote/bench_remote_transport.py
uses it too)."""

from __future__ import annotations

import asyncio
import time

import aiohttp


async def direct_load(url: str, bodies: list[bytes], seconds: float) -> tuple[float, float]:
    """POST ``bodies`` (ToFunction requests) in a loop, one request per body always in flight
    (the concurrency is ``len(bodies)``), for ``seconds``. Every reply must be a 200.

    Returns (requests/s, client CPU µs per request)."""
    done = 0
    deadline = time.monotonic() + seconds
    headers = {"Content-Type": "application/octet-stream"}
    connector = aiohttp.TCPConnector(limit=len(bodies))
    async with aiohttp.ClientSession(connector=connector) as s:

        async def worker(body: bytes) -> None:
            nonlocal done
            while time.monotonic() < deadline:
                async with s.post(url, data=body, headers=headers) as resp:
                    await resp.read()
                    if resp.status != 200:
                        raise RuntimeError(f"{url} answered HTTP {resp.status}")
                done += 1

        started, cpu = time.monotonic(), time.process_time()
        await asyncio.gather(*(worker(b) for b in bodies))
        elapsed, cpu = time.monotonic() - started, time.process_time() - cpu
        return done / elapsed, cpu / max(1, done) * 1e6
