"""The printed table and the PNG chart of a run's results."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path
from typing import Any


def _eo(r: dict | None) -> str:
    if not r or "validation" not in r:
        return "-"
    v = r["validation"]
    if v["exactly_once"]:
        return "ok"
    return "FAIL " + ",".join(
        f"{k}={v[k]}" for k in ("lost", "duplicated", "wrong_count", "unexpected") if v.get(k)
    )


def brief(r: dict) -> str:
    if "error" in r and not r.get("events_per_s"):
        return f"error: {r['error'][:300]}"
    s = f"{r.get('events_per_s')} events/s"
    if r.get("startup_s") is not None:
        s += f", first output after {r['startup_s']}s"
    if r.get("note"):
        s += f" ({r['note']})"
    return s + f", exactly-once {_eo(r)}"


def brief_w3(r: dict) -> str:
    if not r:
        return "not run"
    if r.get("error"):
        return f"error: {r['error'][:300]}"
    if r.get("status"):  # result files from before W3 ran
        return f"{r['status']}: {r.get('reason')}"
    k, worker = r.get("kstatefun") or {}, r.get("worker") or {}
    d, b = r.get("direct") or {}, r.get("direct_batched") or {}
    s = (
        f"through kstatefun {brief(k)}; {worker.get('batch_mean')} invocations per request, "
        f"{worker.get('in_flight_mean')} requests in flight (mean); SDK direct "
        f"{_num(d.get('invocations_per_s'))} inv/s at {d.get('concurrency')} in flight, "
        f"1 per request: ratio {_num(r.get('ratio'))}"
    )
    if b:
        s += (
            f"; SDK direct batched {b.get('batch')} per request "
            f"{_num(b.get('invocations_per_s'))} inv/s: ratio {_num(r.get('ratio_batched'))}"
        )
    return s


def brief_latency(r: dict) -> str:
    parts = []
    for rate, x in r.items():
        if not isinstance(x, dict) or "rate" not in x:
            continue
        if x.get("skipped"):
            parts.append(f"@{rate}/s skipped")
        else:
            parts.append(
                f"@{rate}/s p50 {x.get('p50_ms')} p99 {x.get('p99_ms')} max {x.get('max_ms')} ms"
                f" ({x.get('received')}/{x.get('sent')}; p50 written after "
                f"{x.get('written_p50_ms')} ms, visible {x.get('visible_after_write_p50_ms')} "
                "ms after that)"
            )
    return "; ".join(parts) + f"; exactly-once {_eo(r)}"


def brief_restart(r: dict) -> str:
    parts = []
    for phase in ("first_start", "restart"):
        x = r.get(phase) or {}
        rs = x.get("restore") or {}
        parts.append(
            f"{phase}: next output after {x.get('to_next_output_s')}s "
            f"(restored {rs.get('records')} at {rs.get('rate')}/s; output {x.get('output')})"
        )
    return "; ".join(parts)


def bigstate_lines(big: dict) -> list[str]:
    """The big state part (bench/bigstate.py) against issue 16's goals."""
    lines = ["big state (state_store rocksdb unless said otherwise)"]
    load = big.get("load") or {}
    if "error" in load:
        lines.append(f"  load and restart: error: {load['error'][:300]}")
    elif load:
        first, rs = load["load"], load["load"]["restore"]
        lines.append(
            f"  {load['keys']:,} keys: restored {_num(rs.get('records'))} records in "
            f"{_num(rs.get('seconds'))} s = {_num(rs.get('rate'))}/s; peak RSS "
            f"{first['peak_rss_mb']} MB (goal <= 1024); state_dir {load.get('state_dir_mb')} MB"
        )
        w1 = load.get("w1_rocksdb_full_state") or {}
        lines.append(
            f"  W1 over all {load['keys']:,} keys: {_num(w1.get('events_per_s'))} events/s, peak "
            f"RSS {w1.get('peak_rss_mb')} MB"
        )
        r = load.get("restart") or {}
        lines.append(
            f"  restart after kill -9 (state_dir kept, static membership): next output after "
            f"{_num(r.get('to_next_output_s'))} s (goal <= 3), output "
            f"{'right' if r.get('output_ok') else 'WRONG'}, replayed "
            f"{_num((r.get('replayed') or {}).get('records'))} records, peak RSS "
            f"{r.get('peak_rss_mb')} MB"
        )
    w1 = big.get("w1") or {}
    if "error" in w1:
        lines.append(f"  W1 memory vs rocksdb: error: {w1['error'][:300]}")
    elif w1:
        lines.append(
            f"  W1 on {w1['state_keys']:,} keys, {w1['events']:,} events per round: memory "
            f"{_num(w1['memory']['events_per_s'])}/s, rocksdb {_num(w1['rocksdb']['events_per_s'])}"
            f"/s, rocksdb/memory {_num(w1.get('rocksdb_to_memory'))} (goal >= 0.7)"
        )
    sb = big.get("standby") or {}
    if "error" in sb:
        lines.append(f"  takeover: error: {sb['error'][:300]}")
    elif sb:
        for name, r in sb.items():
            lines.append(
                f"  takeover, {name.replace('_', ' ')}: {r['takeover_s']} s (goal <= 3 with "
                f"a copy), replayed {r['replayed_records']:,} of about {r['keys'] // 2:,} keys "
                f"taken over, {r['timers_restored']:,} timers restored in "
                f"{r['timers_restore_s']} s"
            )
    return lines


