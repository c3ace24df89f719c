"""The ``pintu`` subcommands, one module per group."""
