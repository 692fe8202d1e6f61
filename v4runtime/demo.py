"""The demo scan behind ``v4runtime up``: build a small labelled corpus, scan it through the scan
service over HTTP, and read the monitoring API's stats back to show the events arrived."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from v4runtime.errors import V4Error

#: Seed of the demo corpus (distinct from the training and evaluation seeds).
DEMO_SEED = 7


def run_demo(demo_dir: Path, scan_url: str, monitor_url: str, *, images: int = 24, token: str | None = None) -> str:
    """Scan a freshly built demo corpus through ``scan_url``; return a printable summary.

    ``token`` is a monitoring API token able to read the stats (None when the API runs without tokens).
    The corpus of an earlier run is reused when it has the requested size; the events counted are the
    ones this run added (the database may hold earlier runs' events).
    """
    from v4runtime.datasets import build_corpus, read_manifest

    stego = images // 2
    rows = read_manifest(str(demo_dir)) if (demo_dir / "manifest.jsonl").exists() else None
    if rows is None or len(rows) != images:
        build_corpus(str(demo_dir), clean=images - stego, stego=stego, seed=DEMO_SEED, workers=1)
        rows = read_manifest(str(demo_dir))
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    before = _count_events(monitor_url, headers)
    tally = {"clean_ok": 0, "false_positive": 0, "stego_ok": 0, "missed": 0, "errors": 0}
    with httpx.Client(base_url=scan_url, timeout=30.0) as http:
        for row in rows:
            response = http.post("/v1/scan", content=(demo_dir / row["path"]).read_bytes())
            if response.status_code != 200:
                tally["errors"] += 1
                continue
            flagged = bool(response.json()["is_stego"])
            if row["label"]:
                tally["stego_ok" if flagged else "missed"] += 1
            else:
                tally["false_positive" if flagged else "clean_ok"] += 1
    logged = _wait_for_events(monitor_url, expected=before + len(rows), headers=headers) - before
    lines = [
        f"demo: scanned {len(rows)} images from {demo_dir} through the scan service",
        f"  clean images:  {tally['clean_ok']} passed, {tally['false_positive']} flagged (false positives)",
        f"  stego images:  {tally['stego_ok']} detected, {tally['missed']} missed",
        f"  unreadable:    {tally['errors']}",
        f"  monitoring API recorded {logged} scan events in the last hour",
    ]
    return "\n".join(lines)


def _count_events(monitor_url: str, headers: dict[str, str]) -> int:
    """Scan events the monitoring API counts in the last hour."""
    response = httpx.get(f"{monitor_url}/v1/metrics/stats", params={"window": "1h"}, headers=headers, timeout=5.0)
    if response.status_code != 200:
        raise V4Error(f"monitoring API answered {response.status_code} to /v1/metrics/stats")
    return int(response.json().get("events", 0))


def _wait_for_events(
    monitor_url: str, *, expected: int, timeout: float = 10.0, headers: dict[str, str] | None = None
) -> int:
    """Poll the stats endpoint until ``expected`` events are counted (the client sends in the background)."""
    deadline = time.monotonic() + timeout
    total = 0
    while time.monotonic() < deadline:
        total = _count_events(monitor_url, headers or {})
        if total >= expected:
            break
        time.sleep(0.3)
    return total
