"""Targets, the table (measure | brokerq | raw / other | go-queue | ratios | targets) and
bench/results/latest.json."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from bench.harness import Figures

# measure -> [(compared with, brokerq must reach at least this ratio)]
TARGETS: dict[str, list[tuple[str, float]]] = {
    "kq.push.100.acksall": [("go-queue", 1.5), ("raw", 0.8)],
    "kq.push.100.acks1": [("go-queue", 1.5), ("raw", 0.8)],
    "kq.push.1024.acksall": [("go-queue", 1.5), ("raw", 0.8)],
    "kq.push.1024.acks1": [("go-queue", 1.5), ("raw", 0.8)],
    "kq.consume": [("go-queue", 1.0)],
    "kq.consume.batch": [("raw", 0.7)],
    "kq.consume.p1": [("go-queue", 0.6)],
    "kq.consume.p2": [("go-queue", 1.0)],
    **{
        f"kq.peer.{what}.{peer}": [(peer, 1.5)]
        for what in ("push", "pushbatch", "consume", "consumebatch")
        for peer in ("faststream", "taskiq")
    },
    "dq.delay": [("go-queue", 1.0), ("raw", 0.5)],
    "dq.delay_many": [("delay x1", 3.0)],
    "metrics.runtimec8": [("metrics off", 0.9)],
    "metrics.kqconsume": [("metrics off", 0.9)],
    "dq.consume": [("go-queue", 1.0)],
    "embedded": [("huey", 1.5)],
}
AT_TARGET_P99_MS = 50.0
RSS_GROWTH = (2.0, 0.05)  # MiB, fraction of the start: flat is growth <= max of the two
RSS_CAP_MIB = 100.0  # issue 16: worker RSS <= 100 MB (1M delayed jobs; batch handlers of 500)
ORDER = [
    "kq.push.100.acksall",
    "kq.push.100.acks1",
    "kq.push.1024.acksall",
    "kq.push.1024.acks1",
    "kq.consume",
    "kq.consume.batch",
    "kq.consume.p1",
    "kq.consume.p2",
    *(
        f"kq.peer.{what}.{peer}"
        for what in ("push", "pushbatch", "consume", "consumebatch")
        for peer in ("faststream", "taskiq")
    ),
    "dq.delay",
    "dq.delay_many",
    "dq.consume",
    "dq.at",
    "embedded",
    "dq.rss",
    "kq.batch.rss",
    "metrics.runtimec1",
    "metrics.runtimec8",
    "metrics.kqconsume",
    "kq.push.100.noid",
    "schedule.sqlite",
    "schedule.dq",
    "worker.c1",
    "worker.c8",
    "worker.memory",
]
NOTES = [
    "go-queue kq Pusher as shipped: kafka-go writer with RequiredAcks=0 (acks=0), snappy, "
    "1 MiB / 1 s chunk executor; Push never reports a failed write.",
    "consume rates: first handled message to the N-th; put/push rates: first call to last ack.",
    "raw dq put/consume: greenstalk on one node, one round trip per command, no Redis guard.",
    "embedded: brokerq SqliteBroker synchronous=full vs huey SqliteHuey fsync=True, thread workers.",
    "the services are shared with other developers' test runs; figures are from one run.",
]


def fmt_rate(v: float | None) -> str:
    if v is None:
        return "—"
    if v >= 100_000:
        return f"{v / 1000:,.0f} k/s"
    if v >= 10_000:
        return f"{v / 1000:,.1f} k/s"
    return f"{v:,.0f} /s"


def _at(f: Figures | None) -> str:
    if not f:
        return "—"
    return (
        f"p50 {f['lateness_ms_p50']:.0f} / p99 {f['lateness_ms_p99']:.0f} / "
        f"max {f['lateness_ms_max']:.0f} ms, early {f['early']}"
    )


def _rss(f: Figures | None) -> str:
    if not f:
        return "—"
    return f"{f['rss_mib_start']:.1f} → {f['rss_mib_end']:.1f} MiB (max {f['rss_mib_max']:.1f})"


def _at_row(row: dict[str, Any], impls: dict[str, Figures]) -> None:
    b = impls.get("brokerq")
    row.update(brokerq=_at(b), raw="", goqueue=_at(impls.get("go-queue")), ratios="")
    if b:
        p99 = b["lateness_ms_p99"]
        row["checks"].append(
            {
                "target": f"p99 <= {AT_TARGET_P99_MS:.0f} ms, 0 early",
                "met": p99 <= AT_TARGET_P99_MS and b["early"] == 0,
                "value": f"p99 {p99:.1f} ms, early {b['early']}",
            }
        )


def _rss_row(row: dict[str, Any], impls: dict[str, Figures]) -> None:
    """Start -> end RSS; flat and at most RSS_CAP_MIB."""
    b = impls.get("brokerq")
    row.update(brokerq=_rss(b), raw="", goqueue=_rss(impls.get("go-queue")), ratios="")
    if b:
        growth = b["rss_mib_end"] - b["rss_mib_start"]
        mib, frac = RSS_GROWTH
        row["checks"].append(
            {
                "target": f"flat (growth <= max({mib:.0f} MiB, {frac:.0%}))",
                "met": growth <= max(mib, frac * b["rss_mib_start"]),
                "value": f"{growth:+.1f} MiB over {b['seconds']:.0f} s",
            }
        )
        row["checks"].append(
            {
                "target": f"max <= {RSS_CAP_MIB:.0f} MiB",
                "met": b["rss_mib_max"] <= RSS_CAP_MIB,
                "value": f"{b['rss_mib_max']:.1f} MiB",
            }
        )


def _rate(f: Figures | None) -> str:
    if not f:
        return "—"
    if f.get("na"):
        return "n/a"
    return fmt_rate(f.get("per_s"))


def _rate_row(m: str, row: dict[str, Any], impls: dict[str, Figures]) -> None:
    """brokerq | the other Python side (raw client, huey, a peer) | go-queue, with ratios."""
    b = impls.get("brokerq")
    others = [f for who, f in impls.items() if who not in ("brokerq", "go-queue")]
    other = others[0] if others else None
    g = impls.get("go-queue")
    row["brokerq"] = _rate(b)
    row["raw"] = "—"
    if other:
        name = str(other["impl"])
        row["raw"] = _rate(other) + ("" if name == "raw" else f" ({name})")
    row["goqueue"] = _rate(g)
    ratios = []
    for f in [*others, g]:
        if b and f and b.get("per_s") and f.get("per_s"):
            who = str(f["impl"])
            r = b["per_s"] / f["per_s"]
            ratios.append(f"{r:.2f}x {who}")
            for tw, tv in TARGETS.get(m, []):
                if tw == who:
                    row["checks"].append(
                        {"target": f">= {tv}x {who}", "met": r >= tv, "value": f"{r:.2f}x"}
                    )
    for f in (b, *others):
        if f and f.get("na"):
            ratios.append(f"{f['impl']}: n/a ({f['na']})")
    row["ratios"] = ", ".join(ratios)


def summarize(figures: list[Figures]) -> list[dict[str, Any]]:
    """One row per measure in ORDER that has figures, with its checks against TARGETS."""
    by: dict[str, dict[str, Figures]] = {}
    for f in figures:
        by.setdefault(f["measure"], {})[f["impl"]] = f
    rows = []
    for m in ORDER:
        impls = by.get(m)
        if not impls:
            continue
        label = next(iter(impls.values()))["label"]
        row: dict[str, Any] = {"measure": m, "label": label, "checks": []}
        if m == "dq.at":
            _at_row(row, impls)
        elif m.startswith("schedule."):  # lateness, no target in an issue yet
            b = impls.get("brokerq")
            row.update(brokerq=_at(b), raw="", goqueue="", ratios="")
        elif m in ("dq.rss", "kq.batch.rss"):
            _rss_row(row, impls)
        else:
            _rate_row(m, row, impls)
        rows.append(row)
    return rows


def render(rows: list[dict[str, Any]], console: Console) -> None:
    """The table on ``console``."""
    t = Table(title="brokerq vs raw clients vs go-queue (same run, same servers)", show_lines=False)
    t.add_column("measure", justify="left")
    t.add_column("brokerq", justify="right")
    t.add_column("raw / other", justify="right")
    t.add_column("go-queue", justify="right")
    t.add_column("ratios", justify="left")
    t.add_column("targets", justify="left")
    for r in rows:
        checks = "; ".join(
            ("[green]met[/green] " if c["met"] else "[red]MISSED[/red] ") + c["target"]
            for c in r["checks"]
        )
        t.add_row(r["label"], r["brokerq"], r["raw"], r["goqueue"], r["ratios"], checks)
    console.print(t)
