"""`align annotate` config: the ranking app, its store, and the helpers around it."""

from __future__ import annotations

import ipaddress
from typing import Literal

from pydantic import Field, field_validator, model_validator

from align.config.common import INPUT_PATH, ModelConfig, OutputConfig, Section


class ServerConfig(Section):
    host: str = Field("127.0.0.1", description="Interface to listen on; 0.0.0.0 to serve a team on the network.")
    port: int = Field(7860, ge=0, le=65535, description="HTTP port (0 = any free port).")
    concurrency: int = Field(32, ge=1, description="Requests handled at the same time (Gradio queue workers).")
    api_threads: int = Field(
        4,
        ge=1,
        description="Threads that run the JSON API's (/api/v1) database calls at once; 4 was fastest with the "
        "database on the same machine, one across a network (each statement waits a round trip) may want more.",
    )
    allowed_origins: list[str] = Field(
        default_factory=list,
        description="Origins besides the address a request was sent to whose pages may call the app (e.g. "
        "https://rank.example.org when a reverse proxy serves it); requests from any other site are refused (403).",
    )
    login_free_tries: int = Field(
        5,
        ge=1,
        description="Login tries for one account from one address before each further one waits 1 s, 2 s, 4 s, ... "
        "(an address gets 4x as many over all accounts; see the security page).",
    )
    login_max_lock_seconds: float = Field(
        900.0, gt=0, description="Longest lock after failed logins (the doubling stops here)."
    )
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="Addresses or networks of reverse proxies in front of the app (e.g. 127.0.0.1, 10.0.0.0/8): "
        "from them, the client address is read from X-Forwarded-For (and HTTPS from X-Forwarded-Proto), so "
        "the login throttle counts people, not the proxy.",
    )
    session_idle_minutes: float = Field(
        480.0, gt=0, description="A session ends after this long without a request (default: a working day)."
    )
    session_max_hours: float = Field(24.0, gt=0, description="A session ends this long after its login at the latest.")
    max_body_bytes: int = Field(
        1 << 20, ge=1024, description="Largest request body the app takes (413 beyond); the login form has its own."
    )
    max_login_bytes: int = Field(16 << 10, ge=256, description="Largest login form (413 beyond).")
    max_comment_chars: int = Field(5000, ge=0, description="Longest comment an annotator may attach to a ranking.")
    ssl_certfile: str | None = Field(
        None, description="TLS certificate (PEM) to serve HTTPS; with ssl_keyfile.", json_schema_extra=INPUT_PATH
    )
    ssl_keyfile: str | None = Field(
        None, description="TLS private key (PEM) for ssl_certfile.", json_schema_extra=INPUT_PATH
    )
    title: str = Field("align: rank the responses", description="Browser tab and page title.")
    max_responses: int = Field(
        8, ge=2, le=26, description="Response slots (A..) on the page; raised at launch to the largest stored item."
    )

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for entry in value:
            try:
                ipaddress.ip_network(entry.strip(), strict=False)
            except ValueError:
                raise ValueError(f"{entry!r} is not an IP address or network (e.g. 127.0.0.1 or 10.0.0.0/8)") from None
        return value

    @model_validator(mode="after")
    def _certificate_and_key(self) -> "ServerConfig":
        if (self.ssl_certfile is None) != (self.ssl_keyfile is None):
            raise ValueError("server.ssl_certfile and server.ssl_keyfile go together: give both (or neither)")
        return self


