"""Tensor parallel on the CPU: two gloo ranks give the single-device engine's logits and greedy tokens.

Rank 0 runs a conversation of forks, rollbacks, discards and promotes (a barge-in included) while rank 1
follows; the parent process runs the same conversation on one device and compares, and checks every row of
every tick against the channel run alone with stock attention.
"""

from __future__ import annotations

import dataclasses
import os
import socket
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from transformers import Qwen2Config

from duo.engine import events as ev
from duo.engine.config import EngineConfig, SamplingParams, SessionConfig, State
from duo.engine.follower import follow
from duo.engine.llm_engine import Engine
from duo.engine.loader import load_backbone
from duo.engine.parallel import TensorParallel
from duo.engine.plan import Chunk, Step, TickShape, pack, plan_tick, unpack, whole
from duo.engine.sequence import Sequence

from .helpers import full_tokens, reference_logits, rel_err, run_until_idle, scripted, tiny_qwen2

P, IG, N = State.PROCESS, State.IGNORE, State.INCOMPLETE
# A small first pool, so that rank 0's pool grows mid-conversation and the follower's must grow with it; a
# budget every tick's work fits, so the scripted conversation's steps line up as written.
CONFIG = EngineConfig(initial_blocks=8, max_blocks=1024, max_tick_tokens=4096)


def _conversation(engine: Engine) -> dict[str, Any]:
    """Three sessions through every transition; what each forward's rows saw and produced, and the events."""
    rows: list[tuple[list[int], torch.Tensor]] = []
    run = engine.runner.run

    def recording(chunks: list[Chunk], **kw: Any) -> torch.Tensor:
        seen = [full_tokens(c.seq)[: c.keys] for c in chunks]
        logits = run(chunks, **kw)
        rows.extend(zip(seen, logits.clone(), strict=True))
        return logits

    engine.runner.run = recording  # type: ignore[method-assign]
    cfg = lambda *s: SessionConfig(forecast_tokens=3, thresholds=scripted(*s),  # noqa: E731
                                   sampling=SamplingParams(max_new_tokens=10))
    a = engine.open_session(cfg(P, IG), session_id="a")  # answers, then discards a forecast beside its reply
    b = engine.open_session(cfg(N, P), session_id="b")  # rolls back an unfinished slice, then answers
    c = engine.open_session(cfg(P, P), session_id="c")  # answers, then is interrupted by a barge-in
    a.push_slice("what is the capital of france")
    b.push_slice("so what I wanted to ask is")
    c.push_slice("tell me a story")
    events = [engine.step()]
    while not (a.reply and c.reply and b.input and not b.input.judging):  # a and c reply, b's words were judged
        assert len(events) < 20
        events.append(engine.step())
    a.push_slice("did you feed the cat this morning")
    b.push_slice("where the trains go at night")
    c.push_slice("stop, tell me about the sea instead")
    events.append(run_until_idle(engine))
    engine.runner.run = run  # type: ignore[method-assign]
    flat = [e for tick in events for e in tick]
    # every position of a packed prefill (an eager step keeping all logits) on two new channels
    seqs = [Sequence(engine.kv, list(range(40, 61)), parent=engine.sessions["a"].last),
            Sequence(engine.kv, list(range(70, 75)))]
    seen = [full_tokens(s) for s in seqs]
    prefill = engine.runner.run(whole(seqs), all_logits=True)
    return {"events": [(type(e).__name__, e.session_id, getattr(e, "delta", None), getattr(e, "text", None),
                        getattr(e, "state", None)) for e in flat],
            "responses": sum(isinstance(e, ev.ResponseDone) for e in flat),
            "rows": rows, "prefill": (seen, prefill), "kv": _pool(engine)}


def _pool(engine: Engine) -> dict[str, int]:
    return {"num_blocks": engine.kv.num_blocks, "kv_heads": engine.kv.k[0].shape[1]}


