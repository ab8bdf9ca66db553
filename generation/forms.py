"""The start form of a job and the form of an LLM connection. The job form's limits come from the typed options
(``generation.config``), its provider choices from the registry, its connection choices from the project, and its checks
are ``options_validate`` (against what a probe found the connection's endpoint does) and ``connection_problem``: the form
only lays the fields out and puts each problem next to its field. ``job_kwargs()`` is what ``services.job_create``
takes."""
from django import forms
from django.conf import settings

from generation import connections, prompts
from generation.config import (
    CONSISTENCY_CHOICES,
    PRICE_DIGITS,
    PRICE_PLACES,
    RESPONSE_FORMAT_CHOICES,
    FilterOptions,
    JobConfigError,
    JobOptions,
    form_limits,
    options_validate,
)
from generation.models import JobMode, LLMConnection
from generation.providers import PROVIDERS, provider_choices

STEP_CHOICES = [(1, "One step: draft"), (2, "Two steps: draft, then self-check of the label with a rationale")]
OPTION_FIELDS = ("count", "labels", "samples_per_request", "requests_per_batch", "max_concurrency", "exemplars",
                 "temperature", "steps", "balance_project", "response_format", "consistency", "consistency_k",
                 "price_prompt_per_1k", "price_completion_per_1k")


def _option(name, **kwargs):
    return form_limits(JobOptions, name) | kwargs


def _filter(name, **kwargs):
    return form_limits(FilterOptions, name) | kwargs


