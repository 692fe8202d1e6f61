"""``v4runtime service serve``: run the scan service."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``service`` command group."""
    parser = subparsers.add_parser("service", help="the scan service (HTTP front of the scanner)")
    sub = parser.add_subparsers(dest="service_command", metavar="SUBCOMMAND", required=True)
    serve = sub.add_parser("serve", help="serve POST /v1/scan on loopback")
    serve.add_argument("--host", default=None, help="bind address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="port (default 8401; 0 picks a free one)")
    serve.add_argument("--model", default=None, help="model name or ONNX path (default: the shipped model)")
    serve.add_argument("--threshold", type=float, default=None, help="decision threshold (default: model card's)")
    serve.add_argument("--monitor-url", default=None, help="monitoring API to report scans to (optional)")
    serve.add_argument("--monitor-token", default=None,
                       help="write token for the monitoring API (visible in ps: prefer V4_SCANNER__MONITOR_TOKEN)")
    serve.add_argument("--config", default=None, metavar="FILE", help="YAML settings file")
    serve.add_argument("--port-file", default=None, metavar="FILE", help="write the bound port here")
    serve.set_defaults(func=_serve)


def _serve(args: argparse.Namespace) -> int:
    from v4runtime.client import MonitoringClient
    from v4runtime.config import load_settings
    from v4runtime.scanner import Scanner
    from v4runtime.service.app import create_scan_app
    from v4runtime.serving import serve_app

    settings = load_settings(args.config, overrides=_overrides(args)).scanner
    scanner = Scanner(model=args.model or settings.model, threshold=settings.threshold if args.threshold is None else args.threshold)
    monitor_url = settings.monitor_url
    token = args.monitor_token or settings.monitor_token
    monitor = MonitoringClient(monitor_url, token=token) if monitor_url else None
    try:
        app = create_scan_app(scanner, monitor, max_scans=settings.max_scans, scan_queue=settings.scan_queue)
    except Exception:
        if monitor is not None:
            monitor.close(timeout=0)
        raise
    host = args.host or settings.host
    port = settings.port if args.port is None else args.port
    return serve_app(
        app, host=host, port=port, port_file=args.port_file,
        banner=lambda url: f"v4runtime scan service: listening on {url} (model {scanner.model_name})",
    )


def _overrides(args: argparse.Namespace) -> dict[str, dict[str, str]]:
    """The options validated like the settings they override: ``--monitor-url 127.0.0.1:8400`` (no
    scheme) is refused as ``V4_SCANNER__MONITOR_URL`` would be, not accepted with every event then dropped."""
    return {"scanner": {"monitor_url": args.monitor_url}} if args.monitor_url else {}
