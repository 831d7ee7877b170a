"""The `cdc-logs` command line (typer): one module per command group."""
