"""Host-device copies of a tick: the same values whichever way they travel; pinned and asynchronous on CUDA."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from duo.engine.sampler import choose, rows
from duo.engine.staging import PinnedRing, Staging

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (pinned memory, events)")


def test_off_cuda_the_copies_are_plain() -> None:
    staging = Staging(torch.device("cpu"))
    assert staging.payload is None
    up = staging.upload(np.array([[3, 1], [4, 1]]))
    assert up.dtype == torch.int64 and up.tolist() == [[3, 1], [4, 1]]
    assert np.array_equal(staging.download(torch.tensor([[1.5, 2.0]])).wait(), [[1.5, 2.0]])


def test_rows_read_tokens_and_states_from_the_one_result() -> None:
    logits = torch.zeros(3, 10)
    logits[0, 7], logits[1, 2], logits[2, 9] = 5.0, 4.0, 3.5
    logits[:, [4, 5, 6]] = torch.tensor([1.0, 2.0, 3.0])
    packed = choose(logits, [None] * 3, [None] * 3, [4, 5, 6])
    tokens, probs = rows(Staging(torch.device("cpu")).download(packed).wait())
    assert tokens == [7, 2, 9] and all(isinstance(t, int) for t in tokens)
    expected = torch.tensor([1.0, 2.0, 3.0]).softmax(-1).tolist()
    assert probs.shape == (3, 3) and probs[1].tolist() == pytest.approx(expected)
    assert all(isinstance(p, float) for p in probs[2].tolist())  # what a StateDecided event carries


@cuda
@pytest.mark.gpu
def test_pinned_copies_round_trip_and_a_buffer_waits_for_its_copy() -> None:
    staging = Staging(torch.device("cuda"))
    for n in (5, 300, 7):  # the rings grow and are reused in turn
        a = np.arange(n, dtype=np.int64) * 3
        up = staging.upload(a)
        assert up.is_cuda and up.cpu().numpy().tolist() == a.tolist()
        t = torch.randn(n, 4, device="cuda")
        assert np.array_equal(staging.download(t).wait(), t.cpu().numpy())
    ring = PinnedRing(torch.int64, depth=2)
    first = ring.take(10)
    assert first.is_pinned()
    ring.mark()
    ring.take(10)
    again = ring.take(10)  # the first buffer once more, after its event
    assert again.data_ptr() == first.data_ptr()
