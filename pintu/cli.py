"""The ``pintu`` command: one entry point, a subcommand group per part of the product."""

from __future__ import annotations

import importlib

import click

from pintu import __version__
from runtime import logs

# Each subcommand group, loaded only when it is run (or listed by ``--help``): a service
# started by ``pintu hub serve`` or ``pintu node run`` does not carry the code and the
# libraries of the others (the QR writer, the registry, provisioning), about 2 MB.
COMMANDS = {
    "keys": "pintu.commands.keys:keys",
    "pass": "pintu.commands.passes:pass_group",
    "decode": "pintu.commands.decode:decode",
    "node": "pintu.commands.node:node",
    "hub": "pintu.commands.hub:hub",
    "demo": "pintu.commands.demo:demo",
    "registry": "pintu.commands.registry:registry",
    "provision": "pintu.commands.provision:provision",
}


class LazyGroup(click.Group):
    """A group whose subcommands named in ``COMMANDS`` are imported when first asked for."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS or cmd_name in self.commands:
            return super().get_command(ctx, cmd_name)
        module_name, attribute = COMMANDS[cmd_name].split(":")
        command = getattr(importlib.import_module(module_name), attribute)
        if not isinstance(command, click.Command) or command.name != cmd_name:
            raise RuntimeError(f"{COMMANDS[cmd_name]} is not the command {cmd_name!r}")
        self.add_command(command)
        return command


@click.group(
    cls=LazyGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
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


def main() -> None:
    cli(prog_name="pintu")
