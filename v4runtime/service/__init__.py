"""The scan service: an HTTP front for :class:`v4runtime.scanner.Scanner` that reports every scan
to the monitoring API."""

from v4runtime.service.app import create_scan_app

__all__ = ["create_scan_app"]
