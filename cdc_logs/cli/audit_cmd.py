"""`cdc-logs audit verify|keygen|totals`: check an audit log, make a signing key pair, print control totals.

verify exits 0 when the whole log checks out and 1 naming the first bad record (segment, line, record
number, what is wrong); usage problems exit 2. See docs/audit.md.
"""

from __future__ import annotations

import os
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import typer
from rich.console import Console
from rich.table import Table

from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.extras import need
from cdc_logs.middleware import audit_log
from cdc_logs.middleware.financial import EXACT, TOTALS_FILE, read_totals

app = typer.Typer(help="Audit trail and financial control totals (docs/audit.md).", no_args_is_help=True)


@app.command("verify")
def verify(
    path: Path = typer.Argument(..., help="An audit log directory, or one segment file."),
    public_key: Path | None = typer.Option(
        None, "--public-key", help="PEM public key: check every sealed segment's signature."
    ),
    allow_pruned: bool = typer.Option(
        False,
        "--allow-pruned",
        help="Accept a log whose first segments are gone without a retention record (removed on purpose).",
    ),
    as_json: bool = typer.Option(False, "--json", help="JSON for scripts."),
) -> None:
    """Check the hash chain, seals and signatures; name the first bad record."""
    if not path.exists():
        raise CdcError(
            ErrorKind.USAGE, f"{path} does not exist", "give the audit log directory (docs/audit.md)"
        )
    key = _load_public_key(public_key) if public_key is not None else None
    committed = _committed_head(path) if path.is_dir() else None
    report = audit_log.verify(path, key, committed, allow_pruned)
    if report.empty and (committed is None or committed[0] == 0):  # a committed log that is gone: exit 1
        raise CdcError(
            ErrorKind.USAGE,
            f"{path} holds no audit segments (audit-NNNNNN.log)",
            "give the audit_trail directory (default <state_dir>/audit_trail, docs/audit.md)",
        )
    if report.ok and key is None and report.signed:
        report.notes.append(f"{report.signed} segments are signed: give --public-key to check the signatures")
    if as_json:
        print(
            orjson.dumps(
                {
                    "ok": report.ok,
                    "first_problem": str(report.problems[0]) if report.problems else None,
                    "problem": report.problems[0].__dict__ if report.problems else None,
                    "segments": report.segments,
                    "records": report.records,
                    "first_record": report.first_seq,
                    "last_record": report.last_seq,
                    "signed_segments": report.signed,
                    "open_segment": report.open_segment,
                    "signatures_checked": key is not None,
                    "notes": report.notes,
                }
            ).decode()
        )
    else:
        for note in report.notes:
            print(f"note: {note}")
        if report.ok:
            span = f"records {report.first_seq}-{report.last_seq}" if report.records else "no records"
            checked = (
                "chain, seals and signatures"
                if key is not None
                else "chain and seals (signatures not checked)"
            )
            print(
                f"ok: {len(report.segments)} segments, {report.records} records ({span}); {checked} verified"
            )
        else:
            print(f"BAD: {report.problems[0]}")
    if not report.ok:
        raise typer.Exit(1)


def _load_public_key(path: Path) -> Any:
    need("cryptography", "audit", "checking audit signatures")
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except OSError as exc:
        raise CdcError(
            ErrorKind.USAGE, f"--public-key {path}: {exc.strerror}", "give the public PEM file"
        ) from None
    except ValueError:
        raise CdcError(
            ErrorKind.USAGE,
            f"--public-key {path} is not a PEM public key",
            "give audit-public.pem from `cdc-logs audit keygen`",
        ) from None
    if not isinstance(key, Ed25519PublicKey):
        raise CdcError(
            ErrorKind.USAGE,
            f"--public-key {path} is not an Ed25519 key",
            "give the audit key pair's public key",
        )
    return key


def _committed_head(directory: Path) -> tuple[int, str] | None:
    """The head the newest checkpointed state of this log's stage holds (the log must reach it), when
    the directory is a stage folder inside the pipeline's state directory."""
    generations = sorted(directory.parent.glob("stages.*.json"), reverse=True)
    for generation in generations:
        try:
            state = orjson.loads(generation.read_bytes())["stages"].get(directory.name)
        except (OSError, orjson.JSONDecodeError, KeyError, AttributeError):
            continue
        if isinstance(state, dict) and "records" in state and "head" in state:
            return int(state["records"]), str(state["head"])
        return None
    return None


@app.command("keygen")
def keygen(
    out: Path = typer.Option(
        ..., "--out", help="Directory for audit-private.pem (0600) and audit-public.pem."
    ),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing key pair."),
) -> None:
    """Make an Ed25519 key pair for signing audit segments (the private key is never printed)."""
    need("cryptography", "audit", "audit keygen")
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    try:
        out.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise CdcError(
            ErrorKind.USAGE, f"--out {out} is a file, not a directory", "give a directory for the key pair"
        ) from None
    except OSError as exc:
        raise CdcError(
            ErrorKind.USAGE,
            f"--out {out}: cannot create the directory: {exc.strerror}",
            "give a directory you can write to",
        ) from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise CdcError(
            ErrorKind.USAGE,
            f"--out {out}: the directory is not writable",
            "give a directory you can write to",
        )
    private_path, public_path = out / "audit-private.pem", out / "audit-public.pem"
    if not force and (private_path.exists() or public_path.exists()):
        raise CdcError(
            ErrorKind.USAGE,
            f"{private_path} or {public_path} already exists",
            "keep the existing pair (logs signed with it verify only with its public key), or pass --force",
        )
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    if force:
        private_path.unlink(missing_ok=True)
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(private)
    public_path.write_bytes(public)
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    print(f"private key: {private_path} (mode 0600; set it as audit_trail private_key_file)")
    print(f"public key:  {public_path} (give it to `cdc-logs audit verify --public-key`)")
    print(f"key id:      {audit_log.key_id(raw)}")


