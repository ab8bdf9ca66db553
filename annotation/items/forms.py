"""Validation for the lead's item browser filters."""
from django import forms

from annotation.models import Source, Status


class BrowseFilterForm(forms.Form):
    status = forms.ChoiceField(choices=[("", "Any status"), *Status.choices], required=False)
    source = forms.ChoiceField(choices=[("", "Any source"), *Source.choices], required=False)
    label = forms.ChoiceField(required=False)
    q = forms.CharField(required=False, max_length=200, label="Text contains")
    after = forms.IntegerField(required=False, min_value=0, widget=forms.HiddenInput)
    before = forms.IntegerField(required=False, min_value=0, widget=forms.HiddenInput)

    def __init__(self, *args, label_names: list[str], **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["label"].choices = [("", "Any label"), *((name, name) for name in label_names)]