def _num(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.2f}"
    return f"{v:,}" if isinstance(v, int) else str(v)


def _lat(x: dict | None) -> str:
    if x and x.get("skipped"):
        return "saturated"
    if not x or x.get("p50_ms") is None:
        return "-"
    s = f"{x['p50_ms']:.0f}/{x['p99_ms']:.0f}/{x['max_ms']:.0f}"
    if x.get("received", 0) < x.get("sent", 0):
        s += f" ({x['received']}/{x['sent']})"
    return s


def cell(text: str, limit: int = 160) -> str:
    """``text`` (an error with a log tail, say) as one markdown table cell: one line, no
    terminal escapes, no column separator, at most ``limit`` characters."""
    flat = " ".join(re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text).split()).replace("|", "/")
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _ratio(k: Any, other: Any) -> str:
    if not k or not other:
        return "-"
    return f"{k / other:.2f}"


# the contenders every throughput figure is also divided by, within the same run
REFERENCES = (("kstreams", "KStreams"), ("quix", "Quix"))
WORKLOADS = (("w1", "W1 count per key"), ("w2", "W2 chain A → B"))


def by_shape(res: dict, section: str) -> dict[str, dict[str, dict]]:
    """``{shape: {contender: result}}`` of W1 or W2; a result file from before the input had
    shapes has one, unnamed."""
    sec = res.get(section) or {}
    if any(
        isinstance(v, dict) and {"validation", "events_per_s", "error"} & v.keys()
        for v in sec.values()
    ):
        return {"": sec}
    return sec


def shape_label(res: dict, name: str) -> str:
    for shape in res["run"].get("shapes") or []:
        if shape["name"] == name:
            return f"input {name}: {shape['label']}"
    return "input: murmur2, one partition count for all" if not name else f"input {name}"


def _spread(r: dict) -> str:
    rounds = len(r.get("rounds") or [])
    if r.get("min") is None or rounds < 2:
        return f"({rounds} round)" if rounds else ""
    return f"{r['min']:,}–{r['max']:,} ({rounds} rounds)"


def _stalled(r: dict | None) -> bool:
    """A handful of outputs in the whole run: not a rate."""
    return r is not None and not r.get("complete") and 0 < (r.get("outputs") or 0) < 1000


