"""``brokerq dead``: list dead letters (read-only), or requeue or delete them."""

from __future__ import annotations

import json

import click

from brokerq import cli_io
from brokerq.broker import Broker
from brokerq.cli_common import NotFound, config_arg, errors_to_exit, opened
from brokerq.errors import ConfigError, NotSupported


@click.command()
@config_arg
@click.option("--retry", "requeue", is_flag=True, help="Requeue dead letters (all, or --ref).")
@click.option("--purge", is_flag=True, help="Delete dead letters (all, or --ref).")
@click.option("--ref", "refs", multiple=True, help="Only these dead letters (ref or message id).")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(min=1))
@click.option("--json", "as_json", is_flag=True, help="List as JSON, tracebacks included.")
@errors_to_exit
def dead(
    config: str, requeue: bool, purge: bool, refs: tuple[str, ...], limit: int, as_json: bool
) -> None:
    """List dead letters (read-only), or requeue (--retry) or delete (--purge) them.

    With --ref, only those; exit 6 when none of them is a dead letter.
    """
    if requeue and purge:
        raise ConfigError("choose one of --retry and --purge")
    wanted = list(refs) or None
    with opened(config) as (_, broker):
        if requeue or purge:
            count = broker.retry_dead(wanted) if requeue else broker.purge_dead(wanted)
            if wanted and count == 0:
                raise NotFound(f"no dead letter with ref {', '.join(refs)}")
            click.echo(f"{'requeued' if requeue else 'purged'} {count}")
            return
        letters = broker.dead_letters(limit + 1, wanted)
        total = _dead_total(broker) if len(letters) > limit and wanted is None else None
    shown = letters[:limit]
    if wanted and not shown:
        raise NotFound(f"no dead letter with ref {', '.join(refs)}")
    if as_json:
        click.echo(json.dumps([cli_io.dead_json(d) for d in shown], indent=2))
        return
    for d in shown:
        text = d.message.value.decode(errors="replace")
        ref = d.ref or d.message.id
        ident = "" if ref == d.message.id else f"\tid={d.message.id}"
        error = " ".join(d.error.split())  # one line per dead letter, whatever the error text
        click.echo(f"{ref}{ident}\tattempt={d.message.attempt}\t{error}\t{text[:80]}")
    if len(letters) <= limit:
        click.echo(f"{len(shown)} dead letter(s)")
    elif total is not None:
        click.echo(f"showing {len(shown)} of {total} dead letter(s) (raise --limit for more)")
    else:
        click.echo(f"showing the first {len(shown)} dead letter(s); more exist (raise --limit)")


def _dead_total(broker: Broker) -> int | None:
    try:
        return broker.stats().get("dead")
    except NotSupported:
        return None
