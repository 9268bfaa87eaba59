"""One progress line per few seconds, with an ETA, for long preparation steps
(learning a vocabulary, building SQuAD features, fetching a corpus).

    progress = Progress("SQuAD features (train)", total=len(examples), unit="questions")
    for example in examples:
        ...
        progress.update()
    progress.done()

prints, at most every `every` seconds (and nothing for a step that ends sooner)::

    SQuAD features (train): 41200/87599 questions (47%) | 0m12s | ETA 0m14s

and at `done()`, if it printed anything or took longer than `every`:

    SQuAD features (train): 87599 questions in 0m26s
"""

import math
import sys
import time

DEFAULT_EVERY = 5.0


def format_duration(seconds):
    """``1m05s`` / ``2h03m07s``; ``?`` for an unknown duration."""
    if seconds is None or not math.isfinite(seconds):
        return "?"
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


class Progress:
    def __init__(self, what, total=None, unit="", every=DEFAULT_EVERY, stream=None,
                 clock=time.monotonic):
        self.what, self.total, self.unit = what, total, unit
        self.every = every
        self.stream = stream
        self.clock = clock
        self.count = 0
        self.start = clock()
        self._last = self.start
        self.lines = 0

    def _print(self, text):
        print(text, file=self.stream or sys.stdout, flush=True)
        self.lines += 1

    def line(self):
        """The current progress line."""
        elapsed = self.clock() - self.start
        unit = f" {self.unit}" if self.unit else ""
        if self.total:
            eta = (elapsed * (self.total - self.count) / self.count) if self.count else None
            pct = 100.0 * self.count / self.total
            return (f"{self.what}: {self.count}/{self.total}{unit} ({pct:.0f}%) | "
                    f"{format_duration(elapsed)} | ETA {format_duration(eta)}")
        return f"{self.what}: {self.count}{unit} | {format_duration(elapsed)}"

    def update(self, n=1):
        self.count += n
        now = self.clock()
        if now - self._last >= self.every:
            self._last = now
            self._print(self.line())

    def note(self, text):
        """A line about a phase without a count (e.g. one long library call)."""
        self._print(f"{self.what}: {text}")
        self._last = self.clock()

    def done(self, result=None):
        """The closing line (printed when the step took `every` seconds or more)."""
        elapsed = self.clock() - self.start
        if self.lines or elapsed >= self.every:
            unit = f" {self.unit}" if self.unit else ""
            what = result if result is not None else f"{self.count}{unit}"
            self._print(f"{self.what}: {what} in {format_duration(elapsed)}")
        return elapsed


def track(iterable, what, total=None, unit="", every=DEFAULT_EVERY):
    """Yield from `iterable`, reporting progress (total: len(iterable) if it has one)."""
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)
    progress = Progress(what, total, unit, every)
    for item in iterable:
        yield item
        progress.update()
    progress.done()
