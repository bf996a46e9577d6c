"""Peak resident memory of a block of code in this process (a sampler thread reading VmRSS every
50 ms), for benches that run several systems one after another in one process."""

from __future__ import annotations

import threading
from pathlib import Path


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class PeakRSS:
    """with PeakRSS() as peak: ...  then peak.mib is the highest RSS seen inside the block."""

    def __enter__(self) -> PeakRSS:
        self.mib, self._stop = rss_mib(), threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def _watch(self) -> None:
        while not self._stop.wait(0.05):
            self.mib = max(self.mib, rss_mib())

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.mib = max(self.mib, rss_mib())
