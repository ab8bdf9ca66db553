"""A job's configuration as typed values, validated in one place.

``JobOptions`` is what a lead chooses (through the start form, or ``services.job_create`` from other apps); its fields
carry every bound, and ``options_validate`` adds the rules that involve the mode and the provider's capabilities. The
form takes its limits from these fields and reports these errors. ``JobConfig`` is the frozen configuration a job runs
with, stored as JSON in ``GenerationJob.config``: the options plus what was read from the project when the job was
created (task specification, labels, attribute values, pool item ids, label counts for balancing). It loads the JSON
that jobs created before it stored.
"""
from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from annotation.errors import ServiceError
from generation import prompts
from generation.models import JobMode
from generation.providers import Capabilities, ProviderConfigError, provider_spec

PRICE_DIGITS, PRICE_PLACES = 10, 6
CONSISTENCY_CHOICES = {"samples": "k samples in one request (n=k)", "variants": "k prompt variants"}
RESPONSE_FORMAT_CHOICES = {
    "auto": "The best the endpoint supports (from its probe)",
    "json_schema": "JSON schema (structured output)",
    "json_object_schema": "JSON object with a schema (llama-cpp-python)",
    "json_object": "JSON object (no schema)",
    "none": "Plain text asking for JSON",
}


class JobConfigError(ServiceError):
    """Options a job cannot run with. ``problems`` pairs a field path ("steps", "filters.max_chars",
    "templates.generate"; "" for the whole) with a message fit to show next to that field."""

    def __init__(self, problems: list[tuple[str, str]]):
        self.problems = problems
        super().__init__(" ".join(f"{path}: {message}" if path else message for path, message in problems))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FilterOptions(_Strict):
    min_chars: int = Field(10, ge=0, le=100_000)
    max_chars: int = Field(2000, ge=1, le=100_000)
    # Jaccard similarity of character 5-gram shingles; 0 turns the check off.
    near_duplicate: float = Field(0.8, ge=0, le=1)
    # A run of this many words shared with an exemplar is leakage; 0 turns the check off.
    leakage_words: int = Field(8, ge=0, le=100)
    pii: bool = True


Price = Decimal | None


class _Knobs(_Strict):
    """How a job prompts, batches, reads answers, filters and prices: what options and a stored config share."""

    samples_per_request: int = Field(5, ge=1, le=50)
    requests_per_batch: int = Field(16, ge=1, le=64)
    max_concurrency: int = Field(8, ge=1, le=64)
    exemplars: int = Field(3, ge=0, le=10)
    temperature: float = Field(0.9, ge=0, le=2)
    steps: Literal[1, 2] = 1
    balance_project: bool = True
    response_format: Literal["auto", "json_schema", "json_object_schema", "json_object", "none"] = "auto"
    consistency: Literal["samples", "variants"] = "samples"
    consistency_k: int = Field(5, ge=2, le=10)
    # Times a malformed answer is asked again before its samples count as failed.
    parse_retries: int = Field(2, ge=0, le=5)
    price_prompt_per_1k: Price = Field(None, ge=0, max_digits=PRICE_DIGITS, decimal_places=PRICE_PLACES)
    price_completion_per_1k: Price = Field(None, ge=0, max_digits=PRICE_DIGITS, decimal_places=PRICE_PLACES)
    filters: FilterOptions = FilterOptions()
    # Only templates that differ from the defaults: the job then shows what was customised.
    templates: dict[Literal["system", "generate", "label", "check"], str] = {}

    @field_validator("price_prompt_per_1k", "price_completion_per_1k", mode="before")
    @classmethod
    def _no_price(cls, value: Any) -> Any:
        return None if value == "" else value  # how stored configs and empty form fields say "no price"

    @field_validator("templates")
    @classmethod
    def _customised_templates(cls, templates: dict[str, str]) -> dict[str, str]:
        customised = {}
        for name, text in templates.items():
            text = text.replace("\r\n", "\n")
            if text and text != prompts.DEFAULT_TEMPLATES[name]:
                try:
                    prompts.validate_template(name, text)
                except prompts.TemplateProblem as exc:
                    raise ValueError(str(exc)) from None
                customised[name] = text
        return customised


class ConnectionRef(_Strict):
    """The LLM connection a job was started with, as it was then (the connection may change or go later). ``id`` None
    is the deployment's default, whose endpoint the worker reads from its own environment."""

    id: int | None = None
    name: str
    base_url: str = ""
    model: str = ""
    key_variable: str = ""


class JobOptions(_Knobs):
    """What a lead asks of a job."""

    count: int = Field(50, ge=1, le=20000)
    # Target labels for generation; empty: all of the project's labels.
    labels: tuple[str, ...] = ()