class GenerateConfig(Section):
    model: ModelConfig | None = Field(
        None, description="Model that writes the candidates, e.g. an SFT run dir or 'demo:demo/model'."
    )
    prompts: str | None = Field(
        None,
        description="Prompts file: {prompt} / alpaca {instruction,input} / {messages} rows.",
        json_schema_extra=INPUT_PATH,
    )
    k: int = Field(4, ge=2, description="Distinct responses wanted per prompt.")
    temperature: float = Field(1.0, gt=0, description="Sampling temperature (higher = more diverse candidates).")
    top_p: float = Field(0.95, gt=0, le=1.0, description="Nucleus sampling mass.")
    top_k: int = Field(
        50, ge=0, description="Sample among the k likeliest tokens (0 = no limit; 50 is transformers' default)."
    )
    max_new_tokens: int = Field(64, ge=1, description="Longest response, in tokens.")
    max_rounds: int = Field(
        4, ge=1, description="Sampling rounds per prompt to collect k distinct responses; fewer is kept if >= 2."
    )
    max_prompts: int | None = Field(None, ge=1, description="Use only the first N prompts.")
    batch_size: int = Field(8, ge=1, description="Prompts sampled together.")
    seed: int = Field(0, description="Sampling seed.")
    select: Literal["all", "random", "uncertainty"] = Field(
        "all",
        description="Which items people get: all; `budget` of them at random (the control); or the `budget` where the "
        "reward model's ensemble disagrees most, with the k of pool_k responses it disagrees most about.",
    )
    budget: int | None = Field(None, ge=1, description="Items to keep (select random / uncertainty).")
    pool_k: int | None = Field(
        None, ge=2, description="Responses sampled per prompt before k are chosen (default: k, or 2k when selecting)."
    )
    reward_model: str | None = Field(
        None,
        description="Reward run asked by select: uncertainty (trained with heads >= 2).",
        json_schema_extra=INPUT_PATH,
    )

    @model_validator(mode="after")
    def _selection_is_complete(self) -> GenerateConfig:
        if self.select != "all" and self.budget is None:
            raise ValueError(f"select: {self.select} needs budget: N (how many items people will rank)")
        if self.select == "uncertainty" and self.reward_model is None:
            raise ValueError(
                "select: uncertainty needs a reward model to ask: reward_model: RUN_DIR (an `align reward` run "
                "with heads >= 2), or select: random"
            )
        if self.pool_k is not None and self.pool_k < self.k:
            raise ValueError(f"pool_k ({self.pool_k}) must be at least k ({self.k})")
        return self

    @property
    def responses_sampled(self) -> int:
        """Responses drawn per prompt: pool_k, else k (2k when a selection picks k of them)."""
        return self.pool_k or (self.k if self.select == "all" else 2 * self.k)


class SimulateConfig(Section):
    world: str = Field(
        "demo:demo", description="Demo world whose gold preference ranks: 'demo:demo', 'demo:tiny' or its folder."
    )
    annotators: int = Field(3, ge=1, description="Simulated annotators sim-1..sim-N (created if absent).")
    noise: float = Field(
        0.3, ge=0.0, description="Gaussian noise added to gold scores before ranking (0 = perfect annotators)."
    )
    seed: int = Field(0, description="Noise seed.")
    max_rankings: int | None = Field(
        None, ge=1, description="Stop after this many rankings (None: until every quota is met)."
    )


class ExportConfig(Section):
    format: Literal["rankings", "pairs"] = Field(
        "rankings", description="Rankings JSONL, or {prompt, chosen, rejected} pairs."
    )
    aggregate: bool = Field(
        False, description="One ranking per item (aggregated over annotators) instead of one per annotator."
    )
    method: Literal["mean_rank", "bradley_terry"] = Field(
        "mean_rank", description="How rankings of one item are aggregated."
    )
    min_rankings: int = Field(1, ge=1, description="Aggregated export: skip items with fewer rankings than this.")


class AnnotateConfig(Section):
    """`align annotate`: the ranking app and its store."""

    db: str = Field(
        "sqlite:///annotations.db",
        description="SQLAlchemy URL (sqlite:///file.db, postgresql://...) or an SQLite file path.",
    )
    min_annotations_per_item: int = Field(
        2, ge=1, description="Rankings wanted per item (the quota); an item never gets more."
    )
    lease_minutes: float = Field(
        60.0, gt=0, description="An item handed out but untouched this long stops reserving its quota slot."
    )
    guidelines: str = Field(
        "Rank the responses from best (1) to worst. Equal ranks mean a tie.",
        description="Markdown shown to annotators.",
    )
    server: ServerConfig = Field(default_factory=ServerConfig)
    generate: GenerateConfig = Field(default_factory=GenerateConfig)
    simulate: SimulateConfig = Field(default_factory=SimulateConfig)
    export: ExportConfig = Field(default_factory=ExportConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)
