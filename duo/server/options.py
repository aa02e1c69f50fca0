"""A session's settings as the client configured them, and what they mean for the engine."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from duo.audio.decode import WIRE_RATE
from duo.engine import SamplingParams, SessionConfig, Thresholds

from . import protocol as p

# wire format: GA type -> beta name, and each one's rate
BETA_FORMATS = {"audio/pcm": "pcm16", "audio/pcmu": "g711_ulaw", "audio/pcma": "g711_alaw"}
GA_FORMATS = {beta: ga for ga, beta in BETA_FORMATS.items()}
G711_RATE = 8000


@dataclass(frozen=True)
class WireFormat:
    """How audio travels on one direction of the socket: `audio/pcm` (PCM16) or G.711 at 8 kHz."""

    type: str = "audio/pcm"
    rate: int = WIRE_RATE

    @classmethod
    def of(cls, fmt: p.AudioFormat | None, beta: str | None, current: WireFormat) -> WireFormat:
        if beta is not None:
            fmt = p.AudioFormat(type=GA_FORMATS[beta])  # type: ignore[arg-type]
        if fmt is None:
            return current
        if fmt.type != "audio/pcm":
            return cls(fmt.type, G711_RATE)
        return cls(fmt.type, fmt.rate or WIRE_RATE)

    @property
    def codec(self) -> str:
        """`pcm16`, or the G.711 codec (`pcmu`, `pcma`)."""
        return "pcm16" if self.type == "audio/pcm" else self.type.split("/")[1]

    def reported(self, beta: bool) -> Any:
        if beta:
            return BETA_FORMATS[self.type]
        return {"type": self.type, "rate": self.rate} if self.type == "audio/pcm" else {"type": self.type}


@dataclass
class SessionOptions:
    """The session as the client configured it (the `session` object of session.created / .updated)."""

    instructions: str | None = None
    output_modalities: list[str] = field(default_factory=lambda: ["text"])
    input_format: WireFormat = field(default_factory=WireFormat)
    output_format: WireFormat = field(default_factory=WireFormat)
    turn_detection: p.DuoTurnDetection | p.ServerVadTurnDetection | None = field(default_factory=p.DuoTurnDetection)
    voice: str = "default"
    temperature: float = 0.0
    top_p: float = 1.0
    max_output_tokens: int = 256

    @property
    def input_rate(self) -> int:
        return self.input_format.rate

    @property
    def duo(self) -> p.DuoTurnDetection | None:
        """DUO's detector, when it judges this session's input."""
        return self.turn_detection if isinstance(self.turn_detection, p.DuoTurnDetection) else None

    @property
    def duo_events(self) -> bool:
        """Whether the client asked for DUO's own `duo.*` events."""
        return self.duo is not None and self.duo.params.events

    @property
    def slicing_ms(self) -> tuple[int, int]:
        """(slice length, pause that ends speech): the turn detector's, or the server_vad defaults without one."""
        return (self.turn_detection or p.ServerVadTurnDetection()).slicing_ms

    def engine_config(self, instructions: str | None = None) -> SessionConfig:
        params = (self.duo or p.DuoTurnDetection()).params
        return SessionConfig(
            instructions=self.instructions if instructions is None else instructions,
            forecast_tokens=params.forecast_tokens,
            thresholds=Thresholds(process=params.process_threshold, ignore=params.ignore_threshold),
            process_waits_for_pause=not params.act_before_pause,
            speculate=params.speculate and self.duo is not None,
            sampling=SamplingParams(temperature=self.temperature, top_p=self.top_p,
                                    max_new_tokens=self.max_output_tokens),
        )

    def apply(self, patch: p.SessionPatch) -> None:
        fields = patch.model_fields_set
        if "instructions" in fields:
            self.instructions = patch.instructions
        if modalities := patch.output_modalities or patch.modalities:
            self.output_modalities = list(modalities)
        audio_in = patch.audio.input if patch.audio else None
        audio_out = patch.audio.output if patch.audio else None
        self.input_format = WireFormat.of(audio_in.format if audio_in else None, patch.input_audio_format,
                                          self.input_format)
        self.output_format = WireFormat.of(audio_out.format if audio_out else None, patch.output_audio_format,
                                           self.output_format)
        if audio_in is not None and "turn_detection" in audio_in.model_fields_set:
            self.turn_detection = audio_in.turn_detection
        elif "turn_detection" in fields:
            self.turn_detection = patch.turn_detection
        if voice := patch.voice or (audio_out.voice if audio_out else None):
            self.voice = voice
        if patch.temperature is not None:
            self.temperature = patch.temperature
        if patch.top_p is not None:
            self.top_p = patch.top_p
        limit = patch.max_output_tokens if "max_output_tokens" in fields else patch.max_response_output_tokens
        if limit is not None:
            self.max_output_tokens = output_tokens(limit)

    def describe(self, sid: str, beta: bool = False) -> dict[str, Any]:
        """The `session` object: GA shape, or the beta one (flat audio settings, `modalities`)."""
        td = self.turn_detection.reported() if self.turn_detection is not None else None
        common = {"id": sid, "object": "realtime.session", "model": "duo", "instructions": self.instructions}
        if beta:
            return {**common, "modalities": self.output_modalities, "voice": self.voice,
                    "input_audio_format": self.input_format.reported(True),
                    "output_audio_format": self.output_format.reported(True),
                    "input_audio_transcription": {"model": "duo"}, "turn_detection": td,
                    "temperature": self.temperature, "max_response_output_tokens": self.max_output_tokens}
        return {**common, "type": "realtime", "output_modalities": self.output_modalities,
                "temperature": self.temperature, "max_output_tokens": self.max_output_tokens,
                "audio": {"input": {"format": self.input_format.reported(False), "turn_detection": td,
                                    "transcription": {"model": "duo"}},
                          "output": {"format": self.output_format.reported(False), "voice": self.voice}}}


def output_tokens(limit: int | str) -> int:
    """A `max_output_tokens` value as the engine's limit (`inf`: 1024; at most 4096)."""
    return 1024 if limit == "inf" else max(1, min(int(limit), 4096))
