"""The `session.update` payload: audio formats, turn detection, sampling, and the beta spellings of each.

A field duo cannot honour is left out and named, not fatal: the rest of the update still applies.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from ..turn_detection import TurnDetection
from .wire import OutputTokens


class AudioFormat(BaseModel):
    """GA audio formats: PCM16 (24 kHz, or 16 kHz for duo) or G.711 μ-law / A-law (8 kHz)."""

    model_config = ConfigDict(extra="ignore")
    type: Literal["audio/pcm", "audio/pcmu", "audio/pcma"] = "audio/pcm"
    rate: Literal[8000, 16000, 24000] | None = None

    @model_validator(mode="after")
    def _rate_fits(self) -> AudioFormat:
        if self.type != "audio/pcm" and self.rate not in (None, 8000):
            raise ValueError(f"{self.type} is 8000 Hz")
        if self.type == "audio/pcm" and self.rate == 8000:
            raise ValueError("audio/pcm is 16000 or 24000 Hz")
        return self


BetaAudioFormat = Literal["pcm16", "g711_ulaw", "g711_alaw"]


class AudioInput(BaseModel):
    model_config = ConfigDict(extra="ignore")
    format: AudioFormat | None = None
    turn_detection: TurnDetection | None = Field(default=None)
    transcription: dict[str, Any] | None = None


class AudioOutput(BaseModel):
    model_config = ConfigDict(extra="ignore")
    format: AudioFormat | None = None
    voice: str | None = Field(None, max_length=64)


class AudioConfig(BaseModel):
    model_config = ConfigDict(extra="ignore")
    input: AudioInput | None = None
    output: AudioOutput | None = None


class SessionPatch(BaseModel):
    """A `session.update` payload: GA fields, and the beta ones (`modalities`, `input_audio_format`, ...).

    Fields duo has no use for (tools, tracing, noise reduction, ...) are ignored. A field whose value duo
    cannot honour is left out and named in `rejected`, so the rest of the update still applies.
    """

    model_config = ConfigDict(extra="ignore")
    type: Literal["realtime"] | None = None
    instructions: str | None = Field(None, max_length=20_000)
    output_modalities: list[Literal["text", "audio"]] | None = None
    modalities: list[Literal["text", "audio"]] | None = None  # beta
    audio: AudioConfig | None = None
    input_audio_format: BetaAudioFormat | None = None  # beta
    output_audio_format: BetaAudioFormat | None = None  # beta
    turn_detection: TurnDetection | None = Field(default=None)  # beta position
    voice: str | None = Field(None, max_length=64)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    max_output_tokens: OutputTokens | None = None
    max_response_output_tokens: OutputTokens | None = None  # beta
    _rejected: list[tuple[str, str]] = PrivateAttr(default_factory=list)

    @property
    def rejected(self) -> list[tuple[str, str]]:
        """(field path, why) of each field left out."""
        return self._rejected

    @model_validator(mode="wrap")
    @classmethod
    def _drop_what_fails(cls, data: Any, handler: Any) -> Any:
        """Validate; on failure leave out the innermost offending field, note it, and try again."""
        rejected: list[tuple[str, str]] = []
        for _ in range(64):
            try:
                patch = handler(data)
            except ValidationError as exc:
                if not isinstance(data, dict):
                    raise
                first = exc.errors()[0]
                data, where = _without(data, first["loc"])
                if where is None:
                    raise
                rejected.append((where, first["msg"]))
                continue
            patch._rejected = rejected
            return patch
        raise ValueError("too many invalid fields")


def _without(data: dict[str, Any], loc: tuple[Any, ...]) -> tuple[dict[str, Any], str | None]:
    """A copy of `data` without the deepest key of `loc` that it holds (union tags skipped), and its path."""
    path: list[str] = []
    node: Any = data
    for part in loc:
        if isinstance(node, dict) and part in node:
            path.append(str(part))
            node = node[part]
        elif not isinstance(node, dict):
            break
    if not path:
        return data, None
    copy: dict[str, Any] = dict(data)
    parent = copy
    for key in path[:-1]:
        parent[key] = dict(parent[key])
        parent = parent[key]
    del parent[path[-1]]
    return copy, ".".join(path)
