"""`python -m cdc_logs` is the `cdc-logs` command."""

from cdc_logs.cli.main import main

main()
