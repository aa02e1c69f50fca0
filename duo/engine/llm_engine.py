"""The DUO engine: owns the sessions (`registry.py`) and runs ticks (schedule, one forward, postprocess).

A tick gathers every session's pending work — slice prefills, forecast tokens, each output channel's
next token, the close of a finished turn — and runs it as ONE forward pass, whatever the number of
sessions and channels, within the admission limits of `scheduler.py`. The time-division baseline (design
§2.7) serves output channels and input channels in two sequential passes instead. On CUDA a DUO tick is
launched before the previous one's tokens reach the host (`overlap.py`), so the host's work runs beside the
device's instead of between its forwards. The engine does no I/O:
callers push input into sessions and get events back from `step`; `loop.py` drives it from asyncio.

A tick that fails closes the sessions it carried, each with an error, and the engine goes on; a failure of
the device itself, or several failed ticks in a row, marks the engine unusable (`broken`, `health.py`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

from . import events as ev
from .channels import Need, Vocab
from .config import EngineConfig, Mode, SamplingParams, SessionConfig
from .cuda_graphs import PREFILL_ROWS, PREFILL_WIDTH
from .framing import turn_markers
from .fused import fuse
from .health import Health
from .kv_cache import KVCache
from .late_text import LateText
from .loader import Backbone
from .model_runner import ModelRunner
from .overlap import Launched, serves
from .plan import Chunk
from .registry import SessionRegistry
from .sampler import choose, rows
from .scheduler import admit
from .sequence import Sequence
from .session import Session

log = logging.getLogger(__name__)


@dataclass
class TickStats:
    forward_passes: int = 0
    tokens: int = 0
    sessions: int = 0
    eager: int = 0  # forward passes on CUDA that no graph covered
    captures: int = 0  # graphs captured inside the tick (none once warm)


class Engine:
    def __init__(self, backbone: Backbone, config: EngineConfig | None = None) -> None:
        self.backbone = backbone
        self.config = config or EngineConfig()
        group = backbone.parallel  # tensor parallel: this is rank 0's engine, or one a follower built like it
        if group is not None and group.leader:
            group.open_engine(self.config)
        cuda = backbone.device.type == "cuda"
        if (cuda if self.config.fused_layers is None else self.config.fused_layers) and group is None:
            fuse(backbone.model)  # sharded weights (tensor parallel) keep transformers' layers
        self.kv = KVCache.for_model(backbone.model, block_size=self.config.block_size,
                                    num_blocks=self.config.initial_blocks, max_blocks=self.config.max_blocks,
                                    memory_fraction=self.config.kv_memory_fraction, fixed=cuda,
                                    shards=group.size if group else 1, common=group.common_blocks if group else None)
        self.vocab = Vocab(
            tokenizer=backbone.tokenizer,
            prediction_id=backbone.prediction_id,
            state_ids=backbone.state_ids,
            stop_ids=backbone.stop_ids | turn_markers(backbone.tokenizer),
            max_context=min(self.config.max_context or backbone.max_context, backbone.max_context),
        )
        # graphs for every tick `max_sessions` can plan: a reply and an input channel each, the whole window
        self.runner = ModelRunner(backbone.model, self.kv, cuda_graphs=self.config.cuda_graphs,
                                  paged_attention=self.config.paged_attention, group=group,
                                  max_rows=2 * self.config.max_sessions, max_keys=self.vocab.max_context)
        self.tick_tokens = self.config.max_tick_tokens or (2048 if cuda else 32)
        # on the device: indexing with a host list would copy it there, and a blocking copy waits for the tick
        self._state_ids = torch.tensor(list(self.vocab.state_ids.values()), device=backbone.device)
        self.registry = SessionRegistry(backbone.tokenizer, self.vocab, self.kv,
                                        max_sessions=self.config.max_sessions,
                                        max_slice_tokens=self.config.max_slice_tokens)
        self.sessions = self.registry.live  # the sessions the ticks serve, by id
        self.ticks = 0
        self.last_tick = TickStats()
        self.text = LateText()  # the last tick's reply text, decoded while this tick's forward runs
        overlap = cuda if self.config.overlap_ticks is None else self.config.overlap_ticks
        self.overlap = overlap and self.config.mode is Mode.DUO
        self._in_flight: Launched | None = None  # overlapped: the tick launched last, its tokens not applied
        self.health = Health()

    @property
    def broken(self) -> str | None:
        """Why the engine can serve no one, once it cannot."""
        return self.health.broken

    @property
    def usable(self) -> bool:
        return self.health.broken is None

    @property
    def in_flight(self) -> bool:
        """A tick is launched whose tokens the sessions have not had yet (overlapped ticks)."""
        return self._in_flight is not None

    @property
    def forward_passes(self) -> int:
        return self.runner.forward_passes

    def open_session(self, config: SessionConfig | None = None,
                     history: list[dict[str, str]] | None = None, session_id: str | None = None) -> Session:
        """A new session under `session_id` (the caller's, so both log one id); it joins at the next tick.

        Raises ValueError on bad config or history, RuntimeError when the engine cannot take it.
        """
        if self.broken is not None:
            raise RuntimeError(f"the engine is unusable: {self.broken}")
        return self.registry.open(config or SessionConfig(), history, session_id)

    def replace_session(self, session_id: str, config: SessionConfig,
                        history: list[dict[str, str]] | None = None) -> Session:
        """The session under new settings: a new one continues the conversation as the model holds it (or
        `history`, when the caller rewrites it).

        Call between ticks. A running reply ends (no event: the caller knows); settings that fail leave
        the old session as it was (ValueError).
        """
        return self.registry.replace(session_id, config, history)

    def warmup(self) -> None:
        """Run one short turn through every stage of a tick (prefill, forecast, reply), so the first client
        pays no first-run cost; on CUDA, then capture the graph of every tick shape `max_sessions` sessions
        can produce (admission keeps every tick inside them), so no live tick stalls on a capture."""
        config = SessionConfig(sampling=SamplingParams(max_new_tokens=4))
        session = self.open_session(config, session_id="warmup")
        session.push_slice("hello")
        session.respond()
        for _ in range(64):
            if not self.has_work():
                break
            self.step()
        self.close_session(session.id)
        self.step()
        captured = self.runner.warmup()  # then every other shape the graphs cover
        if self.runner.graphs is not None:
            log.info("event=cuda_graphs_ready captured=%d graphs=%d", captured, len(self.runner.graphs.graphs))

    def close_session(self, session_id: str) -> None:
        """The session leaves at the next tick and its KV returns to the pool."""
        self.registry.leave(session_id)

    def has_work(self) -> bool:
        return (self.registry.changing or bool(self.text) or self._in_flight is not None
                or any(s.has_work() for s in self.sessions.values()))

    def step(self) -> list[ev.Event]:
        """One tick. Returns the events it produced, in order, after what it handed to `text.emit`: the text
        of the previous tick's reply tokens, decoded while this tick's forward runs (`late_text.py`)."""
        passes = self.forward_passes
        events = self._tick()
        if self.forward_passes == passes:  # a tick that ran nothing overlapped nothing: the text goes now
            self.text.decode(self.sessions)
        return self.text.take() + events

    def drain_text(self, session_id: str) -> list[ev.Event]:
        """The text of the session's reply tokens not decoded yet (between ticks: before it is replaced)."""
        session = self.registry.find(session_id)
        return [] if session is None else session.drain_text()

    def _tick(self) -> list[ev.Event]:
        self.last_tick = TickStats()
        events, left = self.registry.turnover()
        while left and self.kv.shrink():  # sessions left: a pool grown for a crowd gives its memory back
            pass

        work: list[tuple[Session, Sequence, Need]] = []
        for session in list(self.sessions.values()):
            try:
                if session.inbox:
                    events += session.apply_inbox()
                work += [(session, seq, need) for seq, need in session.work()]
            except Exception as exc:  # one session's failure never stops the others
                events += self.registry.fail(session, exc)
        before, self._in_flight = self._in_flight, None  # overlapped: the tick still running, if any
        fed = before.resolve(self.sessions) if before is not None else []
        if not work and not fed:
            return events + (self._overlapped([], before) if before is not None else [])

        graphs = self.runner.graphs is not None  # prefills are cut to what a graph holds
        admitted = admit(work, budget=self.tick_tokens, kv=self.kv, rows=PREFILL_ROWS if graphs else None,
                         width=PREFILL_WIDTH if graphs else None, fed=fed)
        for session in admitted.refused:
            log.warning("session=%s event=kv_full free_blocks=%d", session.id, self.kv.num_free)
            events += self.registry.evict(session, "kv_full", "the server has no memory left for this conversation")
        run = admitted.run
        if self.config.mode is Mode.DUO:
            groups = [run]
        else:
            groups = [[w for w in run if w[2] is not Need.FORECAST], [w for w in run if w[2] is Need.FORECAST]]
        stats = TickStats(self.forward_passes, sum(chunk.n for _, chunk, _ in run), len({s.id for s, _, _ in run}))
        eager, captures = self.runner.eager_ticks, self.runner.captures
        if self.overlap:
            events += self._overlapped(run, before)
        else:
            for group in filter(None, groups):
                events += self._run(group)
        stats.forward_passes = self.forward_passes - stats.forward_passes
        stats.eager, stats.captures = self.runner.eager_ticks - eager, self.runner.captures - captures
        self.ticks += 1
        self.last_tick = stats
        return events

    def abort(self, exc: BaseException) -> list[ev.Event]:
        """A tick failed outside any one session's code: every session ends with an error, the engine goes on
        (empty, hence consistent) unless failures keep coming."""
        events = self._fail_all([*self.sessions.values(), *self.registry.joining], exc)
        self.registry.joining.clear()
        self._in_flight = None
        return events

    def _launch(self, group: list[tuple[Session, Chunk, Need]], feed: torch.Tensor | None = None) -> Launched:
        """Queue the forward of `group` and the choice of its tokens, and start their copy to the host."""
        logits = self.runner.run([chunk for _, chunk, _ in group], fp32=False, feed=feed)
        params = [s.config.sampling if need is Need.OUTPUT else None for s, _, need in group]
        gens = [s.generator if need is Need.OUTPUT else None for s, _, need in group]
        chosen = choose(logits, params, gens, self._state_ids, self.runner.staging.upload)
        return Launched.of(group, chosen, self.runner.download(chosen))

    def _run(self, group: list[tuple[Session, Chunk, Need]]) -> list[ev.Event]:
        """A serial tick: launch, then wait for its tokens and apply them."""
        try:
            launched = self._launch(group)
            self.text.decode(self.sessions)  # the last tick's text, while this tick runs on the device
            tokens, probs = rows(launched.result.wait())  # on CUDA the host waits here, and only here
        except Exception as exc:  # the forward failed: the sessions it carried end, the others go on
            return self._tick_failed(group, exc)
        self.health.ok()
        return self._advance(launched, tokens, probs)

    def _overlapped(self, group: list[tuple[Session, Chunk, Need]], before: Launched | None) -> list[ev.Event]:
        """An overlapped tick: launch `group` (its fed chunks read `before`'s tokens on the device), then wait
        for `before` and apply its tokens while `group` runs; `group` is then made exact and left in flight."""
        events: list[ev.Event] = []
        launched = None
        if group:
            try:
                launched = self._launch(group, None if before is None else before.chosen[:, 0])
            except Exception as exc:
                events += self._tick_failed(group, exc)
        self.text.decode(self.sessions)
        if before is not None:
            try:
                tokens, probs = rows(before.result.wait())  # the host waits for the device here, a tick late
            except Exception as exc:  # the tick in flight failed, and with it the one that read its tokens
                return events + self._tick_failed(before.group + (launched.group if launched else []), exc)
            if launched is not None or not group:
                self.health.ok()
            events += self._advance(before, tokens, probs)
            if launched is not None:
                launched.fed_by(tokens)
        if launched is not None:
            launched.settle(self.sessions)
            self._in_flight = launched
        return events

    def _advance(self, launched: Launched, tokens: list[int], probs: np.ndarray) -> list[ev.Event]:
        """Hand each row's token to its session, where the row still applies."""
        events = []
        for i, (row, token) in enumerate(zip(launched.rows, tokens, strict=True)):
            session, need = row.session, row.need
            if (self.sessions.get(session.id) is not session or (launched.use and not launched.use[i])
                    or not serves(session, row)):
                continue
            try:  # only a forecast reads the states: the others skip building the list
                events += session.advance(need, token, probs[i].tolist() if need is Need.FORECAST else [])
            except Exception as exc:
                events += self.registry.fail(session, exc)
            if need is Need.OUTPUT and session.reply is not None:
                self.text.queued(session)
        return events

    def _tick_failed(self, group: list[tuple[Session, Chunk, Need]], exc: Exception) -> list[ev.Event]:
        """A forward failed: the sessions it carried end, the others go on."""
        log.exception("event=tick_failed sessions=%d", len({s.id for s, _, _ in group}))
        return self._fail_all(list({s.id: s for s, _, _ in group}.values()), exc)

    def _fail_all(self, sessions: list[Session], exc: BaseException) -> list[ev.Event]:
        """A failure of the engine, not of one session: count it, and end every session it hit."""
        self.health.failed(exc)
        message = f"the engine failed: {type(exc).__name__}: {exc}"
        return [e for session in sessions for e in self.registry.evict(session, "internal_error", message)]
