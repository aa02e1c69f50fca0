"""The profile bench's arithmetic: kernel time inside the ticks, overlaps counted once."""

from duo.bench.engine_gpu.profile import covered, kind


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
