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
    help="Where the demo keeps its keys, configs, databases and logs.",
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
    "--port",
    type=click.IntRange(1, 65535),
    default=None,
    help="Dashboard port (default 8080, or a free one if 8080 is taken).",
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
    port: int | None,
    duration: float | None,
) -> None:
    """Run a simulated facility: broker, hub with dashboard, and door nodes.

    Simulated visitors with a mix of green, yellow, red and black passes arrive at the
    entrances and leave by the exits; the dashboard shows occupancy live. Ctrl-C stops
    every process.

    \b
    Example:
      pintu demo --entries 2 --exits 1 --capacity 30
    """
    from pintu.demo import DemoError, DemoOptions, run_demo

    options = DemoOptions(
        workdir=workdir,
        entries=entries,
        exits=exits,
        capacity=capacity,
        visitors_per_minute=visitors_per_minute,
        web_port=port,
    )
    try:
        run_demo(options, duration, lambda line: click.echo(line, err=False))
    except DemoError as err:
        raise click.ClickException(str(err)) from err
