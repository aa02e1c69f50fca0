"""The profile bench's arithmetic: kernel time inside the ticks, overlaps counted once."""

from duo.bench.engine_gpu.profile import covered


def test_overlapping_kernels_count_once() -> None:
    assert covered([(0, 4), (2, 6), (10, 11)], [(0, 20)]) == 7


def test_kernels_outside_the_ticks_do_not_count() -> None:
    # a kernel straddling the gap between two ticks counts only where a tick was open
    assert covered([(8, 14), (30, 40)], [(0, 10), (12, 20)]) == 4


def test_no_kernels_no_time() -> None:
    assert covered([], [(0, 5)]) == 0
