"""A session's settings as the client configured them, and what they mean for the engine."""

from __future__ import annotations

from dataclasses import dataclass, field

from duo.audio.decode import WIRE_RATE
from duo.engine import SamplingParams, SessionConfig, Thresholds

from . import objects as ob
from . import protocol as p


@dataclass
class SessionOptions:
    """The session as the client configured it (the `session` object of session.created / .updated)."""

    instructions: str | None = None
    output_modalities: list[str] = field(default_factory=lambda: ["text"])
    input_rate: int = WIRE_RATE
    turn_detection: p.DuoTurnDetection | p.ServerVadTurnDetection | None = field(default_factory=p.DuoTurnDetection)
    voice: str = "default"
    temperature: float = 0.0
    top_p: float = 1.0
    max_output_tokens: int = 256

    @property
    def slicing_ms(self) -> tuple[int, int]:
        """(slice length, pause that ends speech): the turn detector's, or the server_vad defaults without one."""
        return (self.turn_detection or p.ServerVadTurnDetection()).slicing_ms

    def engine_config(self) -> SessionConfig:
        td = self.turn_detection if isinstance(self.turn_detection, p.DuoTurnDetection) else p.DuoTurnDetection()
        return SessionConfig(
            instructions=self.instructions, forecast_tokens=td.forecast_tokens,
            thresholds=Thresholds(process=td.process_threshold, ignore=td.ignore_threshold),
            process_waits_for_pause=not td.act_before_pause,
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
        if audio_in and audio_in.format:
            self.input_rate = audio_in.format.rate
        if patch.input_audio_format:
            self.input_rate = WIRE_RATE
        if audio_in is not None and "turn_detection" in audio_in.model_fields_set:
            self.turn_detection = audio_in.turn_detection
        elif "turn_detection" in fields:
            self.turn_detection = patch.turn_detection
        if voice := patch.voice or (patch.audio.output.voice if patch.audio and patch.audio.output else None):
            self.voice = voice
        if patch.temperature is not None:
            self.temperature = patch.temperature
        if patch.top_p is not None:
            self.top_p = patch.top_p
        limit = patch.max_output_tokens if "max_output_tokens" in fields else patch.max_response_output_tokens
        if limit is not None:
            self.max_output_tokens = 1024 if limit == "inf" else max(1, min(int(limit), 4096))

    def describe(self, sid: str) -> ob.SessionInfo:
        audio = ob.SessionAudio(
            input=ob.InputAudio(format=ob.AudioFormat(rate=self.input_rate), turn_detection=self.turn_detection),
            output=ob.OutputAudio(format=ob.AudioFormat(rate=WIRE_RATE), voice=self.voice))
        return ob.SessionInfo(id=sid, instructions=self.instructions, output_modalities=self.output_modalities,
                              temperature=self.temperature, max_output_tokens=self.max_output_tokens, audio=audio)
