"""Validation of the lead's answer to a paused auto-accept."""
from django import forms


class AutoAcceptDecisionForm(forms.Form):
    decision = forms.ChoiceField(choices=[("resume", "Resume auto-accept"), ("keep", "Keep paused")])
