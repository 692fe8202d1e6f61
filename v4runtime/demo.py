"""The demo scan behind ``v4runtime up``: build a small labelled corpus, scan it through the scan
service over HTTP, and read the monitoring API's stats back to show the events arrived."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from v4runtime.errors import V4Error

#: Seed of the demo corpus (distinct from the training and evaluation seeds).
DEMO_SEED = 7


def run_demo(demo_dir: Path, scan_url: str, monitor_url: str, *, images: int = 24) -> str:
    """Scan a freshly built demo corpus through ``scan_url``; return a printable summary."""
    from v4runtime.datasets import build_corpus, read_manifest

    stego = images // 2
    if not (demo_dir / "manifest.jsonl").exists():
        build_corpus(str(demo_dir), clean=images - stego, stego=stego, seed=DEMO_SEED, workers=1)
    rows = read_manifest(str(demo_dir))
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
    logged = _wait_for_events(monitor_url, expected=len(rows))
    lines = [
        f"demo: scanned {len(rows)} images from {demo_dir} through the scan service",
        f"  clean images:  {tally['clean_ok']} passed, {tally['false_positive']} flagged (false positives)",
        f"  stego images:  {tally['stego_ok']} detected, {tally['missed']} missed",
        f"  unreadable:    {tally['errors']}",
        f"  monitoring API recorded {logged} scan events in the last hour",
    ]
    return "\n".join(lines)


def _wait_for_events(monitor_url: str, *, expected: int, timeout: float = 10.0) -> int:
    """Poll the stats endpoint until ``expected`` events are counted (the client sends in the background)."""
    deadline = time.monotonic() + timeout
    total = 0
    while time.monotonic() < deadline:
        response = httpx.get(f"{monitor_url}/v1/metrics/stats", params={"window": "1h"}, timeout=5.0)
        if response.status_code != 200:
            raise V4Error(f"monitoring API answered {response.status_code} to /v1/metrics/stats")
        total = int(response.json().get("events", 0))
        if total >= expected:
            break
        time.sleep(0.3)
    return total
