"""The shared progress line: at most one line per `every` seconds, with an ETA."""

import io

from trainers.common.progress import Progress, format_duration, track


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_lines_every_few_seconds_with_an_eta():
    clock, out = Clock(), io.StringIO()
    p = Progress("learning", total=100, unit="batches", every=5, stream=out, clock=clock)
    for _ in range(10):
        clock.now += 1
        p.update(5)
    assert out.getvalue().splitlines() == [
        "learning: 25/100 batches (25%) | 0m05s | ETA 0m15s",
        "learning: 50/100 batches (50%) | 0m10s | ETA 0m10s",
    ]
    p.done("ok")
    assert out.getvalue().splitlines()[-1] == "learning: ok in 0m10s"


def test_a_short_step_prints_nothing():
    clock, out = Clock(), io.StringIO()
    p = Progress("quick", total=3, every=5, stream=out, clock=clock)
    for _ in range(3):
        p.update()
    p.done()
    assert out.getvalue() == ""


def test_note_and_unknown_total():
    clock, out = Clock(), io.StringIO()
    p = Progress("fetch", every=5, stream=out, clock=clock)
    p.note("downloading ...")
    clock.now = 7
    p.update(3)
    assert out.getvalue().splitlines() == ["fetch: downloading ...", "fetch: 3 | 0m07s"]


def test_track_yields_everything():
    assert list(track(range(4), "x", every=100)) == [0, 1, 2, 3]
    assert format_duration(None) == "?" and format_duration(3725) == "1h02m05s"
