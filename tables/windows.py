"""Event-time windows, all built from tumbling panes [start, start + size):

  tumbling window  = one pane;             closed once watermark >= start + size + grace
  hopping window   = hop / size panes, advancing by one pane ([start, start + hop));
                                           closed once watermark >= start + hop + grace
An event is late when its pane has closed: it then counts in no window at all. A pane is kept
until the last hopping window holding it has closed, and dropped once that is committed.
How long (event time) an event_id is remembered for dedup is set here too.
"""

from __future__ import annotations

from dataclasses import dataclass

PANE_MS = 60_000
HOP_MS = 300_000
DEFAULT_GRACE_MS = 30_000
DEFAULT_DEDUP_HORIZON_MS = 3_600_000
MAX_COUNT = 2**63 - 1  # every count and sum saturates here: what orjson, Redis, a JVM long hold


@dataclass(frozen=True, slots=True)
class WindowSpec:
    size_ms: int = PANE_MS  # the tumbling window, also the hop's advance
    grace_ms: int = DEFAULT_GRACE_MS
    dedup_horizon_ms: int = DEFAULT_DEDUP_HORIZON_MS  # how long (event time) an id is kept
    hop_ms: int = HOP_MS  # the hopping window's length: a multiple of size_ms

    def __post_init__(self) -> None:
        if self.hop_ms % self.size_ms or self.hop_ms < self.size_ms:
            raise ValueError(f"hop {self.hop_ms} ms must be a multiple of size {self.size_ms} ms")

    def start_of(self, time_ms: int) -> int:
        return time_ms - time_ms % self.size_ms

    def closes_at(self, start_ms: int) -> int:
        """The watermark at which the pane [start, start + size) stops accepting events."""
        return start_ms + self.size_ms + self.grace_ms

    def is_closed(self, start_ms: int, watermark_ms: int) -> bool:
        return watermark_ms >= self.closes_at(start_ms)

    def hop_closes_at(self, start_ms: int) -> int:
        """The watermark at which the hopping window [start, start + hop) is final; also when
        the pane starting at `start_ms` is needed no more (this is the last window holding it)."""
        return start_ms + self.hop_ms + self.grace_ms

    def passes_a_close(self, before_ms: int, after_ms: int) -> bool:
        """Whether a watermark moving from `before_ms` to `after_ms` closes some window: every
        close time (tumbling and hopping) is a pane start + size + grace."""
        offset = self.size_ms + self.grace_ms
        return self.start_of(after_ms - offset) > self.start_of(before_ms - offset)

    def hops_holding(self, pane_start_ms: int) -> range:
        """Starts of the hopping windows that contain the pane starting at `pane_start_ms`."""
        return range(pane_start_ms - self.hop_ms + self.size_ms, pane_start_ms + 1, self.size_ms)
