"""Prometheus metrics of one server (its own registry, so several servers can live in one process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_LATENCY = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.sessions = Gauge("duo_sessions", "open realtime sessions", registry=r)
        self.sessions_total = Counter("duo_sessions_opened", "sessions opened", registry=r)
        self.sessions_refused = Counter("duo_sessions_refused", "connections refused (limit or auth)",
                                        ["reason"], registry=r)
        self.ticks = Counter("duo_ticks", "engine ticks", registry=r)
        self.forward_passes = Counter("duo_forward_passes", "model forward passes", registry=r)
        self.eager_passes = Counter("duo_eager_forward_passes", "forward passes on CUDA that no captured graph "
                                    "covered (launched kernel by kernel: slow ticks)", registry=r)
        self.graph_captures = Counter("duo_graph_captures", "CUDA graphs captured while serving (each stalls "
                                      "every session; warm-up captures them all before ready)", registry=r)
        self.tick_seconds = Histogram("duo_tick_seconds", "engine tick duration", registry=r,
                                      buckets=(0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1, 2, 3,
                                               5, 10, 20, 30))
        self.batch_sessions = Histogram("duo_batch_sessions", "sessions in one tick", registry=r,
                                        buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256))
        self.batch_tokens = Histogram("duo_batch_tokens", "tokens in one forward", registry=r,
                                      buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024))
        self.states = Counter("duo_state_decisions", "input state decisions", ["state"], registry=r)
        self.incomplete_timeouts = Counter("duo_incomplete_timeouts", "unfinished-sounding utterances answered "
                                           "after the silence timeout", registry=r)
        self.reply_latency = Histogram("duo_reply_latency_seconds", "end of user speech to first reply token",
                                       registry=r, buckets=_LATENCY)
        self.tts_first_audio = Histogram("duo_tts_first_audio_seconds", "a reply's first text delta to its first "
                                         "audio chunk sent (speech output's share of the reply latency)",
                                         registry=r, buckets=(0.01, 0.02, 0.05, *_LATENCY[1:]))
        self.barge_in_latency = Histogram("duo_barge_in_latency_seconds",
                                          "start of interrupting speech to reply stopped", registry=r,
                                          buckets=_LATENCY)
        self.first_audio = Histogram("duo_first_audio_seconds", "end of user speech to the reply's first audio",
                                     registry=r, buckets=_LATENCY)
        self.interruption_silence = Histogram("duo_interruption_silence_seconds", "end of interrupting speech "
                                              "to the reply silenced (0 when silenced before it ended)",
                                              registry=r, buckets=_LATENCY)
        self.duck_latency = Histogram("duo_duck_latency_seconds", "onset of speech over a reply to the duck "
                                      "event sent", registry=r, buckets=(0.025, *_LATENCY))
        self.early_closes = Counter("duo_early_closes", "utterances closed after the short pause", registry=r)
        self.early_closes_resumed = Counter("duo_early_closes_resumed", "early closes the speaker went on from "
                                            "within the confirmation window (their reply withdrawn)", registry=r)
        self.withdrawn_replies = Counter("duo_withdrawn_replies", "replies started before the turn was confirmed "
                                         "and taken back unheard", registry=r)
        self.discarded_tokens = Counter("duo_speculative_tokens_discarded", "reply tokens generated and thrown "
                                        "away by withdrawn replies", registry=r)
        self.errors = Counter("duo_errors", "error events sent", ["code"], registry=r)
        self.kv_blocks = Gauge("duo_kv_blocks", "KV cache blocks of the engine's pool", ["state"], registry=r)
        self.recognition_seconds = Histogram("duo_recognition_seconds", "a slice of speech queued to recognized",
                                             registry=r, buckets=(*_LATENCY, 20.0, 30.0))
        self.overloaded = Gauge("duo_overloaded", "1 while ticks or recognition fall behind", registry=r)
        self.cpu_threads = Gauge("duo_cpu_threads", "torch's CPU threads, as set at start (the VAD's thread takes it)",
                                 registry=r)
        self.connections_dropped = Counter("duo_connections_dropped", "connections the server closed on a limit "
                                           "(header_timeout, evicted, connection_limit, write_timeout, "
                                           "close_blocked, close_timeout, keepalive_timeout, queue_full, "
                                           "invalid_utf8)", ["reason"], registry=r)
        self.accept_errors = Counter("duo_accept_errors", "accept() failures (out of file descriptors)",
                                     registry=r)

    def on_tick(self, seconds: float, forward_passes: int, sessions: int, tokens: int, eager: int = 0,
                captures: int = 0) -> None:
        self.ticks.inc()
        self.forward_passes.inc(forward_passes)
        self.eager_passes.inc(eager)
        self.graph_captures.inc(captures)
        self.tick_seconds.observe(seconds)
        self.batch_sessions.observe(sessions)
        self.batch_tokens.observe(tokens)

    def render(self) -> bytes:
        return generate_latest(self.registry)
