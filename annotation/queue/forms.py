"""Validation for the review queue's actions."""
from django import forms

from annotation.models import RejectReason
from annotation.queue.services import ACTIONS


class ReviewActionForm(forms.Form):
    """One form carries every action; the submit button that was pressed names it (``action``)."""

    action = forms.ChoiceField(choices=[(a, a) for a in ACTIONS])
    version = forms.IntegerField(min_value=1, widget=forms.HiddenInput)
    labels = forms.MultipleChoiceField(required=False)
    text = forms.CharField(required=False, strip=False, max_length=20_000)
    reason = forms.ChoiceField(choices=[("", "—"), *RejectReason.choices], required=False)
    note = forms.CharField(required=False, max_length=2_000)
    time_spent_ms = forms.IntegerField(required=False, min_value=0, max_value=24 * 3600 * 1000)

    def __init__(self, *args, label_names: list[str], **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["labels"].choices = [(name, name) for name in label_names]

    def clean(self):
        data = super().clean()
        if data.get("action") == "reject" and not data.get("reason"):
            self.add_error("reason", "Pick a reason for rejecting the item.")
        return data
