"""Validation of the webhook form; the URL's address check is the service's (it resolves the host)."""
from django import forms

from annotation.events import EVENTS
from synthstudio.webhooks.sending import MAX_URL_LENGTH


class WebhookForm(forms.Form):
    url = forms.CharField(label="URL", max_length=MAX_URL_LENGTH,
                          help_text="An http:// or https:// address that accepts a POST with a JSON body.")
    events = forms.MultipleChoiceField(choices=[(name, f"{name}: {sentence}") for name, sentence in EVENTS.items()],
                                       widget=forms.CheckboxSelectMultiple)
    active = forms.BooleanField(required=False, initial=True, help_text="Switched off, it receives nothing.")

    def save_kwargs(self) -> dict:
        data = self.cleaned_data
        return {"url": data["url"], "events": data["events"], "active": data["active"]}


class WebhookEditForm(WebhookForm):
    new_secret = forms.BooleanField(required=False, label="Generate a new secret",
                                    help_text="The old secret stops working at once; give the new one to the receiver.")

    def save_kwargs(self) -> dict:
        return {**super().save_kwargs(), "new_secret": self.cleaned_data["new_secret"]}
