from django.contrib import admin

from annotation.models import AttributeDimension, ImportJob, Item, Label, Membership, Project, Review, ScoringRound


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    raw_id_fields = ["user"]


class LabelInline(admin.TabularInline):
    model = Label
    extra = 0


class ProjectPartAdmin(admin.ModelAdmin):
    """Rows of one project: the project is picked by id, as a list of every project would not scale."""

    raw_id_fields = ["project"]


class KeptAdmin(admin.ModelAdmin):
    """Items and their reviews are the dataset and its audit log: nobody deletes them here."""

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ["name", "multi_label", "routing_mode", "created_at", "archived_at"]
    search_fields = ["name"]
    inlines = [MembershipInline, LabelInline]


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "project", "role"]
    list_filter = ["role"]
    raw_id_fields = ["user", "project"]


@admin.register(Label)
class LabelAdmin(ProjectPartAdmin):
    list_display = ["name", "project", "hotkey", "order"]


@admin.register(AttributeDimension)
class AttributeDimensionAdmin(ProjectPartAdmin):
    list_display = ["name", "project", "order"]


@admin.register(Item)
class ItemAdmin(KeptAdmin):
    list_display = ["id", "project", "status", "source", "short_text", "ambiguity"]
    list_filter = ["status", "source"]
    search_fields = ["text"]
    raw_id_fields = ["project", "claimed_by"]
    # Status changes go through services so that each leaves a Review row; the admin may not bypass that.
    readonly_fields = ["status", "version", "content_hash", "final_labels"]
    show_full_result_count = False

    @admin.display(description="text")
    def short_text(self, obj):
        return obj.text[:80]


@admin.register(Review)
class ReviewAdmin(KeptAdmin):
    list_display = ["id", "item_id", "user", "action", "reason", "created_at"]
    list_filter = ["action"]
    raw_id_fields = ["item", "project", "user"]
    show_full_result_count = False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(ScoringRound)
class ScoringRoundAdmin(ProjectPartAdmin):
    list_display = ["project", "model_version", "state", "training_size", "duration_s", "started_at"]


@admin.register(ImportJob)
class ImportJobAdmin(admin.ModelAdmin):
    list_display = ["project", "file_name", "state", "rows_done", "rows_total", "created_at"]
    raw_id_fields = ["project", "created_by"]
