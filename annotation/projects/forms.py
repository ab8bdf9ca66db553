"""Validation only; the writes happen in services."""
from django import forms
from django.contrib.auth.forms import UserCreationForm

from annotation.models import Role, RoutingMode


class MemberAddForm(forms.Form):
    identifier = forms.CharField(label="Username or e-mail", max_length=254)
    role = forms.ChoiceField(choices=Role.choices, initial=Role.ANNOTATOR)


class MemberRoleForm(forms.Form):
    role = forms.ChoiceField(choices=Role.choices)


class InvitationForm(forms.Form):
    role = forms.ChoiceField(choices=Role.choices, initial=Role.ANNOTATOR)
    email = forms.EmailField(required=False, label="For (e-mail, optional)",
                             help_text="A note for you; whoever has the link can use it.")
    days = forms.IntegerField(min_value=1, max_value=30, initial=7, label="Valid for (days)")


class InvitationAcceptForm(UserCreationForm):
    """A new account from an invitation: a username (unique ignoring case), an e-mail address for password resets,
    and a password that passes the project's password validators (settings.AUTH_PASSWORD_VALIDATORS)."""

    email = forms.EmailField(help_text="Used only to reset your password if you forget it.")

    class Meta(UserCreationForm.Meta):
        fields = ("username", "email")


class ProjectCreateForm(forms.Form):
    name = forms.CharField(max_length=200)
    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 4}), required=False,
                                  label="Task description")
    multi_label = forms.BooleanField(required=False, label="Items may have several labels")


# --- Project set-up: settings, labels, attribute dimensions (services in annotation/projects/schema.py) ---

def _lines_or_commas(value: str) -> list[str]:
    """Split a textarea of values, one per line or separated by commas, dropping blanks."""
    parts = value.replace(",", "\n").splitlines()
    return [p.strip() for p in parts if p.strip()]


class ProjectSettingsForm(forms.Form):
    name = forms.CharField(max_length=200)
    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 5}), required=False, label="Task description",
                                  help_text="Becomes the LLM's system prompt.")
    guidelines = forms.CharField(widget=forms.Textarea(attrs={"rows": 8}), required=False, max_length=20_000,
                                 label="Guidelines for reviewers",
                                 help_text="Shown beside the review queue (key g). Plain text or simple Markdown: "
                                           "**bold**, *italic*, `code`, lists starting with - or 1., "
                                           "[links](https://...).")
    multi_label = forms.BooleanField(required=False, label="Items may have several labels")
    routing_mode = forms.ChoiceField(choices=RoutingMode.choices, label="Routing")
    review_budget = forms.FloatField(min_value=0, max_value=1, label="Review budget",
                                     help_text="Share of scored items sent to people (0-1), in budget mode.")
    review_threshold = forms.FloatField(min_value=0, max_value=1, label="Review threshold",
                                        help_text="Ambiguity above which an item is reviewed (0-1), in threshold mode.")
    audit_rate = forms.FloatField(min_value=0, max_value=1, label="Audit rate",
                                  help_text="Share of would-be auto-accepted items reviewed anyway, to measure "
                                            "accuracy.")
    target_accuracy = forms.FloatField(min_value=0.5, max_value=1, label="Target accuracy",
                                       help_text="In target mode, items are auto-accepted only as far as the whole "
                                                 "dataset stays at or above it with 95% confidence.")
    review_cap = forms.IntegerField(min_value=1, max_value=10_000_000, required=False, label="Review cap",
                                    help_text="At most this many items reviewed by people in total; empty: no cap.")
    retrain_every = forms.IntegerField(min_value=1, max_value=100000, label="Retrain after this many reviews")
    overlap_rate = forms.FloatField(min_value=0, max_value=1, label="Overlap rate",
                                    help_text="Share of items reviewed by several people, for agreement measures.")
    overlap_k = forms.IntegerField(min_value=2, max_value=10, label="Reviewers per overlapping item")


class LabelForm(forms.Form):
    name = forms.CharField(max_length=100)
    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), required=False)
    label_words = forms.CharField(required=False, label="Label words",
                                  help_text="Words that express the label in prompts, separated by commas.")
    hotkey = forms.CharField(max_length=1, required=False, help_text="One letter or digit; not a, e, g, r, s or u.")
    color = forms.RegexField(regex=r"^#[0-9a-fA-F]{6}$", initial="#4c6ef5", label="Colour",
                             widget=forms.TextInput(attrs={"type": "color"}),
                             error_messages={"invalid": "A colour is written #rrggbb."})
    order = forms.IntegerField(min_value=0, max_value=10000, required=False)

    def clean_label_words(self):
        return _lines_or_commas(self.cleaned_data["label_words"])


class LabelDeleteForm(forms.Form):
    merge_into = forms.ModelChoiceField(queryset=None, required=False, label="Merge its items into",
                                        empty_label="(nothing: delete only if unused)")

    def __init__(self, *args, label, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["merge_into"].queryset = label.project.labels.exclude(pk=label.pk)


class AttributeForm(forms.Form):
    name = forms.CharField(max_length=100)
    values = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}),
                             help_text="One value per line (or separated by commas).")

    def clean_values(self):
        return _lines_or_commas(self.cleaned_data["values"])