def throughput_rows(res: dict, section: str, shape: str) -> list[dict[str, Any]]:
    """One row per contender that ran: label, median, spread, ratios to the references."""
    runs = by_shape(res, section).get(shape) or {}
    refs = {
        short: None if _stalled(runs.get(name)) else (runs.get(name) or {}).get("events_per_s")
        for name, short in REFERENCES
    }
    rows = []
    for name, r in runs.items():
        label = (res["contenders"].get(name) or {}).get("label", name)
        rate = None if _stalled(r) else r.get("events_per_s")
        rows.append(
            {
                "label": label,
                "rate": "stalled" if _stalled(r) else _num(rate),
                "spread": _spread(r),
                "ratios": {short: _ratio(rate, ref) for short, ref in refs.items()},
                "start": _num(r.get("startup_s")),
                "eo": _eo(r),
                "capped": (r.get("note") or "").startswith("stopped"),
                "error": r.get("error") if not rate else None,
            }
        )
    return rows


def table(res: dict) -> str:
    lines = []
    run = res["run"]
    m = run["machine"]
    lines.append(
        f"kstatefun benchmark ({run['mode']}), {m.get('nproc')} cores, {m.get('memory_gib')} GiB, "
        f"{m.get('cpu')}, load {m['load_avg_start'][0]:.1f} at start; {run['broker']}"
    )
    lines.append(
        "events/s = outputs ÷ (last visible egress record − group stable), read_committed; "
        "median of the rounds [min–max]; ÷ X = contender ÷ X in the same run; "
        "latency ms = p50/p99/max, produce → visible"
    )
    for c in res["contenders"].values():
        if c.get("error"):
            lines.append(f"{c['label']:<32} not run: {c['error'][:300]}")
    for section, title in WORKLOADS:
        for shape in by_shape(res, section):
            header = (
                f"{'contender':<40} {'events/s':>9} {'min–max (rounds)':>26} "
                + "".join(f"{'÷ ' + short:>11}" for _, short in REFERENCES)
                + f" {'start s':>7} {'EO':>4}"
            )
            lines += ["", f"{title}, {shape_label(res, shape)}", header, "-" * len(header)]
            for row in throughput_rows(res, section, shape):
                if row["error"]:
                    lines.append(f"{row['label']:<40} error: {row['error'][:140]!r}")
                    continue
                lines.append(
                    f"{row['label'] + (' (cap)' if row['capped'] else ''):<40} "
                    f"{row['rate']:>9} {row['spread']:>26} "
                    + "".join(f"{row['ratios'][short]:>11}" for _, short in REFERENCES)
                    + f" {row['start']:>7} {row['eo']:>4}"
                )
    header = (
        f"{'contender':<40} {'lat @1000/s':>14} {'lat @5000/s':>18} {'EO':>4} "
        f"{'scale 1w→2w ev/s':>18}"
    )
    lines += [
        "",
        f"latency and scale, {shape_label(res, (run.get('shapes') or [{}])[0].get('name', ''))}",
        header,
        "-" * len(header),
    ]
    for name, c in res["contenders"].items():
        lat = res["latency"].get(name) or {}
        sc = res["scale"].get(name) or {}
        if c.get("error") or not (lat or sc):
            continue
        scale_s = "-"
        if sc:
            one, two = ((sc.get(w) or {}).get("events_per_s") for w in ("1", "2"))
            scale_s = f"{_num(one)}→{_num(two)}"
        lines.append(
            f"{c['label']:<40} {_lat(lat.get('1000')):>14} {_lat(lat.get('5000')):>18} "
            f"{_eo(lat):>4} {scale_s:>18}"
        )
    lines.append(f"{'W3 kstatefun + SDK over HTTP':<32} {brief_w3(res.get('w3') or {})}")
    for variant, x in (res.get("floor") or {}).items():
        if isinstance(x, dict) and x.get("p50_ms") is not None:
            lines.append(
                f"transaction floor, {variant.replace('_', ' ')} (one record + offsets, "
                f"kstatefun's producer settings): p50 {x['p50_ms']} ms per commit (begin+produce"
                f"+flush {x['produce_p50_ms']}, send_offsets {x['send_offsets_p50_ms']}, commit "
                f"{x['commit_p50_ms']}), p99 {x['p99_ms']} ms"
            )
    if res["restart"]:
        lines += ["", "restart (kill -9 with N keys in state, restart, time to the next output)"]
        for name, r in res["restart"].items():
            if name == "bare restore":
                if "rate" in r:
                    lines.append(
                        f"  {'bare restore (limit)':<24} read {r['records']:,} changelog records "
                        f"in {r['seconds']}s = {r['rate']:,}/s"
                    )
                else:
                    lines.append(f"  bare restore: {r.get('error')}")
                continue
            if "error" in r:
                lines.append(f"  {name:<24} error: {r['error'][:200]}")
                continue
            for phase in ("first_start", "restart"):
                x = r.get(phase) or {}
                rs = x.get("restore") or {}
                wrong = "" if x.get("output") == x.get("expected") else f" WRONG: {x.get('output')}"
                snap = (
                    f", {x['snapshot_keys_loaded']:,} keys from the snapshot"
                    if x.get("snapshot_keys_loaded")
                    else ""
                )
                caught = x.get("snapshot_caught_up_after_s")
                if caught is not None:
                    snap += f"; its snapshot caught up after {caught} s"
                lines.append(
                    f"  {name:<24} {r['keys']:,} keys, {phase:<11}: next output after "
                    f"{_num(x.get('to_next_output_s'))} s (partitions assigned after "
                    f"{_num(x.get('assigned_after_s'))} s); restored {_num(rs.get('records'))} "
                    f"records in {_num(rs.get('seconds'))} s = {_num(rs.get('rate'))}/s{snap}"
                    f"{wrong}"
                )
    if res.get("scaleout"):
        lines += ["", "scale-out under load (bench/scaleout.py), per rebalance protocol"]
        lines += [f"  {brief_scaleout(r)}" for r in res["scaleout"].values()]
    if res.get("restoreload"):
        lines += ["", "restore under load (bench/restoreload.py)"]
        lines += [f"  {brief_restoreload(r)}" for r in res["restoreload"].values()]
    if res.get("bigstate"):
        lines += ["", *bigstate_lines(res["bigstate"])]
    prof = res["profile"].get("kstatefun") or {}
    for view, what in (("cpu", "on-CPU"), ("wall", "wall clock, idle included")):
        p = prof.get(view) or {}
        if p.get("self_pct"):
            lines += [
                "",
                f"profile of a kstatefun worker in W1, {what} ({p['command']}, {p['samples']} "
                f"samples, {p.get('events_per_s_while_profiled')} events/s meanwhile); top self:",
            ]
            lines += [f"  {pct:5.1f}%  {frame}" for frame, pct in p["self_pct"][:12]]
        elif p:
            lines += ["", f"profile ({view}): {p.get('error')}"]
    if prof.get("error"):
        lines += ["", f"profile: {prof['error']}"]
    return "\n".join(lines)


