"""The profile bench's arithmetic: kernel time inside the ticks, overlaps counted once."""

from types import SimpleNamespace

from torch.autograd import DeviceType

from duo.bench.engine_gpu.profile import TICK, covered, kind, summarize


def _event(name: str, device: DeviceType, start: float, end: float) -> SimpleNamespace:
    return SimpleNamespace(name=name, device_type=device, time_range=SimpleNamespace(start=start, end=end),
                           self_cpu_time_total=end - start if device == DeviceType.CPU else 0.0)


def test_overlapping_kernels_count_once() -> None:
    assert covered([(0, 4), (2, 6), (10, 11)], [(0, 20)]) == 7


def test_kernels_outside_the_ticks_do_not_count() -> None:
    # a kernel straddling the gap between two ticks counts only where a tick was open
    assert covered([(8, 14), (30, 40)], [(0, 10), (12, 20)]) == 4


def test_no_kernels_no_time() -> None:
    assert covered([], [(0, 5)]) == 0


def test_kernels_are_told_apart_by_kind() -> None:
    assert kind("sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize128x128x64") == "matmul"
    assert kind("nvjet_tst_128x256_64x4_1x2_h_bz_coopB_TNT") == "matmul"
    assert kind("paged_decode") == "paged attention"
    assert kind("pytorch_flash::flash_fwd_kernel") == "other attention"
    assert kind("void at::native::vectorized_elementwise_kernel<4, at::native::CUDAFunctor_add>") == "other"


def test_the_ticks_annotation_on_the_gpu_timeline_is_not_a_kernel() -> None:
    # the profiler mirrors `record_function(TICK)` on the GPU as one event spanning the tick: busy is the kernels
    events = [_event(TICK, DeviceType.CPU, 0, 10_000), _event(TICK, DeviceType.CUDA, 100, 9_900),
              _event("nvjet_tst_128x256", DeviceType.CUDA, 1_000, 3_000),
              _event("paged_decode", DeviceType.CUDA, 4_000, 5_000)]
    row = summarize(events, ticks=1)
    assert row["gpu_busy_ms_per_tick"] == 3.0
    assert row["kernel_ms_per_tick"] == {"matmul": 2.0, "paged attention": 1.0}
    assert row["gpu_waits_ms_per_tick"] == 7.0
