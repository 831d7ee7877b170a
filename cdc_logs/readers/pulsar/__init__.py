"""The `pulsar` source: a Pulsar subscription read with the official client (pulsar-client), acked
only after the sinks hold the data. NOT tested against a live broker here (docs/sources/pulsar.md)."""
