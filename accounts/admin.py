from allauth.account.adapter import get_adapter
from django import forms
from django.contrib import admin
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin

from billing.admin import SavesEditedFieldsOnly
from billing.models import Wallet

from .apikeys import revoke_api_key, validate_networks
from .models import ApiKey, User


class RateLimitedAdminLoginForm(AdminAuthenticationForm):
    """The admin's login, limited like the site's: the password is checked through allauth's
    authenticate(), which counts failed attempts per client IP and per e-mail in the cache
    (ACCOUNT_RATE_LIMITS["login_failed"]: 10 a minute per IP, 5 per 5 minutes per address) and
    refuses further tries, the right password included, until the window passes."""

    def clean(self):
        email = self.cleaned_data.get("username")
        password = self.cleaned_data.get("password")
        if email and password:
            # Raises "Too many failed login attempts" once a limit is reached.
            self.user_cache = get_adapter(self.request).authenticate(self.request, email=email, password=password)
            if self.user_cache is None:
                raise self.get_invalid_login_error()
            self.confirm_login_allowed(self.user_cache)
        return self.cleaned_data


admin.site.login_form = RateLimitedAdminLoginForm


@admin.register(User)
class UserAdmin(SavesEditedFieldsOnly, DjangoUserAdmin):
    # Edited fields only: a whole-row save would write back a webhook secret the user rotated meanwhile.
    ordering = ["-date_joined"]
    list_display = ["email", "balance", "is_active", "is_staff", "date_joined"]
    list_filter = ["is_active", "is_staff", "date_joined"]
    search_fields = ["email", "first_name", "last_name"]
    readonly_fields = ["balance", "last_login", "date_joined"]
    fieldsets = [
        (None, {"fields": ["email", "password", "balance"]}),
        ("Personal info", {"fields": ["first_name", "last_name"]}),
        ("Permissions", {"fields": ["is_active", "is_staff", "is_superuser", "groups", "user_permissions"]}),
        ("Dates", {"fields": ["last_login", "date_joined"]}),
    ]
    add_fieldsets = [(None, {"classes": ["wide"], "fields": ["email", "password1", "password2"]})]

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("wallet")

    @admin.display(description="Balance (USD)")
    def balance(self, user):
        try:
            return user.wallet.balance
        except Wallet.DoesNotExist:
            return "0"


@admin.register(ApiKey)
class ApiKeyAdmin(SavesEditedFieldsOnly, admin.ModelAdmin):
    # Edited fields only: revoked_at, spent_total_usd and last_used_at are never written by the form,
    # so a save can neither un-revoke a key nor roll back the charges counted against its caps.
    # The hash is never shown: it is useless to an admin and should not travel further than needed.
    list_display = ["prefix", "name", "user", "is_test", "created_at", "last_used_at", "expires_at", "revoked_at",
                    "spent_total_usd", "spend_cap_total_usd"]
    list_filter = ["is_test", "revoked_at", "created_at", "expires_at"]
    search_fields = ["prefix", "name", "user__email"]
    fields = ["user", "name", "prefix", "is_test", "created_at", "last_used_at", "revoked_at",
              "expires_at", "allowed_networks", "spend_cap_daily_usd", "spend_cap_total_usd", "spent_total_usd"]
    readonly_fields = ["user", "prefix", "is_test", "created_at", "last_used_at", "revoked_at", "spent_total_usd"]

    def get_form(self, request, obj=None, **kwargs):
        form = super().get_form(request, obj, **kwargs)

        def clean_allowed_networks(self):
            try:
                return validate_networks(self.cleaned_data["allowed_networks"])
            except ValueError as exc:
                raise forms.ValidationError(str(exc)) from None

        form.clean_allowed_networks = clean_allowed_networks
        return form
    list_select_related = ["user"]
    actions = ["revoke"]

    def has_add_permission(self, request):
        return False  # keys are created by their owner (dashboard) or `manage.py createapikey`

    @admin.action(description="Revoke selected keys")
    def revoke(self, request, queryset):
        count = sum(revoke_api_key(api_key=api_key) for api_key in queryset)
        self.message_user(request, f"Revoked {count} key(s).")
