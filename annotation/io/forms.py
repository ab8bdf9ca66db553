"""Validation for the import upload and the export filters; the work happens in importing.py / exporting.py."""
from django import forms
from django.conf import settings

from annotation.io.exporting import EXPORT_FORMATS, ExportFilters
from annotation.io.importing import extensions
from annotation.models import Source, Status


class ImportForm(forms.Form):
    file = forms.FileField(help_text="CSV with a header row, or JSONL (one JSON object per line); UTF-8.")
    text_column = forms.CharField(max_length=200, initial="text")
    label_column = forms.CharField(max_length=200, required=False, label="Gold/seed label column",
                                   help_text="Rows with a label here are stored as human-verified (accepted).")
    llm_label_column = forms.CharField(max_length=200, required=False, label="LLM label column")
    llm_confidence_column = forms.CharField(max_length=200, required=False, label="LLM confidence column")
    duplicates = forms.ChoiceField(
        choices=[("skip", "Skip duplicate texts"), ("keep", "Keep duplicate texts")], initial="skip",
        widget=forms.RadioSelect, help_text="A duplicate repeats an earlier row or an item already in the project.",
    )

    def clean_file(self):
        upload = self.cleaned_data["file"]
        if upload.size > settings.MAX_UPLOAD_BYTES:
            raise forms.ValidationError(
                f"The file is {upload.size / 1e6:.1f} MB; uploads are limited to "
                f"{settings.MAX_UPLOAD_BYTES / 1e6:.1f} MB. Split it, or import it with manage.py import_items."
            )
        if not upload.name.lower().endswith(tuple(extensions())):
            raise forms.ValidationError(f"Upload a file whose name ends in {', '.join(extensions())}.")
        return upload


class ExportForm(forms.Form):
    format = forms.ChoiceField(choices=lambda: [(f.name, f.label) for f in EXPORT_FORMATS.values()], initial="csv")
    include = forms.ChoiceField(
        choices=[("verified", "Verified items only: accepted by a person, or auto-accepted while the target is "
                              "certified"),
                 ("all", "Everything, with a verified column saying which rows are")],
        initial="verified", required=False, widget=forms.RadioSelect, label="Items",
    )
    status = forms.MultipleChoiceField(choices=Status.choices, required=False,
                                       widget=forms.CheckboxSelectMultiple,
                                       help_text="Ticked: exactly these statuses. None ticked: as chosen above.")
    source = forms.ChoiceField(choices=[("", "any")] + list(Source.choices), required=False)
    label = forms.ChoiceField(required=False, help_text="Only items that carry this label (final, else proposed).")
    created_from = forms.DateField(required=False, label="Created on or after",
                                   widget=forms.DateInput(attrs={"type": "date"}))
    created_to = forms.DateField(required=False, label="Created on or before",
                                 widget=forms.DateInput(attrs={"type": "date"}))
    provenance = forms.BooleanField(required=False, label="Add provenance columns",
                                    help_text="Creation time, job, prompt conditions, model, scores, last reviewer "
                                              "and action.")

    def __init__(self, *args, project, **kwargs):
        super().__init__(*args, **kwargs)
        names = project.labels.values_list("name", flat=True)
        self.fields["label"].choices = [("", "any")] + [(n, n) for n in names]

    def clean_include(self):
        # A form sent without the choice (an older link, a script) gets the safe default.
        return self.cleaned_data["include"] or "verified"

    def export_filters(self) -> ExportFilters:
        """The cleaned filters as the export takes them (the page and the API)."""
        data = self.cleaned_data
        return ExportFilters(statuses=tuple(data["status"]), source=data["source"], label=data["label"],
                             created_from=data["created_from"], created_to=data["created_to"],
                             verified_only=data["include"] == "verified" and not data["status"],
                             mark_verified=data["include"] == "all")

    @property
    def formats(self):
        """For the page: what each format is, and the audit log's download links."""
        return EXPORT_FORMATS.values()
