"""Prompt building: the exact messages a job sends, from templates the lead can edit and preview.

Templates use ``$name`` placeholders (``string.Template``), never Django or Jinja templates: a lead's template can
fill in values but cannot reach any object. The system prompt is the task specification (task description, label set
with descriptions and label words, output format); the user prompts ask for label-conditioned samples (optionally with
attribute conditions and rotated in-context exemplars), for a verbalizer label, or for a self-check of a draft's label
with a short rationale.
"""
from __future__ import annotations

from dataclasses import dataclass
from string import Template

TEMPLATE_NAMES = ("system", "generate", "label", "check")

DEFAULT_TEMPLATES: dict[str, str] = {
    "system": (
        "You help build a labelled dataset for a text classification task.\n"
        "Task: $task\n"
        "Labels: $labels\n"
        "$label_descriptions\n"
        "Reply with JSON only, exactly in the requested format."
    ),
    "generate": (
        "Write $count new samples whose label is $label.\n"
        "${attributes}${exemplars}${avoid}"
        'Each sample is an object {"text": "...", "label": "$label"}; reply with {"samples": [...]}. '
        "Make the samples varied and realistic; do not copy the examples."
    ),
    "label": (
        "$instruction\n"
        "Labels: $labels\n"
        'Reply with {"label": "<one of the labels>"}.\n'
        "Text: $text"
    ),
    "check": (
        "Check the label of a sample that was written to have the label $label. Classify the text yourself and give "
        "a one-sentence rationale.\n"
        "Labels: $labels\n"
        'Reply with {"label": "<one of the labels>", "rationale": "..."}.\n'
        "Text: $text"
    ),
}

# Paraphrases of the labelling instruction: asking each one gives independent votes when the endpoint has no logprobs
# (self-consistency over prompt variants).
LABEL_INSTRUCTIONS = (
    "Classify the text into exactly one of the labels.",
    "Which label fits the text best? Classify it.",
    "Read the text and classify it with the single most fitting label.",
)

PLACEHOLDERS: dict[str, frozenset[str]] = {
    "system": frozenset({"task", "labels", "label_descriptions"}),
    "generate": frozenset({"count", "label", "labels", "attributes", "exemplars", "avoid"}),
    "label": frozenset({"instruction", "labels", "text"}),
    "check": frozenset({"label", "labels", "text"}),
}


class TemplateProblem(ValueError):
    pass


def validate_template(name: str, text: str) -> None:
    """Refuse a template with an unknown or malformed placeholder, naming it."""
    allowed = PLACEHOLDERS[name]
    try:
        ids = Template(text).get_identifiers()
    except ValueError as exc:
        raise TemplateProblem(f"Malformed placeholder in the {name} template: {exc}") from None
    if not Template(text).is_valid():
        raise TemplateProblem(f"Malformed placeholder in the {name} template (write $$ for a literal $).")
    unknown = sorted(set(ids) - allowed)
    if unknown:
        raise TemplateProblem(
            f"Unknown placeholder ${unknown[0]} in the {name} template; allowed: "
            + ", ".join(f"${p}" for p in sorted(allowed))
        )


def templates_with_defaults(overrides: dict | None) -> dict[str, str]:
    merged = dict(DEFAULT_TEMPLATES)
    merged.update({k: v for k, v in (overrides or {}).items() if k in TEMPLATE_NAMES and v})
    return merged


@dataclass(frozen=True)
class LabelInfo:
    name: str
    description: str = ""
    words: tuple[str, ...] = ()


@dataclass(frozen=True)
class TaskSpec:
    """What every prompt of a project states: the task and the label set."""

    task: str
    labels: tuple[LabelInfo, ...]
    multi_label: bool = False

    @property
    def label_names(self) -> list[str]:
        return [label.name for label in self.labels]


def _render(template: str, **values) -> str:
    return Template(template).substitute(values)


