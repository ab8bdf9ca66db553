"""Validation for the dashboard's one form, the gold test set upload (kept apart from the shared forms module)."""
from django import forms

from annotation.dashboard.evaluation import MAX_GOLD_BYTES


class GoldUploadForm(forms.Form):
    file = forms.FileField(label="Gold test set (.csv or .jsonl with text and label)")

    def clean_file(self):
        upload = self.cleaned_data["file"]
        if not upload.name.lower().endswith((".csv", ".jsonl")):
            raise forms.ValidationError("Upload a .csv or .jsonl file.")
        if upload.size > MAX_GOLD_BYTES:
            raise forms.ValidationError(f"The file is larger than {MAX_GOLD_BYTES // (1024 * 1024)} MB.")
        return upload
