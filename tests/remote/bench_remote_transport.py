"""Invocations/s through kstatefun's remote path vs. what the SDK endpoint sustains directly.

Not a test (pytest does not collect it); run it by hand, it takes about a minute:

    .venv/bin/python -m tests.remote.bench_remote_transport [--seconds 4] [--rounds 3]

It starts the real StateFun SDK server (tests/remote/sdk_server.py) on 127.0.0.1 and measures,
one after the other, against the same ``test/counter`` function (state read + write + one
outgoing message per invocation):

1. direct: a plain asyncio/aiohttp load loop in this process, ``concurrency`` requests of one
   invocation each always in flight: what the endpoint sustains when called directly;
2. transport, one invocation per batch: the worker's path (AddressBatcher, state registry,
   encode, RemoteTransport thread, drain, decode, state applied) with invocations spread over
   many addresses, at most ``concurrency`` requests in flight;
3. transport, batching: the same with few addresses, so invocations queue and go in batches.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from bench.httpload import direct_load

from kstatefun.config.module import HttpTransport
from kstatefun.model import Address, TypedValue
from kstatefun.remote import RemoteTransport, RetryPolicy, encode_batch
from kstatefun.wire.protobuf import encode_int_wrapper, encode_string_wrapper
from tests.remote import sdk_env
from tests.remote.driver import RemoteDriver

INC = TypedValue("io.statefun.types/string", encode_string_wrapper("inc"))
INT = "io.statefun.types/int"


Result = tuple[float, float, float]  # invocations/s, mean batch size, client CPU µs/invocation


async def _direct(url: str, seconds: float, concurrency: int) -> Result:
    bodies = [
        encode_batch(
            Address("test/counter", f"d{i}"), [("count", INT, encode_int_wrapper(i))], [(None, INC)]
        )
        for i in range(concurrency)
    ]
    rate, cpu_us = await direct_load(url, bodies, seconds)
    return rate, 1.0, cpu_us


def _through_transport(url: str, seconds: float, concurrency: int, addresses: int) -> Result:
    """Keep the batcher fed for ``seconds``."""
    with RemoteTransport(RetryPolicy()) as transport:
        driver = RemoteDriver(
            transport, lambda _t: url, HttpTransport(call_ms=30_000), max_in_flight=concurrency
        )
        targets = [Address("test/counter", f"t{i}") for i in range(addresses)]
        # warm up: the missing-state handshake, connections
        for a in targets[: min(addresses, concurrency)]:
            driver.offer(a, INC)
        driver.run_until_idle(60)
        driver.outcomes.clear()
        started, cpu = time.monotonic(), time.process_time()
        deadline = started + seconds
        i = 0
        while time.monotonic() < deadline:
            # the worker's loop: top up what waits (as consuming records would), then drain
            while driver.batcher.pending_count() < 4 * concurrency:
                driver.offer(targets[i % addresses], INC)
                i += 1
            transport.wait(0.05)
            for c in transport.drain():
                driver._handle(c.request_id, c.reply, c.error)
        elapsed, cpu = time.monotonic() - started, time.process_time() - cpu
        invocations = sum(len(o.batch) for o in driver.outcomes if o.error is None)
        batches = max(1, len(driver.outcomes))
        assert all(o.error is None for o in driver.outcomes)
        return invocations / elapsed, invocations / batches, cpu / invocations * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved; medians reported")
    args = parser.parse_args()
    c = args.concurrency
    python = sdk_env.ensure_sdk_venv()
    runs: dict[str, list[Result]] = {}
    with sdk_env.sdk_server(python) as server:
        url = server.url()
        phases = {
            "direct load loop (1 invocation/request)": lambda: asyncio.run(
                _direct(url, args.seconds, c)
            ),
            "transport, 5000 addresses (1 per batch)": lambda: _through_transport(
                url, args.seconds, c, addresses=5_000
            ),
            f"transport, {c} addresses (batching)": lambda: _through_transport(
                url, args.seconds, c, addresses=c
            ),
        }
        for _ in range(args.rounds):  # interleaved, so that a noisy neighbour hits all alike
            for label, run in phases.items():
                runs.setdefault(label, []).append(run())
    direct = statistics.median(r[0] for r in runs[next(iter(phases))])
    print(
        f"{'path':<40} {'invocations/s: median (every round)':>46} {'batch':>6} "
        f"{'vs direct':>9} {'client CPU µs/inv':>18}"
    )
    for label, results in runs.items():
        rate = statistics.median(r[0] for r in results)
        size = statistics.median(r[1] for r in results)
        cpu = statistics.median(r[2] for r in results)
        every = ", ".join(f"{r[0]:,.0f}" for r in results)
        cell = f"{rate:,.0f} ({every})"
        print(f"{label:<40} {cell:>46} {size:>6.1f} {rate / direct:>9.0%} {cpu:>18.0f}")


if __name__ == "__main__":
    main()
