"""Logging (structlog, secrets redacted), Prometheus metrics and health endpoints."""
