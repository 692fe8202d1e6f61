"""Per-minute aggregates: what one batch adds to each minute, and stats read back from minute rows.

A minute row per model version carries counts, sums and the latency histogram; rows add up, so a window
of an hour reads about 60 rows whatever the traffic was.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from operator import attrgetter

from v4runtime.monitoring.buckets import N_BUCKETS, bucket_index, percentile
from v4runtime.monitoring.schemas import InferenceEvent, LatencySummary, Stats, StatsPoint

#: Additive integer/float columns of a minute row, in storage order (the histogram follows as h0..hN).
SUM_COLUMNS: tuple[str, ...] = (
    "n", "errors", "ok", "stego", "prob_sum", "lat_sum", "tp", "fp", "tn", "fn_",
)
HIST_COLUMNS: tuple[str, ...] = tuple(f"h{i}" for i in range(N_BUCKETS))


@dataclass
class MinuteAgg:
    """Counts for one (minute, model_version), or for a merge of several."""

    n: int = 0
    errors: int = 0
    ok: int = 0
    stego: int = 0
    prob_sum: float = 0.0
    lat_sum: float = 0.0
    tp: int = 0
    fp: int = 0
    tn: int = 0
    fn_: int = 0
    lat_max: float = 0.0
    hist: list[int] = field(default_factory=lambda: [0] * N_BUCKETS)

    def add_event(self, event: InferenceEvent) -> None:
        """Count one event."""
        self.n += 1
        self.lat_sum += event.latency_ms
        self.lat_max = max(self.lat_max, event.latency_ms)
        self.hist[bucket_index(event.latency_ms)] += 1
        if event.error is not None or event.prediction is None:
            self.errors += event.error is not None
            return
        self.ok += 1
        stego = event.prediction == "stego"
        self.stego += stego
        if event.probability is not None:
            self.prob_sum += event.probability
        if event.label is not None:
            if event.label == "stego":
                self.tp += stego
                self.fn_ += not stego
            else:
                self.fp += stego
                self.tn += not stego

    def merge(self, other: MinuteAgg) -> None:
        """Add another aggregate into this one."""
        for name in SUM_COLUMNS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.lat_max = max(self.lat_max, other.lat_max)
        self.hist = [a + b for a, b in zip(self.hist, other.hist, strict=True)]

    def row(self) -> tuple[float, ...]:
        """Values in storage order: SUM_COLUMNS, lat_max, HIST_COLUMNS."""
        return (*(getattr(self, c) for c in SUM_COLUMNS), self.lat_max, *self.hist)

    @classmethod
    def from_row(cls, values: Sequence[float]) -> MinuteAgg:
        """Inverse of :meth:`row`."""
        # Written out (this runs for every minute row of every stats request); the int()/float() calls
        # normalise driver types. Field order is checked against SUM_COLUMNS below the class.
        n, errors, ok, stego, prob_sum, lat_sum, tp, fp, tn, fn_, lat_max = values[:11]
        return cls(
            int(n), int(errors), int(ok), int(stego), float(prob_sum), float(lat_sum), int(tp), int(fp), int(tn),
            int(fn_), float(lat_max), list(map(int, values[11 : 11 + N_BUCKETS])),
        )

    # Derived figures -------------------------------------------------------------------------
    @property
    def labelled(self) -> int:
        """Successful events carrying a ground-truth label."""
        return self.tp + self.fp + self.tn + self.fn_

    def error_rate(self) -> float | None:
        """Errors over all events."""
        return self.errors / self.n if self.n else None

    def stego_rate(self) -> float | None:
        """Stego predictions over successful events."""
        return self.stego / self.ok if self.ok else None

    def fpr(self) -> float | None:
        """False-positive rate on labelled clean events."""
        negatives = self.fp + self.tn
        return self.fp / negatives if negatives else None

    def tpr(self) -> float | None:
        """True-positive rate on labelled stego events."""
        positives = self.tp + self.fn_
        return self.tp / positives if positives else None

    def latency(self, q: float) -> float | None:
        """Latency quantile in ms."""
        return percentile(self.hist, q, self.lat_max)


assert tuple(f.name for f in fields(MinuteAgg)) == (*SUM_COLUMNS, "lat_max", "hist"), "from_row's order"


def deltas(events: Iterable[InferenceEvent]) -> dict[tuple[int, str], MinuteAgg]:
    """Group events by (minute start in epoch seconds, model_version)."""
    out: dict[tuple[int, str], MinuteAgg] = {}
    for event in events:
        assert event.timestamp is not None
        minute = int(event.timestamp.timestamp() // 60) * 60
        key = (minute, event.model_version)
        agg = out.get(key)
        if agg is None:
            agg = out[key] = MinuteAgg()
        agg.add_event(event)
    return out


def merge_all(aggs: Sequence[MinuteAgg]) -> MinuteAgg:
    """Sum of many aggregates, column by column (cheaper than repeated :meth:`MinuteAgg.merge`)."""
    out = MinuteAgg()
    if not aggs:
        return out
    for name in SUM_COLUMNS:
        setattr(out, name, sum(map(attrgetter(name), aggs)))
    out.lat_max = max(a.lat_max for a in aggs)
    out.hist = [sum(col) for col in zip(*(a.hist for a in aggs), strict=True)]
    return out


def _ts(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def build_stats(
    minutes: Sequence[tuple[int, MinuteAgg]],
    *,
    start: int,
    end: int,
    window: str,
    granularity_s: int,
    granularity: str,
    model_version: str | None,
) -> Stats:
    """Turn minute rows (already summed over model versions) into the stats answer."""
    total = merge_all([agg for _, agg in minutes])
    if granularity_s == 60:
        buckets = dict(minutes)  # one minute per point: nothing to merge
    else:
        groups: dict[int, list[MinuteAgg]] = {}
        for minute, agg in minutes:
            groups.setdefault(minute - (minute - start) % granularity_s, []).append(agg)
        buckets = {slot: merge_all(aggs) for slot, aggs in groups.items()}
    series = [
        StatsPoint(
            start=_ts(slot),
            events=agg.n,
            errors=agg.errors,
            latency_p95_ms=_r(agg.latency(0.95)),
            stego_rate=_r(agg.stego_rate()),
            mean_probability=_r(agg.prob_sum / agg.ok if agg.ok else None),
        )
        for slot, agg in sorted(buckets.items())
    ]
    span = max(end - start, 1)
    return Stats(
        window=window,
        granularity=granularity,
        model_version=model_version,
        start=_ts(start),
        end=_ts(end),
        events=total.n,
        errors=total.errors,
        error_rate=_r(total.error_rate()),
        throughput_per_s=round(total.n / span, 6),
        latency_ms=LatencySummary(
            mean=_r(total.lat_sum / total.n if total.n else None),
            p50=_r(total.latency(0.50)),
            p95=_r(total.latency(0.95)),
            p99=_r(total.latency(0.99)),
        ),
        stego_rate=_r(total.stego_rate()),
        mean_probability=_r(total.prob_sum / total.ok if total.ok else None),
        labelled=total.labelled,
        fpr=_r(total.fpr()),
        tpr=_r(total.tpr()),
        series=series,
    )


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 6)
