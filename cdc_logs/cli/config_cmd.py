"""`cdc-logs config validate|schema`.

`validate` connects to nothing: it parses the config and checks that every source's and destination's
optional client (and a middleware's optional package) is installed (a missing one exits 2 naming the extra, as
`run` would), and that files a middleware names (audit_trail's private_key_file, a mask's salt_file)
are readable and of the right kind.
"""

from __future__ import annotations

import sys
from pathlib import Path

import orjson
import typer

from cdc_logs.configfile import json_schema, load_config
from cdc_logs.extras import check_sink, check_source
from cdc_logs.observability.redact import redact

app = typer.Typer(help="Validate a pipeline config or print its JSON Schema.", no_args_is_help=True)


@app.command("validate")
def validate(config: Path = typer.Option(..., "-c", "--config", help="Pipeline YAML file.")) -> None:
    """Check a pipeline config without connecting to anything; exit 2 naming the bad field."""
    cfg = load_config(config)
    for source in cfg.all_sources():  # a bus source's client (nats-py, pika, ...)
        check_source(source.type, source.name)
    for sink in cfg.all_sinks():
        check_sink(sink.type, sink.name)
    for plugin in cfg.plugins.all():  # a middleware's optional package (anomaly_detection's scikit-learn)
        check_extras = getattr(plugin, "check_extras", None)
        if check_extras is not None:
            check_extras()
        check_files = getattr(plugin, "check_files", None)  # files it names: key files, salt files
        if check_files is not None:
            check_files()
    sources = ", ".join(f"{s.name or s.type} ({s.type})" for s in cfg.all_sources())
    sinks = ", ".join(f"{d.name or d.type} ({d.type})" for d in cfg.all_sinks())
    for warning in cfg.warnings():
        print(redact(f"warning: {warning}"), file=sys.stderr)
    # Names are free text (a source named after its DSN): redacted like every message.
    print(redact(f"ok: pipeline {cfg.name!r}: sources {sources}; destinations {sinks}; sync {cfg.sync.mode}"))


@app.command("schema")
def schema() -> None:
    """Print the JSON Schema of the pipeline config (for editors and CI checks)."""
    sys.stdout.buffer.write(orjson.dumps(json_schema(), option=orjson.OPT_INDENT_2) + b"\n")
