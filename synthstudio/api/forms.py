"""Validation of the token form; the writes are in tokens.py."""
from django import forms


class TokenCreateForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="What uses it, e.g. 'nightly export on build-01'.")
    expires_on = forms.DateField(required=False, label="Expires on",
                                 widget=forms.DateInput(attrs={"type": "date"}),
                                 help_text="Empty: until you revoke it.")


class TokenRevokeForm(forms.Form):
    token_id = forms.IntegerField(min_value=1)
