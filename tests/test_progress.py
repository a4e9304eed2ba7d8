"""The shared progress lines: throttled, with counts, percentage and ETA, and always a last line."""

import io

from maskforge.progress import Progress, duration, track


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_progress_prints_at_most_every_interval_and_at_the_end_with_eta():
    clock, out = Clock(), io.StringIO()
    progress = Progress(4, "make_cam r0", interval=10, stream=out, clock=clock)
    for step in range(4):
        clock.now += 6          # 6 s per image
        progress.update(loss=0.5 / (step + 1))
    lines = out.getvalue().splitlines()
    assert lines == ["make_cam r0: 2/4 images (50%), 12s, ETA 12s, loss 0.2500",
                     "make_cam r0: 4/4 images (100%), 24s, loss 0.1250"]


def test_a_disabled_progress_is_silent_and_track_yields_every_item():
    out = io.StringIO()
    progress = Progress(2, "x", stream=out, enabled=False)
    progress.update(2)
    assert out.getvalue() == ""
    assert list(track("abc", 3, "saliency", stream=out, interval=0)) == ["a", "b", "c"]
    assert out.getvalue().splitlines()[-1].startswith("saliency: 3/3 images (100%)")


def test_duration_reads_like_a_clock():
    assert [duration(s) for s in (9.4, 75, 3725)] == ["9s", "1m15s", "1h02m"]
