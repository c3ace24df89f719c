"""``pintu demo``: a whole simulated facility with its dashboard, on this machine."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.option(
    "--workdir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(".demo"),
    show_default=True,
    help="Where the demo keeps its keys, configs, bundles, databases and logs; a stopped "
    "demo's is cleared at the start.",
)
@click.option(
    "--entries",
    type=click.IntRange(1, 8),
    default=2,
    show_default=True,
    help="Entrance doors, one node each.",
)
@click.option(
    "--exits",
    type=click.IntRange(1, 8),
    default=1,
    show_default=True,
    help="Exit doors, one node each.",
)
@click.option(
    "--capacity",
    type=click.IntRange(1),
    default=30,
    show_default=True,
    help="The facility's capacity in people.",
)
@click.option(
    "--visitors-per-minute",
    type=click.FloatRange(1, 600),
    default=20.0,
    show_default=True,
    help="Simulated visitors arriving per minute.",
)
@click.option(
    "--phones",
    type=click.IntRange(0, 5),
    default=4,
    show_default=True,
    help="Visitors who check in and out by scanning the doors' posters with a phone.",
)
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    default=None,
    help="Dashboard port (default 8080, or a free one if 8080 is taken).",
)
@click.option(
    "--registry-port",
    type=click.IntRange(1, 65535),
    default=None,
    help="The registry's port (default 8090, or a free one if 8090 is taken).",
)
@click.option(
    "--population",
    type=click.IntRange(10, 5000),
    default=200,
    show_default=True,
    help="People seeded into the registry, each with a pass the visitors hold up.",
)
@click.option(
    "--sync-interval",
    type=click.FloatRange(0.5, 600),
    default=5.0,
    show_default=True,
    help="Seconds between the hub's syncs with the registry.",
)
@click.option(
    "--status-every",
    type=click.FloatRange(1, 3600),
    default=90.0,
    show_default=True,
    help="Seconds between status changes at the registry (somebody turns black, ...).",
)
@click.option(
    "--duration",
    type=click.FloatRange(1),
    default=None,
    help="Stop by itself after this many seconds (default: run until Ctrl-C).",
)
def demo(
    workdir: Path,
    entries: int,
    exits: int,
    capacity: int,
    visitors_per_minute: float,
    phones: int,
    port: int | None,
    registry_port: int | None,
    population: int,
    sync_interval: float,
    status_every: float,
    duration: float | None,
) -> None:
    """Run a whole facility, provisioned for real: registry, broker, hub and door nodes.

    The registry is seeded with a population and registers the facility; the broker is
    configured by the provisioning tools (auth and ACLs on) and every door node enrolled
    through them; the hub syncs with the registry. Simulated visitors with green, yellow,
    red and black passes arrive at the entrances and leave by the exits, a few more check in
    and out by scanning the doors' posters with a phone, and now and then somebody's
    status changes at the registry. The dashboard shows occupancy live. Ctrl-C
    stops every process; the next run starts over in a cleared WORKDIR.

    \b
    Example:
      pintu demo --entries 2 --exits 1 --capacity 30
      pintu demo --workdir ~/pintu-demo --port 8081 --duration 120
    """
    from pintu.demo import DemoError, DemoOptions, run_demo

    options = DemoOptions(
        workdir=workdir,
        entries=entries,
        exits=exits,
        capacity=capacity,
        visitors_per_minute=visitors_per_minute,
        phones=phones,
        web_port=port,
        registry_port=registry_port,
        population=population,
        sync_interval_s=sync_interval,
        status_change_s=status_every,
    )
    try:
        run_demo(options, duration, lambda line: click.echo(line, err=False))
    except DemoError as err:
        raise click.ClickException(str(err)) from err
