"""The short chaos run (tests/chaos/run.py) inside ``make test``: three workers of the chaos
application, about 30 s of steady input, and one fault of every kind: kill -9, SIGTERM, a
SIGSTOPped zombie (after a lull, so that it is most likely between transactions), a worker
SIGSTOPped right after its revocation (it misses a rebalance), a broker
kill -9 and restart, a SIGSTOPped remote endpoint. It passes only when the output is exactly
what the committed input implies, no transaction is left open and no worker hangs or crashes.

It caught a worker hanging for good in ``send_offsets_to_transaction`` after the broker
restarted (docs/guarantees.md, "Issue found by the chaos test"): the runtime must not hang.

It starts a broker of its own (it kills it). ``KSTATEFUN_CHAOS_SEED`` picks another seed; the
seed and the figures are printed (``pytest -s`` shows them, a failure always does).
"""

from __future__ import annotations

import os

import pytest

from tests.chaos.run import ChaosConfig, run_chaos

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(240)]

SEED = int(os.environ.get("KSTATEFUN_CHAOS_SEED", "20261129"))


@pytest.mark.long  # a minute of faults; `make chaos` runs longer ones
def test_short_chaos_run_is_exactly_once(tmp_path):
    lines: list[str] = []

    def say(text: str) -> None:
        lines.append(text)
        print(text, flush=True)

    cfg = ChaosConfig(
        seconds=30.0,
        seed=SEED,
        rate=40.0,
        keys=30,
        # the broker early, so that recovering from it is part of the run, not of the drain
        faults=("broker", "kill9", "remote", "zombie", "late", "sigterm"),
        gap_s=(1.0, 2.0),
        zombie_s=(11.0, 12.0),
        zombie_lull=1.0,
        remote_outage_s=(2.0, 3.0),
        broker_down_s=(0.0, 1.0),
        bad_each=1,
        drain_timeout_s=30.0,
        work_dir=tmp_path / "chaos",
        keep=True,  # tmp_path is pytest's: the logs stay there for a failure
        say=say,
    )
    report = run_chaos(cfg)
    summary = "\n".join(report.lines())
    print(summary)
    assert report.ok, (
        f"chaos run failed (seed {SEED}; logs in {report.work_dir}):\n{summary}\n\n"
        + "\n".join(lines[-40:])
    )
    assert all(report.faults[k] == 1 for k in cfg.faults or ()), summary
