"""Validation of what a lead asks a job to do; ``options()`` turns it into the dict ``services.job_create`` takes."""
from django import forms

from generation import prompts
from generation.models import JobMode
from generation.providers import OFFLINE, OPENAI, PROVIDER_CHOICES

FORMAT_CHOICES = [
    ("json_schema", "JSON schema (structured output)"),
    ("json_object", "JSON object (no schema)"),
    ("none", "Plain text asking for JSON"),
]
STEP_CHOICES = [(1, "One step: draft"), (2, "Two steps: draft, then self-check of the label with a rationale")]
CONSISTENCY_CHOICES = [("samples", "k samples in one request (n=k)"), ("variants", "k prompt variants")]


class JobStartForm(forms.Form):
    mode = forms.ChoiceField(choices=JobMode.choices, initial=JobMode.LABEL_CONDITIONED)
    provider = forms.ChoiceField(choices=PROVIDER_CHOICES, initial=OFFLINE)
    model_name = forms.CharField(max_length=200, required=False, help_text="For the LLM provider; empty: the default.")
    count = forms.IntegerField(min_value=1, max_value=20000, initial=50,
                               help_text="Samples to generate, or pool items to label.")
    labels = forms.MultipleChoiceField(required=False, widget=forms.CheckboxSelectMultiple,
                                       help_text="Target labels for generation; none ticked: all.")
    samples_per_request = forms.IntegerField(min_value=1, max_value=50, initial=5)
    requests_per_batch = forms.IntegerField(min_value=1, max_value=64, initial=16,
                                            help_text="Progress and steering are updated after each batch.")
    max_concurrency = forms.IntegerField(min_value=1, max_value=64, initial=8)
    exemplars = forms.IntegerField(min_value=0, max_value=10, initial=3,
                                   help_text="Accepted items of the target label shown in each prompt, rotated.")
    temperature = forms.FloatField(min_value=0, max_value=2, initial=0.9)
    steps = forms.TypedChoiceField(choices=STEP_CHOICES, coerce=int, initial=1)
    balance_project = forms.BooleanField(required=False, initial=True,
                                         label="Steer toward labels the project has fewest items of")
    response_format = forms.ChoiceField(choices=FORMAT_CHOICES, initial="json_schema")
    consistency = forms.ChoiceField(choices=CONSISTENCY_CHOICES, initial="samples",
                                    label="Confidence without logprobs")
    consistency_k = forms.IntegerField(min_value=2, max_value=10, initial=5, label="k")
    min_chars = forms.IntegerField(min_value=0, initial=10, label="Shortest text (characters)")
    max_chars = forms.IntegerField(min_value=1, initial=2000, label="Longest text (characters)")
    near_duplicate = forms.FloatField(min_value=0, max_value=1, initial=0.8,
                                      label="Near-duplicate similarity (0 = off)")
    leakage_words = forms.IntegerField(min_value=0, max_value=100, initial=8,
                                       label="Leakage: words copied verbatim from an exemplar (0 = off)")
    pii = forms.BooleanField(required=False, initial=True, label="Filter e-mail addresses, phone and card numbers")
    price_prompt_per_1k = forms.DecimalField(required=False, min_value=0, max_digits=10, decimal_places=6,
                                             label="Price per 1k prompt tokens (USD)")
    price_completion_per_1k = forms.DecimalField(required=False, min_value=0, max_digits=10, decimal_places=6,
                                                 label="Price per 1k completion tokens (USD)")
    template_system = forms.CharField(widget=forms.Textarea(attrs={"rows": 5}), label="System prompt template",
                                      initial=prompts.DEFAULT_TEMPLATES["system"])
    template_generate = forms.CharField(widget=forms.Textarea(attrs={"rows": 6}), label="Generation template",
                                        initial=prompts.DEFAULT_TEMPLATES["generate"])
    template_label = forms.CharField(widget=forms.Textarea(attrs={"rows": 4}), label="Labelling template",
                                     initial=prompts.DEFAULT_TEMPLATES["label"])
    template_check = forms.CharField(widget=forms.Textarea(attrs={"rows": 4}), label="Self-check template",
                                     initial=prompts.DEFAULT_TEMPLATES["check"])

    FIELDSETS = (
        ("What", ("mode", "provider", "model_name", "count", "labels")),
        ("Prompting", ("samples_per_request", "exemplars", "temperature", "steps", "balance_project",
                       "response_format", "consistency", "consistency_k")),
        ("Throughput and cost", ("requests_per_batch", "max_concurrency", "price_prompt_per_1k",
                                 "price_completion_per_1k")),
        ("Filters", ("min_chars", "max_chars", "near_duplicate", "leakage_words", "pii")),
    )

    def fieldsets(self):
        return [(legend, [self[name] for name in names]) for legend, names in self.FIELDSETS]

    def template_fields(self):
        return [self[f"template_{name}"] for name in prompts.TEMPLATE_NAMES]

    def __init__(self, *args, label_names=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["labels"].choices = [(name, name) for name in label_names]

    def clean(self):
        data = super().clean()
        for name in prompts.TEMPLATE_NAMES:
            text = data.get(f"template_{name}")
            if text:
                try:
                    prompts.validate_template(name, text)
                except prompts.TemplateProblem as exc:
                    self.add_error(f"template_{name}", str(exc))
        if data.get("provider") == OFFLINE and data.get("steps") == 2:
            self.add_error("steps", "The self-check needs an LLM; offline augmentation cannot check labels.")
        if data.get("provider") == OFFLINE and data.get("mode") != JobMode.LABEL_POOL and not data.get("exemplars"):
            self.add_error("exemplars", "Offline augmentation works from accepted seed examples; use at least 1.")
        if data.get("min_chars") is not None and data.get("max_chars") is not None \
                and data["min_chars"] >= data["max_chars"]:
            self.add_error("max_chars", "Must be larger than the shortest text.")
        return data

    def options(self) -> dict:
        d = self.cleaned_data
        keys = ("count", "labels", "samples_per_request", "requests_per_batch", "max_concurrency", "exemplars",
                "temperature", "steps", "balance_project", "response_format", "consistency", "consistency_k",
                "price_prompt_per_1k", "price_completion_per_1k")
        options = {key: d[key] for key in keys}
        options["filters"] = {key: d[key] for key in ("min_chars", "max_chars", "near_duplicate", "leakage_words",
                                                      "pii")}
        # Only templates that differ from the defaults are stored: the job page then shows what was customised.
        options["templates"] = {
            name: d[f"template_{name}"].replace("\r\n", "\n") for name in prompts.TEMPLATE_NAMES
            if d.get(f"template_{name}") and d[f"template_{name}"].replace("\r\n", "\n")
            != prompts.DEFAULT_TEMPLATES[name]
        }
        return options

    def job_kwargs(self) -> dict:
        d = self.cleaned_data
        return {"mode": d["mode"], "provider": d["provider"],
                "model_name": d["model_name"] if d["provider"] == OPENAI else "", "options": self.options()}
