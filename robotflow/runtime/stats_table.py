"""The stats table of a run (from Scheduler.stats()): what `robotflow launch` and `record` print at exit."""

from __future__ import annotations


def _fmt(v, spec: str = ".0f") -> str:
    return "-" if v is None else format(v, spec)


def format_stats_table(summary: dict) -> str:
    """Nodes (rate, period error, overruns, step time, their own counts), then every channel's books per
    reader: sent = received + dropped + unread (skipped: `latest` values superseded before a read)."""
    lines = []
    nodes = summary.get("nodes", {})
    w = max([len("node")] + [len(n) for n in nodes])
    lines.append(
        f"{'node':<{w}}  {'rate Hz':>8} {'ticks':>8} {'err p50 us':>10} {'err p99 us':>10} "
        f"{'overruns':>8} {'step p50 ms':>11} {'step p99 ms':>11}  counts"
    )
    for name, s in nodes.items():
        counts = " ".join(f"{k}={v}" for k, v in s.get("counts", {}).items())
        lines.append(
            f"{name:<{w}}  {_fmt(s['rate_hz'], '.1f'):>8} {s['ticks']:>8} {_fmt(s['period_error_p50_us']):>10} "
            f"{_fmt(s['period_error_p99_us']):>10} {s['overruns']:>8} "
            f"{_fmt(s['step_p50_us'] and s['step_p50_us'] / 1e3, '.2f'):>11} "
            f"{_fmt(s['step_p99_us'] and s['step_p99_us'] / 1e3, '.2f'):>11}  {counts}".rstrip()
        )
    rows = []
    for ch, c in summary.get("channels", {}).items():
        sent = _fmt(c["sent"], "d")
        if not c["inputs"]:
            rows.append((ch, sent, "(no reader)", "-", "-", "-", "-"))
        for reader, i in c["inputs"].items():
            rows.append((ch, sent, reader, i["received"], i["skipped"], i["dropped"], _fmt(i.get("unread"), "d")))
    if rows:
        cw = max(len("channel"), *(len(r[0]) for r in rows))
        rw = max(len("reader"), *(len(r[2]) for r in rows))
        lines.append("")
        lines.append(
            f"{'channel':<{cw}}  {'sent':>8}  {'reader':<{rw}} {'received':>9} {'skipped':>8} {'dropped':>8} {'unread':>7}"
        )
        for r in rows:
            lines.append(f"{r[0]:<{cw}}  {r[1]:>8}  {r[2]:<{rw}} {r[3]:>9} {r[4]:>8} {r[5]:>8} {r[6]:>7}")
    return "\n".join(lines)
