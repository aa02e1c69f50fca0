"""Server settings, from (lowest to highest) defaults, a config file, `DUO_*` environment and flags.

Every setting is documented here and listed by `duo serve --help`; `docs/protocol.md` covers the wire.
"""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

LOOPBACK = {"127.0.0.1", "::1", "localhost"}


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # model
    model: str | None = Field(None, description="an embedded model's name, an HF causal-LM id or a path (default: "
                                                "qwen2.5-coder-1.5b on CUDA if installed, else smollm2-135m-instruct)")
    adapter: str = Field("auto", description="peft adapter folder; 'auto' = the shipped one, 'none' = bare model")
    device: str = Field("auto", description="auto, cpu, cuda, cuda:N")
    dtype: str = Field("auto", description="auto (bf16 on CUDA, fp32 on CPU), float32, bfloat16, float16")
    instructions: str | None = Field(None, description="default system instructions of new sessions")
    # speech
    asr_model: str = Field("tiny.en", description="speech recognition: tiny.en, base, or a Whisper id/path")
    tts: str = Field("auto", description="speech output: auto (Piper if installed, else espeak-ng), piper, "
                                          "espeak-ng, none")
    # network
    host: str = Field("127.0.0.1", description="bind address; anything but loopback requires API keys")
    port: int = Field(8000, ge=0, le=65535)
    api_keys: list[str] = Field(default_factory=list, description="accepted bearer tokens (comma-separated)")
    api_keys_file: str | None = Field(None, description="file with one accepted token per line")
    allowed_origins: list[str] = Field(default_factory=list,
                                       description="browser origins allowed to connect ('*' for any)")
    # limits
    max_sessions: int = Field(64, ge=1, description="concurrent sessions; the next gets close code 1013")
    max_frame_bytes: int = Field(1 << 20, ge=1024, description="largest client message accepted")
    max_session_s: float = Field(3600, gt=0, description="a session is closed after this long")
    idle_timeout_s: float = Field(300, gt=0, description="a session that sends nothing this long is closed")
    audio_burst_s: float = Field(10.0, ge=0, description="audio a client may send ahead of real time")
    outbound_queue: int = Field(2048, ge=16, description="events queued for a client before it counts as stuck")
    warmup: bool = Field(True, description="run one tick before /readyz answers ready")

    @field_validator("api_keys", "allowed_origins", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        return [v.strip() for v in value.split(",") if v.strip()] if isinstance(value, str) else value

    def keys(self) -> frozenset[str]:
        keys = set(self.api_keys)
        if self.api_keys_file:
            lines = Path(self.api_keys_file).read_text().splitlines()
            keys.update(line.strip() for line in lines if line.strip() and not line.startswith("#"))
        return frozenset(keys)

    @property
    def loopback(self) -> bool:
        return self.host in LOOPBACK


def load_settings(config_file: str | None = None, env: dict[str, str] | None = None,
                  **flags: Any) -> Settings:
    """Merge the sources; flags whose value is None were not given."""
    values: dict[str, Any] = {}
    if config_file:
        path = Path(config_file)
        text = path.read_text()
        values.update(tomllib.loads(text) if path.suffix == ".toml" else json.loads(text))
    env = os.environ if env is None else env
    for name in Settings.model_fields:
        if f"DUO_{name.upper()}" in env:
            values[name] = env[f"DUO_{name.upper()}"]
    values.update({k: v for k, v in flags.items() if v is not None})
    return Settings.model_validate(values)
