"""Scenarios: what a user (and the room) says to duo, and what duo should do about it.

A scenario file is JSON lines, one scenario per line. A scenario is a timeline of items played one after the
other, and one expectation:

- `{"say": TEXT, "voice": "espeak-ng:en-us" | "flite:slt" | "piper:joe", "role": ROLE}` — synthesized speech;
- `{"play": "PACKAGE:path/in/package.wav" | "alsa:Front_Center.wav", "start": s, "end": s, "role": ROLE}` — a
  real recording, cut to `start`..`end` seconds;
- either sound may carry `"gain_db"` and `"over": [layer, ...]`, layers (a `say` or `play` with their own
  `gain_db`) mixed under it for its length — a query over a noisy room, or over people talking;
- `{"silence": s}` — nobody speaks; `{"silence": s, "role": "pause"}` — the speaker pauses inside a query;
- `{"wait_for": "reply", "delay": s, "max_s": s}` — silence until duo's reply is heard, then `delay` more: the
  items after it happen while duo speaks, whatever its latency.

Roles: `query` (speech addressed to the assistant), `interrupt` (a query spoken over its reply), `background`
(speech not meant for it). Expectations: `respond`, `no_response`, `wait`, `interrupt`, `no_interrupt`
(see `docs/evaluation.md`). The shipped file stores only this: audio is rendered when the scenario runs.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

EXPECTATIONS = ("respond", "no_response", "wait", "interrupt", "no_interrupt")
Expectation = Literal["respond", "no_response", "wait", "interrupt", "no_interrupt"]
SYNTHESIZERS = ("espeak-ng", "flite", "piper")
_ID = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,79}$")
MAX_FIXED_S = 120.0


class ScenarioError(ValueError):
    """A scenario file or scenario that cannot be used; the message says where and why."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Say(_Strict):
    say: str = Field(min_length=1, max_length=1000)
    voice: str = "espeak-ng:en-us"
    gain_db: float = Field(0.0, ge=-60, le=20)

    @field_validator("voice")
    @classmethod
    def _voice(cls, v: str) -> str:
        engine, _, name = v.partition(":")
        if engine not in SYNTHESIZERS or not name:
            raise ValueError(f"voice must be ENGINE:NAME with ENGINE one of {', '.join(SYNTHESIZERS)}, got {v!r}")
        return v


class Play(_Strict):
    play: str
    start: float = Field(0.0, ge=0)
    end: float | None = Field(None, gt=0)
    gain_db: float = Field(0.0, ge=-60, le=20)

    @field_validator("play")
    @classmethod
    def _ref(cls, v: str) -> str:
        pkg, _, path = v.partition(":")
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", pkg) or not path or ".." in Path(path).parts or \
                path.startswith("/"):
            raise ValueError(f"play must be PACKAGE:relative/path (or alsa:NAME.wav), got {v!r}")
        return v

    @model_validator(mode="after")
    def _span(self) -> Play:
        if self.end is not None and self.end <= self.start:
            raise ValueError(f"end ({self.end}) must come after start ({self.start})")
        return self


Layer = Say | Play


class SaySound(Say):
    role: Literal["query", "interrupt", "background"]
    over: list[Layer] = Field(default_factory=list, max_length=4)


class PlaySound(Play):
    role: Literal["query", "interrupt", "background"]
    over: list[Layer] = Field(default_factory=list, max_length=4)


class Silence(_Strict):
    silence: float = Field(gt=0, le=30)
    role: Literal["gap", "pause"] = "gap"


class WaitFor(_Strict):
    wait_for: Literal["reply"]
    delay: float = Field(0.5, ge=0, le=10)
    max_s: float = Field(20.0, gt=0, le=60)


Sound = SaySound | PlaySound
Item = Sound | Silence | WaitFor


def parse_item(data: Any) -> Item:
    """Pick the item's kind from its keys, so a mistake is reported against that kind only."""
    if not isinstance(data, dict):
        raise ValueError("an item is an object")
    for key, kind in (("say", SaySound), ("play", PlaySound), ("silence", Silence), ("wait_for", WaitFor)):
        if key in data:
            return kind.model_validate(data)
    raise ValueError("an item needs one of 'say', 'play', 'silence', 'wait_for'")


def parse_layer(data: Any) -> Layer:
    if isinstance(data, dict) and "say" in data:
        return Say.model_validate(data)
    if isinstance(data, dict) and "play" in data:
        return Play.model_validate(data)
    raise ValueError("a layer is a 'say' or a 'play'")


class Scenario(_Strict):
    id: str
    expect: Expectation
    timeline: list[Annotated[Item, Field()]] = Field(min_length=1, max_length=64)
    description: str = ""
    tags: list[str] = Field(default_factory=list)
    within_s: float = Field(5.0, gt=0, le=60, description="a reply must start this soon after the query ends")
    max_output_tokens: int = Field(24, ge=1, le=512)

    @field_validator("id")
    @classmethod
    def _id(cls, v: str) -> str:
        if not _ID.match(v):
            raise ValueError(f"id must be lower-case letters, digits, '-', '_' or '.', got {v!r}")
        return v

    @field_validator("timeline", mode="before")
    @classmethod
    def _items(cls, v: Any) -> Any:
        if not isinstance(v, list):
            return v
        items = []
        for i, raw in enumerate(v):
            try:
                if isinstance(raw, dict) and "over" in raw:
                    raw = {**raw, "over": [parse_layer(layer) for layer in raw["over"]]}
                items.append(parse_item(raw))
            except (ValidationError, ValueError) as exc:
                raise ValueError(f"timeline[{i}]: {_first_error(exc)}") from None
        return items

    @model_validator(mode="after")
    def _shape(self) -> Scenario:
        check_shape(self)
        return self

    def sounds(self) -> list[Sound]:
        return [i for i in self.timeline if isinstance(i, SaySound | PlaySound)]

    def voices(self) -> set[str]:
        """Synthesizers and recordings the scenario needs ('espeak-ng', 'piper', 'pyannote', 'alsa', ...)."""
        out = set()
        for item in self.sounds():
            for src in (item, *item.over):
                out.add(src.voice.split(":")[0] if isinstance(src, Say) else src.play.split(":")[0])
        return out


