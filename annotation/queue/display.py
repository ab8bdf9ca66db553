"""What the review queue shows about an item in people's words: each label's colour, why the item is here, and where it
came from. Pure functions of rows already loaded (no query); every string built here goes through ``format_html``.
"""
from dataclasses import dataclass

from django.utils.html import conditional_escape, format_html, format_html_join
from django.utils.safestring import SafeString

from annotation.models import Item, Label

# Labels keep the model's default colour until a lead picks one; those get a colour of this palette by their order,
# so that neighbouring labels differ. Every colour is dark enough for white text (WCAG AA, 4.5:1).
DEFAULT_COLOR = Label._meta.get_field("color").default
PALETTE = ("#3b5bdb", "#c92a2a", "#2b7a3b", "#862e9c", "#0b7285", "#b1420d", "#a61e4d", "#1864ab", "#5c6b0a",
           "#5f3dc4")
UNKNOWN = "#6a737d"  # a proposed name that is no longer one of the project's labels

PROVENANCE_WORDS = {
    "job": "Generation job", "batch": "Batch", "mode": "Generation mode", "provider": "Provider", "model": "Model",
    "response_id": "Response id", "conditions": "Written for", "exemplar_ids": "Example items shown",
    "steps": "Steps", "raw": "Raw answer", "import_job": "Import", "row": "Row of the file", "demo": "Demo",
}


@dataclass(frozen=True)
class ShownLabel:
    name: str
    color: str  # #rrggbb
    ink: str  # the text colour that reads on ``color``
    hotkey: str = ""
    description: str = ""
    id: int | None = None


def labels_shown(labels: list[Label]) -> list[ShownLabel]:
    """The project's labels with the colour each is shown in."""
    shown = []
    for index, label in enumerate(labels):
        color = label.color.lower() if label.color and label.color.lower() != DEFAULT_COLOR else PALETTE[
            index % len(PALETTE)]
        shown.append(ShownLabel(name=label.name, color=color, ink=ink_for(color), hotkey=label.hotkey,
                                description=label.description, id=label.id))
    return shown


def ink_for(color: str) -> str:
    """Near-black or white, whichever contrasts more with ``color`` (#rrggbb)."""
    channels = [int(color[i:i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    luminance = 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]
    return "#ffffff" if (1.05 / (luminance + 0.05)) >= ((luminance + 0.05) / 0.05) else "#111111"


def chips(names, by_name: dict[str, ShownLabel]) -> list[ShownLabel]:
    return [by_name.get(name) or ShownLabel(name=name, color=UNKNOWN, ink="#ffffff") for name in names]


def _chip(label: ShownLabel) -> SafeString:
    return format_html('<span class="tag label-chip" data-color="{}" data-ink="{}">{}</span>', label.color, label.ink,
                       label.name)


def _chip_list(names, by_name) -> SafeString:
    return format_html_join(" + ", "{}", ((_chip(label),) for label in chips(names, by_name)))


def item_why(*, item: Item, second_opinion: bool, by_name: dict[str, ShownLabel]) -> list[SafeString]:
    """Why the item is in the queue, as plain sentences: the LLM's and the model's labels by name, the chances in
    percent. The raw signals stay in ``item.model_scores`` for the page's "details"."""
    plain = conditional_escape
    sentences = []
    if second_opinion:
        sentences.append(plain("Someone has already reviewed this item. Your independent answer shows how much "
                               "reviewers agree; you see the LLM's label, not theirs."))
    elif item.is_audit:
        sentences.append(plain("An audit sample: this item would have been accepted automatically. Your answer "
                               "measures how often that is right."))
    elif item.is_calibration:
        sentences.append(plain("Part of the calibration sample: people check a random set of items before anything "
                               "is accepted automatically."))
    proposed = list(item.proposed_labels or [])
    model = [name for name in (item.model_label or "").split("|") if name]
    if not proposed:
        sentences.append(plain("The LLM gave no label, so a person has to pick one."))
    if model and proposed and sorted(model) != sorted(proposed):
        sentences.append(format_html("The model thinks this is {}; the LLM said {}.", _chip_list(model, by_name),
                                     _chip_list(proposed, by_name)))
    elif model and proposed:
        sentences.append(format_html("The model and the LLM both say {}.", _chip_list(proposed, by_name)))
    elif model:
        sentences.append(format_html("The model thinks this is {}.", _chip_list(model, by_name)))
    scores = item.model_scores or {}
    p_wrong = scores.get("p_llm_wrong")
    if proposed and isinstance(p_wrong, (int, float)):
        sentences.append(format_html("Chance that the LLM's label is wrong, by the model's estimate: {}%.",
                                     round(100 * p_wrong)))
    if item.llm_confidence is not None and item.llm_confidence < 0.6:
        sentences.append(format_html("The LLM itself was only {}% sure.", round(100 * item.llm_confidence)))
    if not model and not scores and not (second_opinion or item.is_audit or item.is_calibration):
        sentences.append(plain("The model has not scored it yet: unscored items wait after the scored ones, oldest "
                               "first."))
    return sentences


def provenance_shown(provenance: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """(key, value) pairs of ``item_panels`` with the keys in words; unknown keys read as words too."""
    return [(PROVENANCE_WORDS.get(key, key.replace("_", " ").capitalize()), value) for key, value in provenance]
