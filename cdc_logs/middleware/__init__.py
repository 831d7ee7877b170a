"""Batch middleware (stages.py): components configured under `plugins.middleware` or
`plugins.transformers` that see whole batches and may keep checkpointed state (audit trail, financial
validation, IoT windows, anomaly detection). Each registers its config with `registry.transform`; its
build function returns a `BatchStage`."""
