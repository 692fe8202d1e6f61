"""``v4runtime monitor serve`` and ``v4runtime monitor openapi``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``monitor`` command group."""
    parser = subparsers.add_parser("monitor", help="the monitoring API server")
    sub = parser.add_subparsers(dest="monitor_command", metavar="SUBCOMMAND", required=True)

    serve = sub.add_parser("serve", help="serve the monitoring API")
    serve.add_argument("--db", metavar="URL", help="sqlite:///FILE or postgresql://... (default: settings)")
    serve.add_argument("--host", help="bind address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default 8400; 0 picks a free one)")
    serve.add_argument("--config", metavar="FILE", help="YAML settings file")
    serve.add_argument("--port-file", metavar="FILE", help="write the bound port here once listening")
    serve.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"])
    serve.set_defaults(func=_serve)

    spec = sub.add_parser("openapi", help="print the OpenAPI document of the API")
    spec.add_argument("--output", metavar="FILE", help="write to FILE instead of stdout")
    spec.set_defaults(func=_openapi)


def _serve(args: argparse.Namespace) -> int:
    from v4runtime.config import load_settings
    from v4runtime.monitoring.server import serve

    settings = load_settings(args.config).monitor
    overrides = {k: v for k, v in (("db_url", args.db), ("host", args.host), ("port", args.port)) if v is not None}
    settings = settings.model_validate({**settings.model_dump(), **overrides})
    return serve(settings, port_file=args.port_file, log_level=args.log_level)


def openapi_document() -> dict:
    """The OpenAPI document of the monitoring API (no server or store is started)."""
    from v4runtime.monitoring.app import create_app

    return create_app().openapi()


def openapi_text() -> str:
    """The document as committed under docs/generated/monitoring/openapi.json."""
    return json.dumps(openapi_document(), indent=2, sort_keys=True) + "\n"


def _openapi(args: argparse.Namespace) -> int:
    text = openapi_text()
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(text, encoding="utf-8")
        print(f"wrote {args.output}")
    else:
        sys.stdout.write(text)
    return 0