def _roles(items: list[Item]) -> list[str]:
    """The timeline as a string of roles: q(uery), i(nterrupt), b(ackground), p(ause), g(ap), w(ait)."""
    out = []
    for item in items:
        if isinstance(item, WaitFor):
            out.append("w")
        elif isinstance(item, Silence):
            out.append("p" if item.role == "pause" else "g")
        else:
            out.append(item.role[0])
    return out


def check_shape(s: Scenario) -> None:
    """Each expectation needs a timeline that can show it (raises ValueError with the reason)."""
    roles = _roles(s.timeline)
    spoken = [r for r in roles if r in "qib"]
    if not spoken:
        raise ValueError("the timeline has no speech")
    for at, r in enumerate(roles):
        if r == "p":
            before = [x for x in roles[:at] if x in "qibw"]
            after = [x for x in roles[at + 1 :] if x in "qibw"]
            if not before or before[-1] != "q" or not after or after[0] != "q":
                raise ValueError(f"timeline[{at}]: a pause must sit between two parts of a query")
    if roles.count("w") > 1:
        raise ValueError("at most one wait_for per scenario")
    waits = "w" in roles
    head = roles[: roles.index("w")] if waits else roles
    tail = roles[roles.index("w") + 1 :] if waits else []
    match s.expect:
        case "respond":
            if "q" not in roles or "i" in roles or waits:
                raise ValueError("respond: needs a query, and no interrupt or wait_for")
        case "no_response":
            if set(spoken) != {"b"} or waits:
                raise ValueError("no_response: background speech only, no wait_for")
        case "wait":
            if "p" not in roles or "i" in roles or waits:
                raise ValueError("wait: needs a query with a pause inside it, and no interrupt or wait_for")
        case "interrupt":
            if not waits or "q" not in head or "i" not in tail or "i" in head:
                raise ValueError("interrupt: needs a query, a wait_for the reply, then an interrupt")
        case "no_interrupt":
            if not waits or "q" not in head or "b" not in tail or {"q", "i"} & set(tail):
                raise ValueError("no_interrupt: needs a query, a wait_for the reply, then background speech only")
    fixed = sum(_fixed_s(i) for i in s.timeline)
    if fixed > MAX_FIXED_S:
        raise ValueError(f"the timeline is longer than {MAX_FIXED_S:.0f} s of set audio ({fixed:.0f} s)")


def _fixed_s(item: Item) -> float:
    """Known length of an item before rendering (0 for speech, whose length the synthesizer decides)."""
    if isinstance(item, Silence):
        return item.silence
    if isinstance(item, PlaySound) and item.end is not None:
        return item.end - item.start
    return 0.0


def _first_error(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        return f"{where}: {msg}" if where else msg
    return str(exc).removeprefix("Value error, ")


def parse_scenario(data: Any) -> Scenario:
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        sid = data.get("id") if isinstance(data, dict) else None
        raise ScenarioError(f"scenario {sid!r}: {_first_error(exc)}" if sid else _first_error(exc)) from None


def parse_lines(lines: list[str], source: str = "<scenarios>") -> list[Scenario]:
    """Parse JSON lines (blank lines and lines starting with '#' are skipped); ids must be unique."""
    out: list[Scenario] = []
    seen: dict[str, int] = {}
    for n, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            data = json.loads(line)
        except ValueError as exc:
            raise ScenarioError(f"{source}:{n}: not valid JSON: {exc}") from None
        try:
            scenario = parse_scenario(data)
        except ScenarioError as exc:
            raise ScenarioError(f"{source}:{n}: {exc}") from None
        if scenario.id in seen:
            raise ScenarioError(f"{source}:{n}: scenario id {scenario.id!r} already used on line {seen[scenario.id]}")
        seen[scenario.id] = n
        out.append(scenario)
    if not out:
        raise ScenarioError(f"{source}: no scenarios")
    return out


def load_scenarios(path: str | Path | None = None) -> list[Scenario]:
    """Scenarios of a JSON-lines file (default: the shipped set)."""
    p = Path(path) if path else shipped_scenarios()
    try:
        text = p.read_text()
    except OSError as exc:
        raise ScenarioError(f"cannot read {p}: {exc}") from None
    return parse_lines(text.splitlines(), str(p))


def shipped_scenarios() -> Path:
    from importlib import resources

    return Path(str(resources.files("duo") / "assets" / "evaluation" / "scenarios.jsonl"))


def dump(scenario: Scenario) -> str:
    """One JSON line, defaults left out so the shipped file stays small."""
    return json.dumps(scenario.model_dump(exclude_defaults=True, mode="json") | {"id": scenario.id,
                                                                                 "expect": scenario.expect},
                      separators=(",", ":"), ensure_ascii=False)
