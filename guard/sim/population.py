"""Who is in the simulated organization: workspaces, API keys and their traffic streams.

A *stream* is one finest-grain usage group (workspace, key, model, tier, context window, geo,
speed) with a weight and a token profile. Key weights are Pareto-distributed, so a few keys carry
most of the spend and most keys are quiet most hours: that keeps a 2,000-key org sparse per hour.
Weights are capped (``_MAX_KEY_WEIGHT``) so that one unlucky draw cannot make a single key the
whole organization.

Most traffic is the 5.5 family (Opus, Sonnet and Haiku 5.5); some keys still use older models;
some Opus 5.5 keys (and a few Opus 4.7 keys) also send fast-mode requests, at standard tier only.
"""

from __future__ import annotations

import random
import string
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from guard.sim import prices
from guard.sim.usage import Dims

NOVA = "claude-nova-1"
"""The model public price lists do not know; used rarely, by one key."""

MODEL_POPULARITY: tuple[tuple[str, int], ...] = (
    ("claude-sonnet-5-5", 32),
    ("claude-opus-5-5", 24),
    ("claude-haiku-5-5", 20),
    ("claude-sonnet-4-6", 9),
    ("claude-opus-4-7", 6),
    ("claude-sonnet-4-5-20250929", 5),
    ("claude-haiku-4-5-20251001", 4),
)
"""The everyday models and how likely a key is to use each."""

FAST_TRAFFIC: dict[str, tuple[float, float]] = {
    "claude-opus-5-5": (0.6, 0.5),
    "claude-opus-4-7": (0.3, 0.1),
}
"""Model → (chance that a key using it also sends fast-mode traffic, the most that traffic
weighs against the key's standard traffic on the model)."""

LONG_CONTEXT_MODELS: dict[str, float] = {
    "claude-sonnet-4-5-20250929": 0.4,
    "claude-sonnet-5-5": 0.2,
    "claude-opus-5-5": 0.15,
}
"""Model → chance that a key using it also sends prompts past 200K tokens."""

_ALPHANUMERIC = string.ascii_letters + string.digits
_WORKSPACE_NAMES = ("Production", "Staging", "Research", "Support Bot", "Data Platform",
                    "Search", "Growth", "Internal Tools", "Evaluation", "Mobile")
_KEY_PURPOSES = ("backend", "batch-jobs", "chat", "agents", "etl", "ci", "notebook", "search",
                 "summarizer", "classifier", "support", "eval")
_CREATED_FROM = datetime(2024, 3, 1, tzinfo=UTC)
_MAX_KEY_WEIGHT = 50.0
_INPUT_PER_DRAW = {"claude-opus-5-5": 70_000.0, "claude-sonnet-5-5": 130_000.0,
                   "claude-haiku-5-5": 350_000.0, "claude-opus-4-7": 60_000.0,
                   "claude-sonnet-4-6": 120_000.0, "claude-sonnet-4-5-20250929": 110_000.0,
                   "claude-haiku-4-5-20251001": 300_000.0}
_CONSOLE_MODELS = ("claude-sonnet-5-5", "claude-haiku-5-5", "claude-opus-5-5", "claude-sonnet-4-6")


@dataclass(frozen=True, slots=True)
class SimWorkspace:
    """A workspace of the simulated organization (never the default one, which has no id)."""

    id: str
    name: str
    created_at: datetime
    default_inference_geo: str = "global"
    display_color: str = "#6C5BB9"
    archived_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class SimApiKey:
    """An API key; ``workspace_id`` is ``None`` for a key of the default workspace."""

    id: str
    name: str
    workspace_id: str | None
    created_at: datetime
    partial_key_hint: str
    status: str = "active"


@dataclass(frozen=True, slots=True)
class Profile:
    """Tokens one draw of a stream brings, relative to its uncached input."""

    input_per_draw: float
    output_ratio: float
    read_ratio: float
    write_5m_ratio: float
    write_1h_ratio: float
    searches_per_draw: float
    requests_per_draw: float


