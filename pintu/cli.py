"""The ``pintu`` command: one entry point, a subcommand group per part of the product."""

from __future__ import annotations

import click

from pintu import __version__
from pintu.commands.decode import decode
from pintu.commands.demo import demo
from pintu.commands.hub import hub
from pintu.commands.keys import keys
from pintu.commands.node import node
from pintu.commands.passes import pass_group
from pintu.commands.provision import provision
from pintu.commands.registry import registry
from runtime import logs


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="pintu")
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
def cli(verbose: int) -> None:
    """Pintu: QR check-in for building doors.

    Door nodes read signed QR passes and decide at the door; a facility hub keeps live
    occupancy; a central registry issues passes and statuses.

    \b
    Example:
      pintu keys generate --out keys/
      pintu pass issue --key keys/signing-1a2b3c4d.pem --subject 00112233445566778899aabb \\
          --status green --png pass.png
      pintu pass verify --image pass.png --trust keys/trust.json
    """
    logs.setup(verbose)


cli.add_command(keys)
cli.add_command(pass_group)
cli.add_command(decode)
cli.add_command(node)
cli.add_command(hub)
cli.add_command(demo)
cli.add_command(registry)
cli.add_command(provision)


def main() -> None:
    cli(prog_name="pintu")
