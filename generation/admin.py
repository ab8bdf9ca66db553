from django.contrib import admin

from generation.models import EndpointProbe, GenerationBatch, GenerationJob, JobEvent, LLMConnection


class JobEventInline(admin.TabularInline):
    model = JobEvent
    extra = 0
    readonly_fields = ["kind", "message", "data", "created_at"]


@admin.register(GenerationJob)
class GenerationJobAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "mode", "provider", "status", "requested", "produced", "filtered", "failed"]
    list_filter = ["status", "mode", "provider"]
    raw_id_fields = ["project", "created_by"]
    inlines = [JobEventInline]


@admin.register(GenerationBatch)
class GenerationBatchAdmin(admin.ModelAdmin):
    list_display = ["job", "index", "done", "created_at"]
    raw_id_fields = ["job"]


@admin.register(LLMConnection)
class LLMConnectionAdmin(admin.ModelAdmin):
    list_display = ["name", "project", "model", "base_url", "key_variable", "is_default"]
    raw_id_fields = ["project", "created_by"]


@admin.register(EndpointProbe)
class EndpointProbeAdmin(admin.ModelAdmin):
    list_display = ["fingerprint", "base_url", "model", "finished_at"]
    readonly_fields = ["fingerprint", "base_url", "model", "requested_at", "started_at", "finished_at", "profile"]
