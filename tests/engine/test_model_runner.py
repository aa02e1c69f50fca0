"""The tick layout: padded plans (what a CUDA graph replays) equal exact ones; graphs equal eager on a GPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from duo.engine.config import EngineConfig, SamplingParams, SessionConfig
from duo.engine.cuda_graphs import TOKENS, bucket
from duo.engine.kv_cache import KVCache
from duo.engine.llm_engine import Engine
from duo.engine.model_runner import ModelRunner
from duo.engine.plan import TickShape, exact_shape, plan_tick, whole
from duo.engine.sequence import Sequence

from .helpers import full_tokens, reference_logits, rel_err, run_until_idle

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _runner(backbone, device: str = "cpu", graphs: bool = False) -> ModelRunner:
    model = backbone.model.to(device)
    kv = KVCache.for_model(model, block_size=16, num_blocks=64, max_blocks=64)
    return ModelRunner(model, kv, cuda_graphs=graphs)


def _tree(runner: ModelRunner) -> list[Sequence]:
    """A tick of every kind of row: decode rows on a trunk and on a channel forked mid-block, prefills."""
    rng = np.random.default_rng(0)
    tok = lambda n: rng.integers(10, 400, n).tolist()  # noqa: E731
    root = Sequence(runner.kv, tok(21))
    runner.run(whole([root]))
    output = Sequence(runner.kv, tok(6), parent=root)
    runner.run(whole([output]))
    output.append(tok(1))  # the reply's next token
    forecast = Sequence(runner.kv, tok(5), parent=output, parent_len=3)  # forked before the newest tokens
    runner.run(whole([forecast]))
    forecast.append(tok(1))
    fresh = Sequence(runner.kv, tok(9), parent=root)  # a slice prefill
    other = Sequence(runner.kv, tok(17))  # another session joining
    return [forecast, fresh, output, other]


def _padded_logits(runner: ModelRunner, seqs: list[Sequence], shape: TickShape) -> torch.Tensor:
    with torch.inference_mode():
        plan = plan_tick(whole(seqs), shape)
        ids, positions, batch = runner.tensors(plan)
        logits = runner.forward(ids, positions, batch, torch.from_numpy(plan.row_last).to(runner.device))
        return logits[torch.from_numpy(plan.rows).to(runner.device)].float()


def test_a_padded_plan_gives_the_exact_plans_logits(tiny) -> None:
    runner = _runner(tiny)
    seqs = _tree(runner)
    shape = exact_shape(whole(seqs))
    assert shape == TickShape(decode=2, prefill=2, width=17, keys=30)
    padded = _padded_logits(runner, seqs, TickShape(decode=8, prefill=4, width=32, keys=256))
    exact = runner.run(whole(seqs))
    assert torch.isfinite(padded).all()
    assert rel_err(padded, exact) < 1e-5
    for seq, row in zip(seqs, exact, strict=True):
        assert rel_err(row, reference_logits(tiny.model, full_tokens(seq))[-1]) < 1e-4


def test_padding_never_touches_a_sequences_slots(tiny) -> None:
    runner = _runner(tiny)
    seqs = _tree(runner)
    plan = plan_tick(whole(seqs), TickShape(decode=8, prefill=4, width=32, keys=256))
    real = sum(len(s.pending) for s in seqs)
    assert (plan.write_slots != KVCache.SCRATCH).sum() == real
    assert KVCache.SCRATCH not in {b for s in seqs for b in s.blocks}  # block 0 is never handed out


@pytest.mark.parametrize(("exact", "padded"), [
    (TickShape(3, 0, 0, 40), TickShape(4, 0, 0, 256)),
    (TickShape(128, 3, 20, 700), TickShape(128, 4, 32, 1024)),
    (TickShape(0, 1, 40, 100), TickShape(0, 4, 64, 256)),
    (TickShape(129, 0, 0, 257), TickShape(144, 0, 0, 512)),
])
def test_bucket_is_the_smallest_shape_that_holds_the_tick(exact: TickShape, padded: TickShape) -> None:
    assert bucket(exact) == padded


@pytest.mark.parametrize(("tokens", "padded"), [(1, 4), (40, 48), (262 + 38, 304), (1155, 1184), (4000, 4096)])
def test_a_packed_tick_pads_its_tokens_alone(tokens: int, padded: int) -> None:
    """In place every token is a row: replies, forecasts and slices share one count, padded once."""
    assert bucket(TickShape(tokens, 0, 0, 0), TOKENS) == TickShape(padded, 0, 0, 0)
    assert bucket(TickShape(4097, 0, 0, 0), TOKENS) is None


@pytest.mark.parametrize("shape", [TickShape(3000, 0, 0, 10), TickShape(1, 1, 500, 600), TickShape(1, 0, 0, 9000)])
def test_shapes_beyond_every_bucket_run_eagerly(shape: TickShape) -> None:
    assert bucket(shape) is None


@cuda
@pytest.mark.gpu
def test_graph_replay_equals_eager_on_the_gpu(tiny) -> None:
    eager, graphed = _runner(tiny, "cuda"), _runner(tiny, "cuda", graphs=True)
    a, b = _tree(eager), _tree(graphed)
    for _ in range(3):  # three ticks: a capture, then replays of refilled inputs
        la, lb = eager.run(whole(a)), graphed.run(whole(b))
        assert rel_err(lb, la) < 1e-4
        for seq in (*a, *b):
            seq.append([7])
    assert graphed.graphs is not None and graphed.graphs.graphs


@cuda
@pytest.mark.gpu
def test_engine_replies_the_same_with_and_without_graphs(tiny) -> None:
    texts = []
    tiny.model.to("cuda")
    for graphs in (False, True):
        engine = Engine(tiny, EngineConfig(cuda_graphs=graphs))
        sessions = [engine.open_session(SessionConfig(sampling=SamplingParams(max_new_tokens=12)))
                    for _ in range(3)]
        for i, s in enumerate(sessions):
            s.push_slice(f"question number {i} about the weather")
        events = run_until_idle(engine)
        texts.append([(type(e).__name__, getattr(e, "delta", None), getattr(e, "text", None),
                       getattr(e, "state", None)) for e in events])
    tiny.model.to("cpu")
    assert texts[0] == texts[1]
