from django.contrib import admin
from django.db.models import Count, OuterRef, Subquery
from django.utils.html import format_html

from . import images
from .models import ContentPolicyRefusal, Generation, IdempotencyRecord


@admin.register(Generation)
class GenerationAdmin(admin.ModelAdmin):
    list_display = ["created_at", "thumbnail", "user", "status", "error_code", "orientation", "backend",
                    "cost_usd", "backend_cost_usd", "total_ms", "is_test"]
    list_filter = ["status", "error_code", "orientation", "backend", "is_test", "allow_nsfw", "created_at"]
    search_fields = ["id", "user__email", "prompt", "request_id", "api_key__prefix"]
    list_select_related = ["user", "api_key"]
    date_hierarchy = "created_at"
    readonly_fields = [field.name for field in Generation._meta.fields] + ["preview"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description="Image")
    def thumbnail(self, generation):
        if not generation.image:
            return "—"
        return format_html('<img src="{}" alt="" style="height:48px;border-radius:4px">', images.image_url(generation.image))

    @admin.display(description="Preview")
    def preview(self, generation):
        if not generation.image:
            return "—"
        return format_html('<img src="{}" alt="" style="max-width:400px">', images.image_url(generation.image))


@admin.register(IdempotencyRecord)
class IdempotencyRecordAdmin(admin.ModelAdmin):
    list_display = ["created_at", "user", "key", "status_code"]
    search_fields = ["user__email", "key"]
    readonly_fields = ["user", "key", "request_hash", "status_code", "response_body", "created_at"]


@admin.register(ContentPolicyRefusal)
class ContentPolicyRefusalAdmin(admin.ModelAdmin):
    """Who asked for what the content policy refuses, and how often (the prompt is not kept)."""

    list_display = ["created_at", "user", "refusals_by_user", "endpoint", "minor_term", "sexual_term", "api_key"]
    list_filter = ["endpoint", "created_at"]
    search_fields = ["user__email", "api_key__prefix", "prompt_sha256"]
    list_select_related = ["user", "api_key"]
    date_hierarchy = "created_at"
    readonly_fields = [field.name for field in ContentPolicyRefusal._meta.fields]

    def get_queryset(self, request):
        per_user = (ContentPolicyRefusal.objects.filter(user=OuterRef("user")).values("user")
                    .annotate(n=Count("pk")).values("n"))
        return super().get_queryset(request).annotate(user_refusals=Subquery(per_user))

    @admin.display(description="Refusals of this user", ordering="user_refusals")
    def refusals_by_user(self, refusal):
        return refusal.user_refusals

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