def _rank(rank: int, port: int, path: str, out: str, config: EngineConfig) -> None:
    """One process of the group, as torchrun would start it."""
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    group = TensorParallel.join(2)
    backbone = load_backbone(path, adapter=None, device="cpu", parallel=group)
    if group.leader:
        result = _conversation(Engine(backbone, config))
    else:
        engine = follow(group, backbone)
        assert engine is not None
        result = {"kv": _pool(engine)}
    group.close()
    torch.save(result, Path(out) / f"rank{rank}.pt")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("overlap", [False, True], ids=["serial", "overlapped"])
def test_two_ranks_equal_one_device(tmp_path: Path, embedded_path: Path, overlap: bool) -> None:
    """Overlapped, rank 0 writes the fed tokens into the payload before broadcasting it: the others get them."""
    config = dataclasses.replace(CONFIG, overlap_ticks=overlap)
    path = tiny_qwen2(tmp_path / "tiny-qwen2", embedded_path)
    ctx = mp.start_processes(_rank, args=(_free_port(), str(path), str(tmp_path), config), nprocs=2, join=False,
                             start_method="spawn")
    for _ in range(60):  # a guard against a hang, not a timing assumption: the run takes seconds
        if ctx.join(timeout=5):
            break
    else:
        for p in ctx.processes:
            p.kill()
        pytest.fail("the tensor-parallel ranks did not finish")
    tp = torch.load(tmp_path / "rank0.pt", weights_only=False)
    follower = torch.load(tmp_path / "rank1.pt", weights_only=False)

    backbone = load_backbone(str(path), adapter=None, device="cpu")
    one = _conversation(Engine(backbone, config))
    assert tp["events"] == one["events"]  # the same greedy tokens, states and replies
    assert tp["responses"] >= 4 and any(e[0] == "ResponseDone" and e[1] == "c" for e in tp["events"])
    assert len(tp["rows"]) == len(one["rows"]) >= 40
    for (tokens, row), (same, single) in zip(tp["rows"], one["rows"], strict=True):
        assert tokens == same
        assert rel_err(row, single) < 1e-4
        if not overlap:  # overlapped, a fed row's token is not on the host when the row is recorded
            assert rel_err(row, reference_logits(backbone.model, tokens)[-1]) < 1e-4
    seen, logits = tp["prefill"]
    ref = torch.cat([reference_logits(backbone.model, tokens)[-n:] for tokens, n in zip(seen, (21, 5), strict=True)])
    assert rel_err(logits, ref) < 1e-4
    # each rank held one of the two kv heads, in pools that grew alike past the first 8 blocks
    assert tp["kv"] == follower["kv"] == {"num_blocks": one["kv"]["num_blocks"], "kv_heads": 1}
    assert one["kv"]["num_blocks"] > CONFIG.initial_blocks and one["kv"]["kv_heads"] == 2


def test_a_step_travels_as_a_header_and_one_flat_payload(tiny) -> None:
    engine = Engine(tiny)
    a, b = Sequence(engine.kv, list(range(10, 31))), Sequence(engine.kv, [5])
    plan = plan_tick(whole([a, b]), TickShape(decode=4, prefill=2, width=32, keys=256))
    keep = np.array([3, 7, 40])
    for step, flat in ((Step(True, plan.shape, 64), pack(plan)), (Step(False, plan.shape, 64, 3), pack(plan, keep))):
        assert Step.from_header(step.header()) == step and flat.size == step.size
        arrays = unpack(torch.from_numpy(flat), step)
        for name in plan.INPUTS:
            assert np.array_equal(arrays[name].numpy(), getattr(plan, name))
    assert np.array_equal(arrays["keep"].numpy(), keep)


def test_heads_must_split_evenly() -> None:
    group = TensorParallel(size=2, rank=0, device=torch.device("cpu"), control=None)
    group.check(Qwen2Config(num_attention_heads=4, num_key_value_heads=2, hidden_size=64))
    with pytest.raises(ValueError, match="do not split"):
        group.check(Qwen2Config(num_attention_heads=9, num_key_value_heads=3, hidden_size=576))


def test_joining_needs_torchrun(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    with pytest.raises(RuntimeError, match="torchrun"):
        TensorParallel.join(2)
