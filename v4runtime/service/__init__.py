"""The scan service: an HTTP front for :class:`v4runtime.scanner.Scanner` that reports every scan
to the monitoring API. The app lives in :mod:`v4runtime.service.app` (not imported here, so the
command line starts without loading FastAPI)."""