class JobStartForm(forms.Form):
    mode = forms.ChoiceField(choices=JobMode.choices, initial=JobMode.LABEL_CONDITIONED)
    provider = forms.ChoiceField()
    connection = forms.ChoiceField(required=False, label="LLM connection",
                                   help_text="Where an LLM provider sends its requests (the Connections page lists "
                                             "and tests them).")
    model_name = forms.CharField(max_length=200, required=False,
                                 help_text="For an LLM provider; empty: the connection's model.")
    count = forms.IntegerField(**_option("count", help_text="Samples to generate, or pool items to label."))
    labels = forms.MultipleChoiceField(required=False, widget=forms.CheckboxSelectMultiple,
                                       help_text="Target labels for generation; none ticked: all.")
    samples_per_request = forms.IntegerField(**_option("samples_per_request"))
    requests_per_batch = forms.IntegerField(**_option(
        "requests_per_batch", help_text="Progress and steering are updated after each batch."))
    max_concurrency = forms.IntegerField(**_option("max_concurrency"))
    exemplars = forms.IntegerField(**_option(
        "exemplars", help_text="Accepted items of the target label shown in each prompt, rotated."))
    temperature = forms.FloatField(**_option("temperature"))
    steps = forms.TypedChoiceField(choices=STEP_CHOICES, coerce=int, initial=1)
    balance_project = forms.BooleanField(required=False, initial=True,
                                         label="Steer toward labels the project has fewest items of")
    response_format = forms.ChoiceField(choices=list(RESPONSE_FORMAT_CHOICES.items()), initial="auto")
    consistency = forms.ChoiceField(choices=list(CONSISTENCY_CHOICES.items()), initial="samples",
                                    label="Confidence without logprobs")
    consistency_k = forms.IntegerField(**_option("consistency_k", label="k"))
    min_chars = forms.IntegerField(**_filter("min_chars", label="Shortest text (characters)"))
    max_chars = forms.IntegerField(**_filter("max_chars", label="Longest text (characters)"))
    near_duplicate = forms.FloatField(**_filter("near_duplicate", label="Near-duplicate similarity (0 = off)"))
    leakage_words = forms.IntegerField(**_filter(
        "leakage_words", label="Leakage: words copied verbatim from an exemplar (0 = off)"))
    pii = forms.BooleanField(required=False, initial=True,
                             label="Filter e-mail addresses, IBANs, phone and card numbers")
    price_prompt_per_1k = forms.DecimalField(**_option(
        "price_prompt_per_1k", required=False, max_digits=PRICE_DIGITS, decimal_places=PRICE_PLACES,
        label="Price per 1k prompt tokens (USD)"))
    price_completion_per_1k = forms.DecimalField(**_option(
        "price_completion_per_1k", required=False, max_digits=PRICE_DIGITS, decimal_places=PRICE_PLACES,
        label="Price per 1k completion tokens (USD)"))
    template_system = forms.CharField(widget=forms.Textarea(attrs={"rows": 5}), label="System prompt template",
                                      initial=prompts.DEFAULT_TEMPLATES["system"])
    template_generate = forms.CharField(widget=forms.Textarea(attrs={"rows": 6}), label="Generation template",
                                        initial=prompts.DEFAULT_TEMPLATES["generate"])
    template_label = forms.CharField(widget=forms.Textarea(attrs={"rows": 4}), label="Labelling template",
                                     initial=prompts.DEFAULT_TEMPLATES["label"])
    template_check = forms.CharField(widget=forms.Textarea(attrs={"rows": 4}), label="Self-check template",
                                     initial=prompts.DEFAULT_TEMPLATES["check"])

    FIELDSETS = (
        ("What", ("mode", "provider", "connection", "model_name", "count", "labels")),
        ("Prompting", ("samples_per_request", "exemplars", "temperature", "steps", "balance_project",
                       "response_format", "consistency", "consistency_k")),
        ("Throughput and cost", ("requests_per_batch", "max_concurrency", "price_prompt_per_1k",
                                 "price_completion_per_1k")),
        ("Filters", tuple(FilterOptions.model_fields)),
    )

    def fieldsets(self):
        return [(legend, [self[name] for name in names]) for legend, names in self.FIELDSETS]

    def template_fields(self):
        return [self[f"template_{name}"] for name in prompts.TEMPLATE_NAMES]

    def __init__(self, *args, project, label_names=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["provider"].choices = provider_choices()
        # The deployment's preference (a system check refuses an unregistered name at start-up).
        self.fields["provider"].initial = settings.LLM_PROVIDER
        choices, initial = connections.connection_choices(project=project)
        self.fields["connection"].choices = choices
        self.fields["connection"].initial = initial
        self.fields["labels"].choices = [(name, name) for name in label_names]
        self.project = project
        self.options: JobOptions | None = None
        self.llm_connection: LLMConnection | None = None

    def clean(self):
        data = super().clean()
        options = {name: data[name] for name in OPTION_FIELDS if name in data}
        options["filters"] = {name: data[name] for name in FilterOptions.model_fields if name in data}
        options["templates"] = {name: data[f"template_{name}"] for name in prompts.TEMPLATE_NAMES
                                if f"template_{name}" in data}
        provider = PROVIDERS.get(data.get("provider", ""))
        capabilities, endpoint_name = None, ""
        if provider is not None and provider.capabilities.is_llm and "connection" in data:
            chosen = data["connection"]
            self.llm_connection = connections.connection_get(project=self.project, connection_id=int(chosen)) \
                if chosen else None
            problem = connections.connection_problem(connection=self.llm_connection)
            if problem:
                self.add_error("connection", problem)
            endpoint = connections.endpoint_of(self.llm_connection)
            capabilities, endpoint_name = connections.probed_capabilities(endpoint=endpoint)[0], endpoint.name
        try:
            self.options = options_validate(mode=data.get("mode", ""), provider=data.get("provider", ""),
                                            options=options, capabilities=capabilities, endpoint_name=endpoint_name)
        except JobConfigError as exc:
            for path, message in exc.problems:
                name = self._field_name(path)
                # A field Django already refused was left out, so its default may have caused a second complaint.
                if name is None or name not in self.errors:
                    self.add_error(name, message)
        return data

    def _field_name(self, path: str) -> str | None:
        """The form field showing the option at ``path`` ("filters.min_chars" -> "min_chars"), None for the form."""
        head, _, rest = path.partition(".")
        name = {"filters": rest.partition(".")[0], "templates": f"template_{rest.partition('.')[0]}"}.get(head, head)
        return name if name in self.fields else None

    def job_kwargs(self) -> dict:
        d = self.cleaned_data
        return {"mode": d["mode"], "provider": d["provider"], "model_name": d["model_name"], "options": self.options,
                "connection": self.llm_connection}


def job_form_data(*, mode: str, provider: str, options: JobOptions, connection: str = "", model_name: str = "") -> dict:
    """The start form's data for typed options (the API and ``manage.py start_job``), so that they are checked by this
    form exactly as a lead's are; ``connection`` is a connection's id as text, "" for the deployment's default."""
    data = {"mode": mode, "provider": provider, "model_name": model_name, "connection": connection,
            **{name: getattr(options, name) for name in OPTION_FIELDS}, "labels": list(options.labels),
            **options.filters.model_dump()}
    data.update({f"template_{name}": text for name, text in prompts.templates_with_defaults(options.templates).items()})
    return data


class ConnectionForm(forms.Form):
    """An LLM connection; ``connections.connection_save`` checks it and names the field of each problem."""

    name = forms.CharField(max_length=100)
    base_url = forms.CharField(max_length=500, label="Base URL",
                               help_text="The server's OpenAI-compatible root, e.g. http://127.0.0.1:8080/v1.")
    model = forms.CharField(max_length=200, help_text="As the server names it (GET /v1/models).")
    key_variable = forms.CharField(
        max_length=100, required=False, label="Key variable",
        help_text="The NAME of the environment variable that holds the API key, never the key itself; one the "
                  "operator allows (LLM_KEY_VARIABLES). Empty: the server needs no key.")
    is_default = forms.BooleanField(required=False, label="The project's default for new jobs")

    def save_kwargs(self) -> dict:
        return dict(self.cleaned_data)
