"""Sinks: one module per destination, all on the contract in `base`."""
