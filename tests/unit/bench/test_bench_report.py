"""The benchmark's summary of rounds and its report: median, spread, ratios within one run,
and an exactly-once verdict that no single round can hide."""

from __future__ import annotations

from bench import report
from bench.run import SHAPES, summarize


def _round(rate: int, ok: bool = True) -> dict:
    return {
        "events_per_s": rate,
        "complete": True,
        "outputs": 1000,
        "measured_s": 1.0,
        "startup_s": 2.0,
        "validation": {"exactly_once": ok, "lost": 0 if ok else 3, "duplicated": 0},
    }


def test_summary_is_the_median_with_the_spread_and_fails_if_any_round_failed() -> None:
    s = summarize([_round(100), _round(300, ok=False), _round(200)])
    assert (s["events_per_s"], s["min"], s["max"]) == (200, 100, 300)
    assert s["validation"]["exactly_once"] is False
    assert s["validation"]["lost"] == 3


def test_a_failed_round_is_kept_but_only_an_all_failed_summary_is_an_error() -> None:
    s = summarize([_round(100), {"error": "exited"}])
    assert s["events_per_s"] == 100 and s["round_errors"] == ["exited"] and "error" not in s
    assert summarize([{"error": "exited"}])["error"] == "exited"


def test_report_divides_by_kafka_streams_and_quix_of_the_same_shape() -> None:
    shape = SHAPES[0].name
    res = {
        "run": {
            "mode": "quick",
            "machine": {"load_avg_start": [1.0]},
            "broker": "test",
            "shapes": [{"name": shape, "label": "the shape"}],
        },
        "contenders": {n: {"label": n} for n in ("kstreams", "quix", "kstatefun")},
        "w1": {
            shape: {
                "kstreams": summarize([_round(100), _round(120)]),
                "quix": summarize([_round(40), _round(40)]),
                "kstatefun": summarize([_round(50), _round(70)]),
            }
        },
        "w2": {},
        "latency": {},
        "scale": {},
        "restart": {},
        "profile": {},
    }
    rows = {r["label"]: r for r in report.throughput_rows(res, "w1", shape)}
    assert rows["kstatefun"]["ratios"] == {"KStreams": "0.55", "Quix": "1.50"}
    assert rows["kstatefun"]["spread"] == "50–70 (2 rounds)"
    text = report.table(res)
    assert "the shape" in text and "0.55" in text
    assert "0.55" in report.markdown(res)


def test_big_state_lines_show_each_goal_and_a_failed_part_in_its_place() -> None:
    takeover = {"takeover_s": 0.2, "replayed_records": 0, "keys": 1000, "timers_restored": 0}
    big = {
        "load": {"error": "RuntimeError: no output"},
        "w1": {
            "state_keys": 1000,
            "events": 100,
            "memory": {"events_per_s": 2000},
            "rocksdb": {"events_per_s": 1500},
            "rocksdb_to_memory": 0.75,
        },
        "standby": {
            "standby_replicas_1": {**takeover, "timers_restore_s": 0.0},
            "standby_replicas_0": {**takeover, "takeover_s": 4.5, "timers_restore_s": 0.0},
        },
    }
    text = "\n".join(report.bigstate_lines(big))
    assert "load and restart: error: RuntimeError: no output" in text
    assert "rocksdb/memory 0.75 (goal >= 0.7)" in text
    assert "standby replicas 1: 0.2 s" in text and "standby replicas 0: 4.5 s" in text


def test_an_error_with_a_log_tail_stays_in_its_table_cell():
    from bench.report import cell

    tail = "no output within 90 s; log tail:\n| web | aiohttp |\n\x1b[?25l\x1b[?25h OK ^\n"
    got = cell(tail)
    assert "\n" not in got and "|" not in got and "\x1b" not in got
    assert got.startswith("no output within 90 s; log tail:")
    assert len(cell("x" * 500)) == 160
