"""``ingest schemas register|check``: the schema steps alone, for CI/CD.

``check`` is the gate before a deploy: it asks the registry whether every local schemas/*.avsc may be
registered under its subject with the subject's compatibility rule (BACKWARD), and exits 1 naming each
subject that would be refused, so an incompatible change fails the pipeline instead of the running worker.
``register`` does what the worker does at start (compatibility BACKWARD, then register) and prints the ids.
"""

from __future__ import annotations

import argparse
import sys

from ingest import config
from ingest.avro import SCHEMA_FILES, check_compatibility, is_retryable, make_client, register_schemas, subject_for
from ingest.worker import probe_registry


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=("register", "check"),
                        help="register: register every schema (compatibility BACKWARD); "
                             "check: exit 1 if a local schema is incompatible with the registry's latest version")
    config.add_arguments(parser, names=("schema_registry_url", "schema_registry_user_info", "topic_prefix"))


def main(args: argparse.Namespace) -> int:
    settings = config.load(args)
    if not settings.schema_registry_url:
        raise config.ConfigError("Schema Registry URL missing: set --schema-registry-url or SCHEMA_REGISTRY_URL")
    client = make_client(settings.schema_registry_url, settings.schema_registry_user_info)
    topics = {kind: settings.topic(kind) for kind in SCHEMA_FILES}
    try:
        # A URL without Apicurio's /apis/ccompat/v7 answers 404 to every subject, which `check` would report as
        # "new": the read-only probe turns it into one line (exit 2) first.
        probe_registry(client, settings.schema_registry_url)
        if args.action == "register":
            encoders = register_schemas(client, topics)
            for kind, encoder in encoders.items():
                print(f"{subject_for(topics[kind])}: {SCHEMA_FILES[kind]} registered, id {encoder.schema_id}")
            return 0
        results = check_compatibility(client, topics)
    except config.ConfigError:
        raise
    except Exception as exc:
        what = "unreachable" if is_retryable(exc) else "refused the request"
        print(f"ingest schemas {args.action}: registry {settings.schema_registry_url} {what}: "
              f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    finally:
        client.close()
    for result in results:
        print(f"{result.subject}: {SCHEMA_FILES[result.kind]} {result.status}")
    bad = [r.subject for r in results if not r.ok]
    if bad:
        print(f"ingest schemas check: incompatible with the registry: {', '.join(bad)}", file=sys.stderr)
        return 1
    return 0