@app.command("totals")
def totals(
    directory: Path | None = typer.Argument(None, help="A financial_validation folder or a state directory."),
    config: Path | None = typer.Option(
        None, "-c", "--config", help="Pipeline YAML file (its sync.state_dir)."
    ),
    as_json: bool = typer.Option(False, "--json", help="JSON for scripts."),
) -> None:
    """Print the control totals of committed batches (count and exact sum per currency field, per code
    when the field has currency codes: never a sum across currencies)."""
    files = _totals_files(directory, config)
    batches: list[dict[str, Any]] = []
    for stage, file in files:
        batches.extend({"stage": stage, **t} for t in read_totals(file))
    grand = _grand_total(batches)
    if as_json:
        print(orjson.dumps({"batches": batches, "total": grand}).decode())
        return
    table = Table(title="control totals (committed batches)")
    for column in ("stage", "batch", "recorded", "field", "currency", "count", "sum", "rejected"):
        table.add_column(
            column, justify="right" if column in ("count", "sum", "rejected", "batch") else "left"
        )
    for b in batches:
        first = True
        for name, entry in b.get("fields", {}).items():
            rows = [(c, v) for c, v in entry.get("currencies", {}).items()] or [("", entry)]
            for code, value in rows:
                table.add_row(
                    b["stage"] if first else "",
                    _batches(b) if first else "",
                    str(b.get("recorded_at", "")) if first else "",
                    name,
                    code,
                    str(value["count"]),
                    str(value["sum"]),
                    str(b.get("rejected", 0)) if first else "",
                )
                first = False
        if first:  # only rejected changes in this batch
            table.add_row(
                b["stage"],
                str(b["batch"]),
                str(b.get("recorded_at", "")),
                "",
                "",
                "0",
                "0",
                str(b.get("rejected", 0)),
            )
    for key, value in grand.items():
        name, _, code = key.partition(":")
        table.add_row("total", "", "", name, code, str(value["count"]), value["sum"], "")
    if not batches:
        table.caption = "no committed batch has totals yet"
    Console(width=160).print(table)


def _batches(totals: dict[str, Any]) -> str:
    last = totals.get("last_batch")
    return f"{totals['batch']}-{last}" if last is not None else str(totals["batch"])


def _totals_files(directory: Path | None, config: Path | None) -> list[tuple[str, Path]]:
    if (directory is None) == (config is None):
        raise CdcError(
            ErrorKind.USAGE,
            "give either -c pipeline.yaml or a directory",
            "cdc-logs audit totals -c pipeline.yaml",
        )
    if config is not None:
        from cdc_logs.build import state_dir
        from cdc_logs.configfile import load_config

        cfg = load_config(config)
        root = Path(state_dir(cfg))
        names = [str(getattr(p, "type", "")) for p in cfg.plugins.all()]
        stages, seen = [], 0
        for n in names:
            if n == "financial_validation":
                seen += 1
                stages.append(n if seen == 1 else f"{n}-{seen}")
        if not stages:
            raise CdcError(
                ErrorKind.USAGE, f"{config} has no financial_validation middleware", "add one (docs/audit.md)"
            )
        return [(s, root / s / TOTALS_FILE) for s in stages]
    assert directory is not None
    if (directory / TOTALS_FILE).exists():
        return [(directory.name, directory / TOTALS_FILE)]
    found = sorted(directory.glob(f"*/{TOTALS_FILE}"))
    if not found:
        raise CdcError(
            ErrorKind.USAGE,
            f"no {TOTALS_FILE} in {directory} or its folders",
            "give the pipeline's state directory",
        )
    return [(f.parent.name, f) for f in found]


def _grand_total(batches: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Sum over batches per field, or per field:code when the field has currency codes (amounts in
    different currencies are never added together), exact. Files written before codes were summed
    per code only may carry a field-level sum next to codes: it is ignored."""
    out: dict[str, dict[str, Any]] = {}
    for b in batches:
        for name, entry in b.get("fields", {}).items():
            currencies = entry.get("currencies", {})
            keys = [(f"{name}:{c}", v) for c, v in currencies.items()] if currencies else [(name, entry)]
            for key, value in keys:
                total = out.setdefault(key, {"count": 0, "sum": Decimal(0)})
                total["count"] += int(value["count"])
                total["sum"] = EXACT.add(total["sum"], Decimal(value["sum"]))
    return {k: {"count": v["count"], "sum": str(v["sum"])} for k, v in out.items()}