def _wrap(label: str) -> str:
    return textwrap.fill(label.replace(",", ""), 14)


def _annotate(ax: Any, bars: Any, texts: list[str]) -> None:
    for b, text in zip(bars, texts, strict=True):
        if text:
            x = b.get_x() + b.get_width() / 2
            ax.annotate(text, (x, b.get_height()), ha="center", va="bottom", fontsize=7)


def chart(res: dict, path: Path) -> None:
    """Four panels: W1/W2 throughput, W1 latency, restart, scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ((ax1, ax2), (ax3, ax4)) = plt.subplots(2, 2, figsize=(15, 10))
    names = [n for n, c in res["contenders"].items() if not c.get("error")]
    labels = [_wrap(res["contenders"][n]["label"]) for n in names]

    # throughput: the median of the rounds, the whisker from min to max
    series = [(sec, shape) for sec, _ in WORKLOADS for shape in by_shape(res, sec)]
    width = 0.8 / max(1, len(series))
    xs = list(range(len(names)))
    for i, (section, shape) in enumerate(series):
        runs = by_shape(res, section)[shape]
        got = [runs.get(n) or {} for n in names]
        vals = [r.get("events_per_s") or 0 for r in got]
        err = [
            [max(0, v - (r.get("min") or v)) for v, r in zip(vals, got, strict=True)],
            [max(0, (r.get("max") or v) - v) for v, r in zip(vals, got, strict=True)],
        ]
        title = f"{section.upper()} {shape}".strip()
        bars = ax1.bar(
            [x - 0.4 + (i + 0.5) * width for x in xs], vals, width, yerr=err, label=title
        )
        _annotate(ax1, bars, [f"{v / 1000:,.1f}k" if v else "" for v in vals])
    w3_labels = _w3_bars(ax1, res, len(names))
    ax1.set_xticks(list(range(len(names) + len(w3_labels))), labels + w3_labels, fontsize=8)
    ax1.set_ylabel("events/s, exactly-once")
    ax1.set_title("Throughput, one worker (higher is better)")
    ax1.legend(fontsize=8)

    # latency
    lat_names = [n for n in names if res["latency"].get(n)]
    rates = [str(r) for r in res["run"]["config"]["latency_rates"]]
    width = 0.8 / (2 * len(rates))
    xs = list(range(len(lat_names)))
    j = 0
    for rate in rates:
        for stat in ("p50_ms", "p99_ms"):
            vals = [(res["latency"][n].get(rate) or {}).get(stat) or 0 for n in lat_names]
            bars = ax2.bar(
                [x - 0.4 + (j + 0.5) * width for x in xs],
                vals,
                width,
                label=f"{stat[:3]} @ {rate}/s",
            )
            _annotate(ax2, bars, [f"{v:.0f}" if v else "" for v in vals])
            j += 1
    for x, n in enumerate(lat_names):
        for k, rate in enumerate(rates):
            if (res["latency"][n].get(rate) or {}).get("skipped"):
                ax2.annotate(
                    f"{rate}/s: saturated",
                    (x, 0.03 + 0.05 * k),
                    xycoords=("data", "axes fraction"),
                    ha="center",
                    fontsize=7,
                )
    ax2.set_xticks(xs, [_wrap(res["contenders"][n]["label"]) for n in lat_names], fontsize=8)
    ax2.set_ylabel("ms, produce → visible to a read_committed consumer")
    ax2.set_title("W1 latency at fixed input rates (lower is better)")
    ax2.legend(fontsize=8)

    _restart_panel(ax3, res)
    _scale_panel(ax4, res)
    m = res["run"]["machine"]
    fig.suptitle(
        f"kstatefun benchmark ({res['run']['mode']} run {res['run']['started_utc']}): "
        f"{m.get('nproc')} cores, {m.get('cpu')}, one local Kafka 4.1.1 broker; "
        f"{_w3_title(res)}",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _w3_title(res: dict) -> str:
    w = res.get("w3") or {}
    rate = (w.get("kstatefun") or {}).get("events_per_s")
    direct = (w.get("direct") or {}).get("invocations_per_s")
    if not rate or not direct:
        return "W3 (remote functions) not run" + (": error" if w.get("error") else "")
    title = f"W3: {rate:,} events/s = {w['ratio']:.0%} of the SDK endpoint direct ({direct:,}/s)"
    if w.get("ratio_batched"):
        title += f", {w['ratio_batched']:.0%} of it batched as the worker"
    return title


def _w3_bars(ax: Any, res: dict, x0: float) -> list[str]:
    """W3 next to W1/W2: the worker with the SDK, and the SDK endpoint called directly."""
    w = res.get("w3") or {}
    bars = [
        ("W3\nkstatefun\n+ SDK", (w.get("kstatefun") or {}).get("events_per_s")),
        ("SDK\ndirect\n1/request", (w.get("direct") or {}).get("invocations_per_s")),
    ]
    if w.get("direct_batched"):
        b = w["direct_batched"]
        bars.append((f"SDK\ndirect\n{b['batch']}/request", b.get("invocations_per_s")))
    bars = [(label, v) for label, v in bars if v]
    if not bars:
        return []
    xs = [x0 + i for i in range(len(bars))]
    rects = ax.bar(xs, [v for _, v in bars], 0.5, color="tab:green", label="W3 remote")
    _annotate(ax, rects, [f"{v:,.0f}" for _, v in bars])
    return [label for label, _ in bars]


def _restart_panel(ax: Any, res: dict) -> None:
    """Seconds from (re)start to the next output, annotated with the restore rate."""
    bars: list[tuple[str, float, str]] = []
    limit = None
    for name, r in res["restart"].items():
        if name == "bare restore":
            limit = r.get("rate")
            continue
        for phase in ("first_start", "restart"):
            x = (r.get(phase) or {}) if isinstance(r, dict) else {}
            if x.get("to_next_output_s") is None:
                continue
            rs = x.get("restore") or {}
            if x.get("snapshot_keys_loaded"):
                note = f"{x['snapshot_keys_loaded']:,} keys\nfrom snapshot"
            else:
                note = f"restore\n{rs.get('rate') or 0:,}/s"
            flags = name.replace("kstatefun", "").replace("--static-membership", "--static")
            flags = flags.replace(", snapshot caught up", " snapshot-caught-up")
            label = "\n".join([*flags.split(), phase.replace("_", " ")])
            bars.append((label, x["to_next_output_s"], note))
    if not bars:
        ax.set_axis_off()
        return
    keys = next((r.get("keys") for r in res["restart"].values() if r.get("keys")), 0)
    xs = list(range(len(bars)))
    rects = ax.bar(xs, [b[1] for b in bars], color="tab:purple")
    _annotate(ax, rects, [f"{v:.1f} s\n{note}" for _, v, note in bars])
    ax.set_xticks(xs, [b[0] for b in bars], fontsize=8)
    ax.set_ylabel("seconds from process start to the next output")
    title = f"kstatefun restart, {keys:,} keys in state (lower is better)"
    if limit:
        title += f"\nbare restore of the same changelog: {limit:,}/s"
    ax.set_title(title, fontsize=10)
    ax.margins(y=0.3)


def _scale_panel(ax: Any, res: dict) -> None:
    names = list(res["scale"])
    if not names:
        ax.set_axis_off()
        return
    xs = list(range(len(names)))
    width = 0.38
    for i, workers in enumerate(("1", "2")):
        vals = [((res["scale"][n].get(workers) or {}).get("events_per_s") or 0) for n in names]
        bars = ax.bar(
            [x + (i - 0.5) * width for x in xs], vals, width, label=f"{workers} worker(s)"
        )
        _annotate(ax, bars, [f"{v:,.0f}" if v else "" for v in vals])
    ax.set_xticks(xs, [_wrap(res["contenders"][n]["label"]) for n in names], fontsize=8)
    ax.set_ylabel("events/s, W1 burst after the group is stable")
    ax.set_title("Scale: W1 with 1 and 2 worker processes (2 cores, broker included)")
    ax.legend(fontsize=8)


def markdown(res: dict) -> str:
    """The results as Markdown tables, for docs/performance.md."""
    out = []
    for section, title in WORKLOADS:
        for shape in by_shape(res, section):
            out += [
                f"**{title}**, {shape_label(res, shape)}",
                "",
                "| contender | events/s (median) | min–max | "
                + " | ".join(f"÷ {short}" for _, short in REFERENCES)
                + " | exactly-once |",
                "|---|--:|--:|" + "--:|" * len(REFERENCES) + "---|",
            ]
            for row in throughput_rows(res, section, shape):
                rate = f"error: {cell(row['error'])}" if row["error"] else row["rate"]
                out.append(
                    f"| {row['label']}{' (at the cap)' if row['capped'] else ''} | {rate} "
                    f"| {row['spread']} | "
                    + " | ".join(row["ratios"][short] for _, short in REFERENCES)
                    + f" | {row['eo']} |"
                )
            out.append("")
    out += [
        "| contender | latency @1,000/s p50 / p99 / max ms | latency @5,000/s p50 / p99 / max "
        "ms | exactly-once |",
        "|---|--:|--:|---|",
    ]
    for name, c in res["contenders"].items():
        if c.get("error"):
            out.append(f"| {c['label']} | not run: {cell(c['error'])} | | |")
            continue
        lat = res["latency"].get(name)
        if lat:
            out.append(
                f"| {c['label']} | {_lat(lat.get('1000')).replace('/', ' / ')} "
                f"| {_lat(lat.get('5000')).replace('/', ' / ')} | {_eo(lat)} |"
            )
    w = res.get("w3") or {}
    if w.get("kstatefun"):
        k, worker = w["kstatefun"], w.get("worker") or {}
        d, b = w.get("direct") or {}, w.get("direct_batched") or {}
        out += [
            "",
            "| W3 | events/s | SDK direct, 1 invocation/request | W3 ÷ direct | "
            "SDK direct, batched as the worker | W3 ÷ batched | invocations/request | "
            "requests in flight | exactly-once |",
            "|---|--:|--:|--:|--:|--:|--:|--:|---|",
            f"| kstatefun + StateFun SDK over HTTP"
            f"{' (at the cap)' if k.get('note', '').startswith('stopped') else ''} "
            f"| {_num(k.get('events_per_s'))} | {_num(d.get('invocations_per_s'))} "
            f"| {_num(w.get('ratio'))} | {_num(b.get('invocations_per_s'))} "
            f"| {_num(w.get('ratio_batched'))} | {_num(worker.get('batch_mean'))} "
            f"| {worker.get('in_flight_mean', 0):.0f} (max {_num(worker.get('in_flight_max'))}) "
            f"| {_eo(k)} |",
        ]
    return "\n".join(out)


def brief_restoreload(r: dict) -> str:
    """The kept partitions' p99/max while the moved big partition restores."""
    if r.get("error"):
        return f"error: {r['error']}"
    steady = (r.get("steady") or {}).get("unmoved") or {}
    w = r.get("restore") or {}
    kept, moved = w.get("unmoved") or {}, w.get("moved") or {}
    restored = r.get("restored") or {}
    v = r.get("validation") or {}
    return (
        f"partition {r.get('partition')} of {r.get('keys') or 0:,} states restored in "
        f"{restored.get('seconds')} s ({restored.get('records')} records) while serving: "
        f"kept partitions {r.get('kept')} p99 {kept.get('p99_ms')} ms (max {kept.get('max_ms')}), "
        f"kept partitions before the stop p99 {steady.get('p99_ms')} ms; moved max "
        f"{moved.get('max_ms')} ms; "
        f"exactly-once {v.get('exactly_once')}"
    )


def brief_scaleout(r: dict) -> str:
    """One line per scale-out run: per window, the unmoved and moved partitions' p99/max."""
    steady = (r.get("steady") or {}).get("unmoved") or {}
    parts = [f"{r.get('protocol')}: steady p99 {steady.get('p99_ms')} ms"]
    for name in ("join", "leave"):
        w = r.get(name) or {}
        unmoved, moved = w.get("unmoved") or {}, w.get("moved") or {}
        parts.append(
            f"{name}: unmoved p99 {unmoved.get('p99_ms')} ms (max {unmoved.get('max_ms')}), "
            f"moved {w.get('moved_partitions')} max {moved.get('max_ms')} ms"
        )
    phases = r.get("join_phases")
    if phases:
        starting = (phases.get("starting") or {}).get("unmoved") or {}
        rebalancing = (phases.get("rebalancing") or {}).get("unmoved") or {}
        parts.append(
            f"join, while the third starts ({phases.get('starting_s')} s): unmoved p99 "
            f"{starting.get('p99_ms')} ms; from the first callback: unmoved p99 "
            f"{rebalancing.get('p99_ms')} ms"
        )
    v = r.get("validation") or {}
    parts.append(f"exactly-once {v.get('exactly_once')}")
    return "; ".join(parts)