def system_message(spec: TaskSpec, templates: dict[str, str]) -> dict:
    lines = []
    for label in spec.labels:
        line = f"- {label.name}: {label.description or label.name}"
        if label.words:
            line += f" (words: {', '.join(label.words)})"
        lines.append(line)
    task = spec.task.strip() or "Classify short texts."
    if spec.multi_label:
        task += " A text may have several labels."
    content = _render(templates["system"], task=task, labels=", ".join(spec.label_names),
                      label_descriptions="\n".join(lines))
    return {"role": "system", "content": content}


def generation_messages(
    spec: TaskSpec,
    templates: dict[str, str],
    *,
    label: str,
    count: int,
    attributes: dict[str, str] | None = None,
    exemplars: list[str] = (),
    avoid: list[str] = (),
) -> list[dict]:
    attribute_text = ""
    if attributes:
        attribute_text = "Attributes: " + "; ".join(f"{k} = {v}" for k, v in attributes.items()) + "\n"
    exemplar_text = ""
    if exemplars:
        exemplar_text = "Accepted examples with this label, for style only:\n" + "".join(
            f"{i}. {text}\n" for i, text in enumerate(exemplars, 1)
        )
    avoid_text = ""
    if avoid:
        avoid_text = "Earlier samples came out too similar to these; write something different:\n" + "".join(
            f"- {text}\n" for text in avoid
        )
    user = _render(templates["generate"], count=count, label=label, labels=", ".join(spec.label_names),
                   attributes=attribute_text, exemplars=exemplar_text, avoid=avoid_text)
    return [system_message(spec, templates), {"role": "user", "content": user}]


def labelling_messages(spec: TaskSpec, templates: dict[str, str], *, text: str, variant: int = 0) -> list[dict]:
    instruction = LABEL_INSTRUCTIONS[variant % len(LABEL_INSTRUCTIONS)]
    if spec.multi_label:
        instruction += " Choose all that apply."
    user = _render(templates["label"], instruction=instruction, labels=", ".join(spec.label_names), text=text)
    return [system_message(spec, templates), {"role": "user", "content": user}]


def check_messages(spec: TaskSpec, templates: dict[str, str], *, text: str, label: str) -> list[dict]:
    user = _render(templates["check"], label=label, labels=", ".join(spec.label_names), text=text)
    return [system_message(spec, templates), {"role": "user", "content": user}]


# ---------------------------------------------------------------------------------------------------------------------
# Response formats (the best the endpoint supports: see providers.RESPONSE_FORMATS)


def _response_format(name: str, schema: dict, mode: str) -> dict | None:
    """The ``response_format`` of ``mode`` (a name from ``providers.RESPONSE_FORMATS``) for ``schema``."""
    if mode == "none":
        return None
    if mode == "json_object":
        return {"type": "json_object"}
    if mode == "json_object_schema":
        return {"type": "json_object", "schema": schema}
    return {"type": "json_schema", "json_schema": {"name": name, "strict": True, "schema": schema}}


def generation_format(*, labels: list[str], count: int, mode: str) -> dict | None:
    sample = {
        "type": "object",
        "properties": {"text": {"type": "string"}, "label": {"type": "string", "enum": labels}},
        "required": ["text", "label"],
        "additionalProperties": False,
    }
    return _response_format("Samples", {
        "type": "object",
        "properties": {"samples": {"type": "array", "items": sample, "minItems": count, "maxItems": count}},
        "required": ["samples"],
        "additionalProperties": False,
    }, mode)


def labelling_format(*, labels: list[str], multi_label: bool, mode: str, with_rationale: bool = False) -> dict | None:
    if multi_label:
        properties: dict = {"labels": {"type": "array", "items": {"type": "string", "enum": labels}}}
    else:
        properties = {"label": {"type": "string", "enum": labels}}
    if with_rationale:
        properties["rationale"] = {"type": "string"}
    return _response_format("Verdict", {
        "type": "object", "properties": properties, "required": list(properties), "additionalProperties": False,
    }, mode)