@dataclass(frozen=True, slots=True)
class Stream:
    """One finest-grain usage group with its share of the organization's traffic."""

    dims: Dims
    weight: float
    profile: Profile


@dataclass(frozen=True, slots=True)
class Population:
    """Everything generated once per organization; hours are generated from it on demand."""

    workspaces: tuple[SimWorkspace, ...]
    api_keys: tuple[SimApiKey, ...]
    streams: tuple[Stream, ...]
    nova_key: SimApiKey
    default_workspace_id: str
    """The real id of the default workspace, shown only in API keys' ``scope`` (as the API does)."""


def ident(rng: random.Random, prefix: str) -> str:
    """An id like the API's: ``prefix`` + ``01`` + 22 alphanumerics (24 in all)."""
    return prefix + "01" + "".join(rng.choices(_ALPHANUMERIC, k=22))


def populate(seed: int, workspaces: int, keys: int) -> Population:
    """Generate the organization's directory and streams, deterministically from ``seed``."""
    rng = random.Random(f"{seed}:population")
    fast = random.Random(f"{seed}:fast")  # its own draws: fast-mode tuning moves nothing else
    spaces = tuple(_workspace(rng, i) for i in range(workspaces))
    api_keys = tuple(_api_key(rng, i, _home(rng, i, spaces, keys)) for i in range(keys))
    geo = {space.id: space.default_inference_geo for space in spaces}
    streams = [s for key in api_keys
               for s in _key_streams((rng, fast), key, geo.get(key.workspace_id or "", "global"))]
    streams += _console_streams(rng, spaces)
    nova_key = api_keys[rng.randrange(len(api_keys))]
    return Population(spaces, api_keys, tuple(streams), nova_key, ident(rng, "wrkspc_"))


def _workspace(rng: random.Random, index: int) -> SimWorkspace:
    base = _WORKSPACE_NAMES[index % len(_WORKSPACE_NAMES)]
    name = base if index < len(_WORKSPACE_NAMES) else f"{base} {index // len(_WORKSPACE_NAMES)}"
    created = _CREATED_FROM + timedelta(days=index * 3, minutes=rng.randrange(1440))
    geo = "us" if rng.random() < 0.25 else "global"
    color = "#" + "".join(rng.choices("0123456789ABCDEF", k=6))
    return SimWorkspace(ident(rng, "wrkspc_"), name, created, geo, color)


