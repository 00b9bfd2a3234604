"""The printed table and the PNG chart of a run's results."""

from __future__ import annotations

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


def _ratio(k: Any, other: Any) -> str:
    if not k or not other:
        return "-"
    return f"{k / other:.2f}"


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
        "ratio = kstatefun ÷ contender; latency ms = p50/p99/max, produce → visible"
    )
    k1 = (res["w1"].get("kstatefun") or {}).get("events_per_s")
    k2 = (res["w2"].get("kstatefun") or {}).get("events_per_s")
    header = (
        f"{'contender':<32} {'W1 ev/s':>9} {'ratio':>6} {'start s':>7} {'W1 EO':>6} "
        f"{'W2 ev/s':>8} {'ratio':>6} {'W2 EO':>6} {'lat @1000/s':>14} {'lat @5000/s':>18} "
        f"{'scale 1w→2w ev/s':>18}"
    )
    lines += ["", header, "-" * len(header)]
    for name, c in res["contenders"].items():
        label = c["label"]
        if c.get("error"):
            lines.append(f"{label:<32} not run: {c['error'][:140]}")
            continue
        r1 = res["w1"].get(name) or {}
        r2 = res["w2"].get(name)
        lat = res["latency"].get(name) or {}
        sc = res["scale"].get(name) or {}
        scale_s = "-"
        if sc:
            one, two = ((sc.get(w) or {}).get("events_per_s") for w in ("1", "2"))
            scale_s = f"{_num(one)}→{_num(two)}"
        if "error" in r1 and not r1.get("events_per_s"):
            lines.append(f"{label:<32} W1 error: {r1['error'][:140]!r}")
            continue
        e1, e2 = r1.get("events_per_s"), (r2 or {}).get("events_per_s")
        w2_s = _num(e2)
        if r2 and not r2.get("complete") and 0 < r2.get("outputs", 0) < 1000:
            w2_s, e2 = "stalled", None  # a handful of outputs in the whole run: not a rate
        w2_eo = "-" if r2 is None or r2.get("error") else _eo(r2)
        lines.append(
            f"{label:<32} {_num(e1):>9} {_ratio(k1, e1):>6} "
            f"{_num(r1.get('startup_s')):>7} {_eo(r1):>6} "
            f"{w2_s:>8} {_ratio(k2, e2):>6} "
            f"{w2_eo:>6} {_lat(lat.get('1000')):>14} "
            f"{_lat(lat.get('5000')):>18} {scale_s:>18}"
        )
    lines.append(f"{'W3 kstatefun + SDK over HTTP':<32} {brief_w3(res.get('w3') or {})}")
    for section in ("w1", "w2"):
        for name, r in res[section].items():
            if r.get("error"):
                lines.append(f"  {section.upper()} {name}: {r['error'][:160]!r}")
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
                lines.append(
                    f"  {name:<24} {r['keys']:,} keys, {phase:<11}: next output after "
                    f"{_num(x.get('to_next_output_s'))} s (partitions assigned after "
                    f"{_num(x.get('assigned_after_s'))} s); restored {_num(rs.get('records'))} "
                    f"records in {_num(rs.get('seconds'))} s = {_num(rs.get('rate'))}/s{snap}"
                    f"{wrong}"
                )
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

    # throughput
    width = 0.38
    xs = list(range(len(names)))
    for i, (section, title) in enumerate((("w1", "W1 count per key"), ("w2", "W2 chain A→B"))):
        vals = [((res[section].get(n) or {}).get("events_per_s") or 0) for n in names]
        bars = ax1.bar([x + (i - 0.5) * width for x in xs], vals, width, label=title)
        _annotate(ax1, bars, [f"{v:,.0f}" if v else "" for v in vals])
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
    k1 = (res["w1"].get("kstatefun") or {}).get("events_per_s")
    k2 = (res["w2"].get("kstatefun") or {}).get("events_per_s")
    out.append(
        "| contender | W1 events/s | kstatefun ÷ | W2 events/s | kstatefun ÷ | "
        "latency @1,000/s p50 / p99 / max ms | latency @5,000/s p50 / p99 / max ms | "
        "exactly-once |"
    )
    out.append("|---|--:|--:|--:|--:|--:|--:|---|")
    for name, c in res["contenders"].items():
        if c.get("error"):
            out.append(f"| {c['label']} | not run: {c['error']} | | | | | | |")
            continue
        r1 = res["w1"].get(name) or {}
        r2 = res["w2"].get(name)
        lat = res["latency"].get(name) or {}
        e1 = r1.get("events_per_s")
        e2 = (r2 or {}).get("events_per_s")
        w2 = _num(e2)
        if r2 and not r2.get("complete") and 0 < r2.get("outputs", 0) < 1000:
            w2, e2 = f"stalled ({r2['outputs']} outputs in {r2.get('measured_s')} s)", None
        capped = [
            s.upper()
            for s, r in (("w1", r1), ("w2", r2 or {}))
            if r.get("note", "").startswith("stopped")
        ]
        checks = [r for r in (r1, r2, lat) if r and "validation" in r]
        eo = (
            "ok"
            if checks and all(r["validation"]["exactly_once"] for r in checks)
            else ("-" if not checks else "FAIL")
        )
        out.append(
            f"| {c['label']}{' (' + ', '.join(capped) + ' at the cap)' if capped else ''} "
            f"| {_num(e1)} | {_ratio(k1, e1)} | {w2} | {_ratio(k2, e2)} "
            f"| {_lat(lat.get('1000')).replace('/', ' / ')} "
            f"| {_lat(lat.get('5000')).replace('/', ' / ')} | {eo} |"
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
