"""Suite-wide setup: logs go to stderr as in the CLI, so stdout assertions see only envelopes."""

from cdc_logs.observability import logging as cdc_logging

cdc_logging.configure("warning")