class JobConfig(_Knobs):
    """The configuration a job runs with, frozen when it is created."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    spec: prompts.TaskSpec
    labels: tuple[str, ...]
    attributes: dict[str, tuple[str, ...]] = {}
    item_ids: tuple[int, ...] = ()  # labelling: the pool items, in order
    baseline: dict[str, int] = {}  # items per label the project had, for balancing
    # LLM providers only; None (and every job from before connections) is the deployment's default.
    connection: ConnectionRef | None = None

    @classmethod
    def load(cls, raw: Mapping) -> JobConfig:
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            raise JobConfigError(_problems(exc)) from None

    def dump(self) -> dict:
        return self.model_dump(mode="json")

    def summary(self) -> list[tuple[str, str]]:
        """What the lead chose, as (setting, value) rows for the job's page."""
        f = self.filters
        rows = [
            ("Labels", ", ".join(self.labels)),
            ("Connection", f"{self.connection.name}: {self.connection.model} at {self.connection.base_url}"
             if self.connection and self.connection.id else "the deployment's default"),
            ("Samples per request / requests per batch / concurrency",
             f"{self.samples_per_request} / {self.requests_per_batch} / {self.max_concurrency}"),
            ("Exemplars, temperature, steps", f"{self.exemplars}, {self.temperature:g}, {self.steps}"),
            ("Response format", RESPONSE_FORMAT_CHOICES[self.response_format]),
            ("Confidence without logprobs", f"{CONSISTENCY_CHOICES[self.consistency]}, k = {self.consistency_k}"),
            ("Filters", f"{f.min_chars}-{f.max_chars} characters, near duplicates at {f.near_duplicate:g}, "
                        f"leakage at {f.leakage_words} words, PII {'on' if f.pii else 'off'}"),
        ]
        if self.attributes:
            rows.append(("Attributes", "; ".join(f"{name}: {len(values)} values"
                                                 for name, values in self.attributes.items())))
        if self.price_prompt_per_1k is not None or self.price_completion_per_1k is not None:
            rows.append(("Price per 1k tokens (prompt / completion)",
                         f"{self.price_prompt_per_1k or 0} / {self.price_completion_per_1k or 0} USD"))
        rows.append(("Customised templates", ", ".join(self.templates) or "none"))
        return rows


def form_limits(model: type[BaseModel], name: str) -> dict[str, Any]:
    """``initial``, ``min_value`` and ``max_value`` of a Django form field: the typed field's default and bounds."""
    field = model.model_fields[name]
    limits: dict[str, Any] = {"initial": field.default}
    for constraint in field.metadata:  # annotated_types' Ge / Le, which pydantic makes of Field(ge=..., le=...)
        if getattr(constraint, "ge", None) is not None:
            limits["min_value"] = constraint.ge
        if getattr(constraint, "le", None) is not None:
            limits["max_value"] = constraint.le
    return limits


def _problems(exc: ValidationError) -> list[tuple[str, str]]:
    problems = []
    for error in exc.errors(include_url=False):
        path = ".".join(str(part) for part in error["loc"])
        if error["type"] == "extra_forbidden":
            message = "is not an option of a job."
        elif error["type"] == "value_error":
            message = str(error["ctx"]["error"])
        else:
            message = error["msg"] + "."
        problems.append((path, message))
    return problems


def options_validate(*, mode: str, provider: str, options: JobOptions | Mapping,
                     capabilities: Capabilities | None = None, endpoint_name: str = "") -> JobOptions:
    """The lead's options checked against their bounds, the mode and what the provider can do (``capabilities``: what
    a probe found the chosen endpoint does, instead of what the provider declares); raises JobConfigError naming each
    problem's field."""
    try:
        validated = JobOptions.model_validate(options)
    except ValidationError as exc:
        problems, validated = _problems(exc), None
    else:
        problems = []
    if mode not in JobMode.values:
        problems.append(("mode", f"Unknown mode '{mode}'."))
    try:
        spec = provider_spec(provider)
    except ProviderConfigError as exc:
        problems.append(("provider", str(exc)))
        spec = None
    if validated is not None:
        f = validated.filters
        if f.min_chars >= f.max_chars:
            problems.append(("filters.max_chars", "Must be larger than the shortest text."))
    if validated is not None and spec is not None:
        caps = capabilities if capabilities is not None and spec.capabilities.is_llm else spec.capabilities
        if validated.steps == 2 and not caps.is_llm:
            problems.append(("steps", f"The self-check needs an LLM; {spec.display_name} cannot check labels."))
        if caps.needs_seeds and mode != JobMode.LABEL_POOL and validated.exemplars < 1:
            problems.append(("exemplars", f"{spec.display_name} works from accepted seed examples; use at least 1."))
        if validated.response_format != "auto" and validated.response_format not in caps.response_formats:
            problems.append(("response_format", f"{endpoint_name or spec.display_name} cannot answer in this format"
                                                f"{' (its probe found so)' if capabilities else ''}."))
    if problems:
        raise JobConfigError(problems)
    return validated
