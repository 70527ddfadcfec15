"""A chart's series: x and y in growable arrays, and the envelope a long series is drawn from."""

from __future__ import annotations

import numpy as np

# A series longer than LONG is drawn from its envelope (the min and max of every BIN points), kept up to date as
# points arrive: pyqtgraph's own peak downsampling scans every point of every curve on each setData, about 3 ms a
# million points, which a long run pays on every frame. Zoomed in to at most DETAIL points, they are drawn as
# they are.
LONG = 50_000
BIN = 64
DETAIL = 50_000


class Series:
    """x and y in arrays that double when full: appending is O(1) and setData gets views, not copies."""

    def __init__(self) -> None:
        self._x = np.empty(256)
        self._y = np.empty(256)
        self.size = 0

    def append(self, x: float, y: float) -> None:
        if self.size == len(self._x):
            self._x = np.concatenate([self._x, np.empty(len(self._x))])
            self._y = np.concatenate([self._y, np.empty(len(self._y))])
        self._x[self.size], self._y[self.size] = x, y
        self.size += 1

    def extend(self, xs: np.ndarray, ys: np.ndarray) -> None:
        need = self.size + len(xs)
        if need > len(self._x):
            capacity = max(need, 2 * len(self._x))
            self._x = np.concatenate([self._x[:self.size], np.empty(capacity - self.size)])
            self._y = np.concatenate([self._y[:self.size], np.empty(capacity - self.size)])
        self._x[self.size:need], self._y[self.size:need] = xs, ys
        self.size = need

    def set(self, xs, ys) -> None:
        xs, ys = np.asarray(xs, dtype=float), np.asarray(ys, dtype=float)
        self.size = len(xs)
        self._x = np.empty(max(256, self.size))
        self._y = np.empty(max(256, self.size))
        self._x[:self.size], self._y[:self.size] = xs, ys

    @property
    def x(self) -> np.ndarray:
        return self._x[:self.size]

    @property
    def y(self) -> np.ndarray:
        return self._y[:self.size]


class Envelope:
    """A long series as the min and max of every BIN of its drawable points, each pair at the bin's first step (as
    pyqtgraph's peak mode draws them); `done` raw points are in it, the rest of the series is drawn as it is."""

    def __init__(self, log_y: bool) -> None:
        self.log_y = log_y
        self.points = Series()
        self.done = 0

    def update(self, series: Series, good) -> None:
        whole = series.size // BIN * BIN
        if whole <= self.done:
            return
        x, y = series.x[self.done:whole], series.y[self.done:whole]
        y = np.where(good(y), y, np.nan).reshape(-1, BIN)
        low, high = np.fmin.reduce(y, axis=1), np.fmax.reduce(y, axis=1)      # NaN only where a bin has nothing
        keep = ~np.isnan(low)
        self.points.extend(np.repeat(x[::BIN][keep], 2), np.column_stack([low[keep], high[keep]]).ravel())
        self.done = whole
