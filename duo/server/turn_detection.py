"""Turn detection as the client configures it: DUO's detector (`semantic_vad`, alias `duo`) or `server_vad`.

DUO judges what was said, so it is a semantic detector: clients written for OpenAI ask for it as
`semantic_vad`, and its `eagerness` picks DUO's pause and thresholds. DUO's own knobs travel in the
extension field `duo`; the session always reports the published type (`semantic_vad`) with every DUO
parameter resolved in `duo`, so strict clients parse it and duo-aware ones read it.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Eagerness = Literal["low", "medium", "high", "auto"]

# eagerness -> (pause_ms, process_threshold, incomplete_timeout_ms, act_before_pause); `auto` and `medium`
# are DUO's defaults. OpenAI caps the wait at 8 / 4 / 2 s for low / medium / high; DUO answers an utterance
# judged unfinished after that much silence.
EAGERNESS: dict[str, tuple[int, float, int, bool]] = {
    "low": (800, 0.7, 8000, False),
    "medium": (500, 0.5, 3000, False),
    "auto": (500, 0.5, 3000, False),
    "high": (300, 0.35, 2000, True),
}


class DuoParams(BaseModel):
    """DUO's own parameters (the `duo` extension field); what is left out follows `eagerness`."""

    model_config = ConfigDict(extra="forbid")
    slice_ms: int = Field(2000, ge=500, le=4000)
    pause_ms: int = Field(500, ge=100, le=3000)
    forecast_tokens: int = Field(4, ge=1, le=16)
    process_threshold: float = Field(0.5, ge=0, le=1)
    ignore_threshold: float = Field(0.5, ge=0, le=1)
    act_before_pause: bool = False
    # An utterance whose last slice is judged `incomplete` is answered after this much more silence (null:
    # wait for more speech however long it takes).
    incomplete_timeout_ms: int | None = Field(3000, ge=200, le=60000)
    # Send this session DUO's own `duo.*` events (raw voice activity, judgements). Strict clients refuse
    # events they do not know, so only the `duo` alias turns them on by default.
    events: bool = False
    # Speech whose newest judgement is `process` ends after this much silence instead of `pause_ms` (null:
    # always wait `pause_ms`). The reply it starts stays unheard until the turn is confirmed.
    early_pause_ms: int | None = Field(150, ge=50, le=3000)
    # Silence after an early close that confirms the turn and releases its reply; speech before then joins
    # the same turn and the reply is withdrawn unheard (null: `pause_ms`; capped at it).
    confirm_ms: int | None = Field(200, ge=50, le=3000)
    # Re-recognize the words being spoken this often (and once as each pause begins) so their judgement is
    # ready when the silence starts; 0: only whole slices; null: the server's `partial_ms`.
    partial_ms: int | None = Field(None, ge=0, le=5000)
    # Start the reply on a `process` before the pause (kept unheard until the turn is confirmed, discarded
    # if the user goes on).
    speculate: bool = True

    @property
    def early(self) -> int | None:
        """The short pause, never longer than the pause itself."""
        return None if self.early_pause_ms is None else min(self.early_pause_ms, self.pause_ms)

    @property
    def confirm(self) -> int:
        """The silence that confirms an early close: at most the pause itself, never shorter than the early one."""
        return max(min(self.confirm_ms, self.pause_ms) if self.confirm_ms is not None else self.pause_ms,
                   self.early or 0)


DUO_KEYS = frozenset(DuoParams.model_fields)


class DuoTurnDetection(BaseModel):
    """DUO's detector. The `duo` alias also takes DUO's parameters at top level (the original form)."""

    model_config = ConfigDict(extra="ignore")  # OpenAI fields DUO has no use for (e.g. `threshold`)
    type: Literal["semantic_vad", "duo"] = "semantic_vad"
    eagerness: Eagerness = "auto"
    create_response: bool = True
    interrupt_response: bool = True
    duo: DuoParams = Field(default_factory=DuoParams)

    @model_validator(mode="before")
    @classmethod
    def _resolve(cls, data: Any) -> Any:
        """Flat DUO keys join `duo`; what neither names comes from `eagerness`; `duo` implies its events."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        given = data.get("duo")
        own = dict(given) if isinstance(given, dict) else {}
        for key in DUO_KEYS & set(data):
            own.setdefault(key, data.pop(key))
        eager = data.get("eagerness") or "auto"
        if eager in EAGERNESS:
            pause, process, timeout, early = EAGERNESS[eager]
            defaults = {"pause_ms": pause, "process_threshold": process, "incomplete_timeout_ms": timeout,
                        "act_before_pause": early, "events": data.get("type") == "duo"}
            own = {**defaults, **own}
        data["duo"] = own if given is None or isinstance(given, dict) else given
        return data

    @property
    def params(self) -> DuoParams:
        return self.duo

    @property
    def slicing_ms(self) -> tuple[int, int]:
        """(slice length, pause that ends an utterance) for the slicer."""
        return self.duo.slice_ms, self.duo.pause_ms

    def reported(self) -> dict[str, Any]:
        """The published shape: `semantic_vad`, DUO's parameters resolved in `duo`."""
        return {"type": "semantic_vad", "eagerness": self.eagerness, "create_response": self.create_response,
                "interrupt_response": self.interrupt_response, "duo": self.duo.model_dump()}


class ServerVadTurnDetection(BaseModel):
    """The pause-based baseline without DUO: any speech stops a reply, every pause answers."""

    model_config = ConfigDict(extra="ignore")
    type: Literal["server_vad"] = "server_vad"
    silence_duration_ms: int = Field(500, ge=100, le=3000)
    threshold: float | None = Field(None, ge=0, le=1)
    prefix_padding_ms: int | None = None
    create_response: bool = True
    interrupt_response: bool = True

    @property
    def slicing_ms(self) -> tuple[int, int]:
        """DUO's slice length; the pause is this detector's silence."""
        return DuoParams.model_fields["slice_ms"].default, self.silence_duration_ms

    def reported(self) -> dict[str, Any]:
        return self.model_dump()


TurnDetection = Annotated[DuoTurnDetection | ServerVadTurnDetection, Field(discriminator="type")]
