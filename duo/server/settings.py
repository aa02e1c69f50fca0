"""Server settings, from (lowest to highest) defaults, a config file, `DUO_*` environment and flags.

Every setting is documented here and listed by `duo serve --help`; `docs/protocol.md` covers the wire.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

LOOPBACK = {"127.0.0.1", "::1", "localhost"}
KEY_CHARS = re.compile(r"[A-Za-z0-9._~+/=-]+")


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # model
    model: str | None = Field(None, description="an embedded model's name, an HF causal-LM id or a path (default: "
                                                "qwen2.5-coder-1.5b on CUDA if installed, else smollm2-135m-instruct)")
    adapter: str = Field("auto", description="peft adapter folder; 'auto' = the shipped one, 'none' = bare model")
    device: str = Field("auto", description="auto, cpu, cuda, cuda:N")
    dtype: str = Field("auto", description="auto (bf16 on CUDA, fp32 on CPU), float32, bfloat16, float16")
    cpu_threads: int | None = Field(None, ge=1, le=1024,
                                    description="torch's CPU threads in this process; default: 1 when the model "
                                                "runs on a GPU (the CPU's torch work is then the VAD's 32 ms "
                                                "frames, which a pool of many threads slows down), torch's own "
                                                "on a CPU")
    instructions: str | None = Field(None, description="default system instructions of new sessions")
    tensor_parallel: int = Field(1, ge=1, description="GPUs of this host to split the model over (runs under "
                                                      "torchrun, one process per GPU; rank 0 serves)")
    # speech
    asr_model: str = Field("auto", description="speech recognition: auto (base on CUDA, where it costs little and "
                                               "hears far better; tiny.en on a CPU), tiny.en, base, or a Whisper "
                                               "id/path")
    partial_ms: int | None = Field(None, ge=0, le=5000,
                                   description="re-recognize the words being spoken this often (ms), so DUO judges "
                                               "them before the pause; 0: whole slices only; default: 300 on "
                                               "CUDA, 0 on a CPU (where recognition cannot afford it)")
    tts: str = Field("auto", description="speech output: auto (Piper if installed, else espeak-ng), piper, "
                                          "espeak-ng, none")
    tts_first_clause_words: int = Field(4, ge=0, le=100, description="a reply is spoken from its first clause "
                                        "(cut at a comma, semicolon, colon or dash) once it holds this many "
                                        "words, or before and/but/or... after twice as many; the rest sentence "
                                        "by sentence; 0: from the first whole sentence")
    tts_first_piece_words: int = Field(6, ge=0, le=100, description="a reply whose first clause has not ended by "
                                       "this many words is spoken from those words (its first render stays "
                                       "short however the reply opens); 0: never cut between words")
    tts_threads: int | None = Field(None, ge=0, le=1024, description="CPU threads of the Piper voice's ONNX "
                                    "Runtime pool, shared by every reply being rendered; fewer leave cores to "
                                    "recognition and the engine while replies are spoken; default: one a core, "
                                    "4 at most; 0: onnxruntime's own, one a core however many")
    tts_presynthesize: bool = Field(True, description="speak a reply held until the user's turn is confirmed "
                                    "while it waits (nothing is sent before the release), so its first audio "
                                    "goes out with its first text")
    # network
    host: str = Field("127.0.0.1", description="bind address; anything but loopback requires API keys")
    port: int = Field(8000, ge=0, le=65535)
    api_keys: list[str] = Field(default_factory=list, description="accepted bearer tokens (comma-separated)")
    api_keys_file: str | None = Field(None, description="file with one accepted token per line")
    allowed_origins: list[str] = Field(default_factory=list,
                                       description="browser origins allowed to connect ('*' for any)")
    allowed_hosts: list[str] = Field(default_factory=list,
                                     description="Host names served besides the loopback ones when no API keys "
                                                 "are set, e.g. the name a proxy presents ('*' for any)")
    max_login_failures: int = Field(10, ge=1, description="failed key checks per client address per minute; "
                                                          "further attempts are refused (HTTP 429) for that minute")
    openapi: bool = Field(False, description="serve /openapi.json (the HTTP routes' schema; no docs pages)")
    # limits
    max_sessions: int = Field(64, ge=1, description="concurrent sessions; the next gets close code 1013")
    max_frame_bytes: int = Field(1 << 20, ge=1024, description="largest client message accepted; a bigger frame "
                                                               "closes the connection (1009) from its header")
    max_connections: int = Field(0, ge=0, description="open connections (HTTP and WebSocket); at the cap a new one "
                                                      "evicts the oldest still waiting for its request, or is "
                                                      "refused; 0: from the open-file limit")
    header_timeout_s: float = Field(10, gt=0, description="a connection that has not sent its request headers "
                                                          "this long after opening (or after its last response) "
                                                          "is closed")
    keep_alive_s: float = Field(5, gt=0, description="an idle HTTP keep-alive connection is closed after this long")
    write_timeout_s: float = Field(10, gt=0, description="a client that accepts no data this long (its buffers "
                                                         "full) is disconnected")
    max_session_s: float = Field(3600, gt=0, description="a session is closed after this long")
    idle_timeout_s: float = Field(300, gt=0, description="a session that sends nothing this long is closed")
    audio_burst_s: float = Field(10.0, ge=0, description="audio a client may send ahead of real time")
    outbound_queue: int = Field(2048, ge=16, description="events queued for a client before it counts as stuck")
    overload_tick_s: float = Field(1.0, gt=0, description="the server counts as overloaded while engine ticks "
                                                          "take longer than this on average over 5 s (three "
                                                          "ticks or more, or ticks filling most of the 5 s)")
    overload_recognition_s: float = Field(4.0, gt=0, description="the server counts as overloaded while "
                                                                 "recognizing a slice of speech takes longer "
                                                                 "than this on average over 30 s")
    warmup: bool = Field(True, description="warm the engine up (on CUDA: capture its graphs) before /readyz says ready")

    @field_validator("api_keys", "allowed_origins", "allowed_hosts", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        return [v.strip() for v in value.split(",") if v.strip()] if isinstance(value, str) else value

    def keys(self) -> frozenset[str]:
        """The accepted keys: `api_keys` and the lines of `api_keys_file` (blank and `#` lines skipped)."""
        keys = set(self.api_keys)
        if self.api_keys_file:
            lines = Path(self.api_keys_file).read_text().splitlines()
            keys.update(key for line in lines if (key := line.strip()) and not key.startswith("#"))
        for key in keys:
            if not KEY_CHARS.fullmatch(key):  # a token the log masking recognizes whole
                raise ValueError(f"an API key may hold only letters, digits and -._~+/= (one of {len(keys)} "
                                 "does not)")
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