def _home(rng: random.Random, index: int, spaces: tuple[SimWorkspace, ...],
          keys: int) -> str | None:
    """Which workspace key ``index`` lives in: the first keys fill the default workspace, then
    one key per workspace, then the rest at random."""
    defaults = max(1, keys // 8)
    if index < defaults or not spaces:
        return None
    if index < defaults + len(spaces):
        return spaces[index - defaults].id
    if rng.random() < 0.1:
        return None
    if rng.random() < 0.3:  # the first workspaces are the big ones
        return spaces[min(int(rng.paretovariate(1.0)) - 1, len(spaces) - 1)].id
    return rng.choice(spaces).id


def _api_key(rng: random.Random, index: int, workspace_id: str | None) -> SimApiKey:
    name = f"{rng.choice(_KEY_PURPOSES)}-{index}"
    created = _CREATED_FROM + timedelta(days=30 + index % 200, minutes=rng.randrange(1440))
    secret = "".join(rng.choices(_ALPHANUMERIC, k=7))
    hint = f"sk-ant-api03-{secret[:3]}...{secret[3:]}"
    return SimApiKey(ident(rng, "apikey_"), name, workspace_id, created, hint)


def _key_streams(rngs: tuple[random.Random, random.Random], key: SimApiKey,
                 workspace_geo: str) -> list[Stream]:
    rng, fast = rngs
    weight = min(rng.paretovariate(1.16), _MAX_KEY_WEIGHT)
    geo = "us" if rng.random() < 0.1 else workspace_geo
    batch = rng.random() < 0.25
    streams: list[Stream] = []
    for model, share in _model_mix(rng):
        dims: Dims = (key.workspace_id, key.id, model, "standard", "0-200k", _geo(model, geo),
                      prices.STANDARD)
        streams.append(Stream(dims, weight * share, _profile(rng, model)))
        streams += _variants(rng, dims, weight * share, batch=batch)
        streams += _fast(fast, dims, weight * share)
    return streams


def _variants(rng: random.Random, dims: Dims, weight: float, *, batch: bool) -> list[Stream]:
    """The batch and long-context streams beside a key's standard stream."""
    model = dims[2]
    streams: list[Stream] = []
    if batch:
        batch_dims: Dims = (*dims[:3], "batch", *dims[4:])
        streams.append(Stream(batch_dims, weight * 0.4, _profile(rng, model, 3.0)))
    if rng.random() < LONG_CONTEXT_MODELS.get(model, 0.0):
        long_dims: Dims = (*dims[:4], prices.LONG_CONTEXT, *dims[5:])
        streams.append(Stream(long_dims, weight * 0.2, _profile(rng, model, 4.0)))
    return streams


def _fast(rng: random.Random, dims: Dims, weight: float) -> list[Stream]:
    """The fast-mode stream beside a key's standard stream, for some keys of some models."""
    chance, most = FAST_TRAFFIC.get(dims[2], (0.0, 0.0))
    if rng.random() >= chance:
        return []
    fast_dims: Dims = (*dims[:6], prices.FAST)
    share = rng.uniform(0.2, 1.0) * most
    return [Stream(fast_dims, weight * share, _profile(rng, dims[2]))]


def _model_mix(rng: random.Random) -> list[tuple[str, float]]:
    names = [name for name, _ in MODEL_POPULARITY]
    popularity = [weight for _, weight in MODEL_POPULARITY]
    chosen: list[str] = []
    for _ in range(rng.choice((1, 1, 2, 2, 3))):
        model = rng.choices(names, popularity)[0]
        if model not in chosen:
            chosen.append(model)
    shares = [rng.uniform(0.2, 1.0) for _ in chosen]
    return [(model, share / sum(shares)) for model, share in zip(chosen, shares, strict=True)]


def _geo(model: str, preferred: str) -> str:
    return preferred if prices.card(model).geo_priced else "not_available"


def _profile(rng: random.Random, model: str, scale: float = 1.0) -> Profile:
    caching = rng.choices(("none", "5m", "1h", "both"), (30, 40, 15, 15))[0]
    write_5m = rng.uniform(0.1, 0.5) if caching in ("5m", "both") else 0.0
    write_1h = rng.uniform(0.05, 0.3) if caching in ("1h", "both") else 0.0
    read = rng.uniform(1.0, 8.0) if caching != "none" else 0.0
    searches = rng.uniform(0.5, 6.0) if rng.random() < 0.25 else 0.0
    size = _INPUT_PER_DRAW.get(model, 50_000.0) * scale * rng.lognormvariate(0.0, 0.6)
    requests = size / rng.uniform(4_000.0, 40_000.0)
    return Profile(size, rng.uniform(0.05, 0.35), read, write_5m, write_1h, searches, requests)


def _console_streams(rng: random.Random, spaces: tuple[SimWorkspace, ...]) -> list[Stream]:
    """Console/Workbench usage (no API key): in the default workspace and a few others."""
    sampled = rng.sample(spaces, len(spaces) // 8)
    homes: dict[str | None, SimWorkspace | None] = {None: None}
    homes.update((space.id, space) for space in (*spaces[:4], *sampled))
    streams = []
    for space in homes.values():
        model = rng.choice(_CONSOLE_MODELS)
        geo = _geo(model, space.default_inference_geo if space else "global")
        dims: Dims = (space.id if space else None, None, model, "standard", "0-200k", geo,
                      prices.STANDARD)
        streams.append(Stream(dims, rng.uniform(0.05, 0.3), _profile(rng, model, 0.2)))
    return streams
