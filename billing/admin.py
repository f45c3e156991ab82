import json
import uuid
from decimal import InvalidOperation

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import FieldDoesNotExist
from django.shortcuts import render
from django.utils.html import format_html

from . import ledger
from .models import AccountFlag, AutoRecharge, LedgerEntry, Recharge, StripeCustomer, StripeEvent, TopUp, Wallet


class AdjustmentForm(forms.Form):
    amount = forms.DecimalField(max_digits=18, decimal_places=6, help_text="USD; negative to take money")
    memo = forms.CharField(max_length=255, help_text="Why: shown on the user's ledger")


def edited_columns(*, instance, form) -> list[str]:
    """The database columns an admin form changed: its changed_data, less anything that is not a
    concrete, non-m2m field of the model (many-to-many rows are saved by save_related)."""
    columns = []
    for name in form.changed_data:
        try:
            field = instance._meta.get_field(name)
        except FieldDoesNotExist:
            continue
        if field.concrete and not field.many_to_many:
            columns.append(field.attname)
    return columns


class SavesEditedFieldsOnly:
    """An admin whose change form writes only the columns it edited (`update_fields`).

    ModelAdmin.save_model() saves the whole row as it was read at the start of the POST, so a
    charge, a top-up or a revocation committed meanwhile would be written back over: a balance
    or a spend counter rolled back, a revoked key live again. Money and counters move only through
    billing.ledger and conditional UPDATEs, never through a form; a form with nothing changed
    writes nothing. New rows (the add form) are saved whole: nobody else can have touched them.
    """

    def save_model(self, request, obj, form, change):
        if not change:
            return super().save_model(request, obj, form, change)
        obj.save(update_fields=edited_columns(instance=obj, form=form))


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows written only by billing code (the ledger, what Stripe reported); staff look, they don't edit."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(LedgerEntry)
class LedgerEntryAdmin(ReadOnlyAdmin):
    """The ledger is append-only. Corrections are new entries (the wallet action)."""

    list_display = ["created_at", "user", "kind", "amount", "balance_after", "reference", "memo"]
    list_filter = ["kind", "created_at"]
    search_fields = ["user__email", "reference", "memo"]
    list_select_related = ["user"]
    date_hierarchy = "created_at"


@admin.register(Wallet)
class WalletAdmin(SavesEditedFieldsOnly, admin.ModelAdmin):
    """The owner's alert threshold is the only field staff edit; the balance changes only through
    the "Adjust balance" action, which books a ledger entry."""

    list_display = ["user", "balance", "low_balance_threshold", "updated_at"]
    search_fields = ["user__email"]
    # auto_recharge_below mirrors the owner's auto-recharge settings (billing.autorecharge keeps it).
    readonly_fields = ["user", "balance", "auto_recharge_below", "updated_at"]
    list_select_related = ["user"]
    actions = ["adjust_balance"]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.action(description="Adjust balance (writes a ledger entry)")
    def adjust_balance(self, request, queryset):
        form = AdjustmentForm(request.POST if "apply" in request.POST else None)
        if "apply" in request.POST and form.is_valid():
            for wallet in queryset.select_related("user"):
                try:
                    ledger.adjust(
                        user=wallet.user,
                        amount=form.cleaned_data["amount"],
                        reference=f"adjustment:{uuid.uuid4()}",
                        memo=f"{form.cleaned_data['memo']} (by {request.user})",
                    )
                except (ValueError, InvalidOperation) as exc:
                    self.message_user(request, f"{wallet.user}: {exc}", messages.ERROR)
            self.message_user(request, f"Adjusted {queryset.count()} balance(s).")
            return None
        return render(
            request,
            "admin/billing/adjust_balance.html",
            {"form": form, "wallets": queryset, "title": "Adjust balance", "opts": self.model._meta,
             "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME},
        )


@admin.register(StripeEvent)
class StripeEventAdmin(ReadOnlyAdmin):
    list_display = ["received_at", "type", "stripe_event_id", "outcome", "processed_at", "delivery_count", "livemode"]
    list_filter = ["outcome", "type", "livemode", "received_at"]
    search_fields = ["stripe_event_id", "type", "detail"]
    date_hierarchy = "received_at"
    fields = [
        "stripe_event_id", "type", "livemode", "received_at", "delivery_count",
        "processed_at", "outcome", "detail", "pretty_payload",
    ]
    readonly_fields = fields

    @admin.display(description="Payload")
    def pretty_payload(self, obj):
        return format_html("<pre>{}</pre>", json.dumps(obj.payload, indent=2, sort_keys=True))


@admin.register(TopUp)
class TopUpAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "user", "amount", "status", "paid_at", "checkout_session_id", "payment_intent_id"]
    list_filter = ["status", "created_at"]
    search_fields = ["user__email", "checkout_session_id", "payment_intent_id"]
    list_select_related = ["user"]
    date_hierarchy = "created_at"


@admin.register(AccountFlag)
class AccountFlagAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "user", "reason", "reference", "detail", "closed_at", "resolution"]
    list_filter = ["reason", ("closed_at", admin.EmptyFieldListFilter), "resolution", "created_at"]
    search_fields = ["user__email", "reference", "detail"]
    list_select_related = ["user"]
    date_hierarchy = "created_at"


@admin.register(StripeCustomer)
class StripeCustomerAdmin(ReadOnlyAdmin):
    """Saved cards: only brand, last four and expiry are ever stored or shown."""

    list_display = ["user", "customer_id", "card_brand", "card_last4", "card_expiry", "card_saved_at"]
    search_fields = ["user__email", "customer_id"]
    list_select_related = ["user"]
    fields = ["user", "customer_id", "card_brand", "card_last4", "card_expiry", "card_saved_at"]
    readonly_fields = fields

    @admin.display(description="Expires")
    def card_expiry(self, obj):
        return f"{obj.card_exp_month:02d}/{obj.card_exp_year}" if obj.card_exp_month else "—"


@admin.register(AutoRecharge)
class AutoRechargeAdmin(ReadOnlyAdmin):
    list_display = ["user", "enabled", "threshold", "amount", "monthly_cap", "stopped_reason", "updated_at"]
    list_filter = ["enabled"]
    search_fields = ["user__email"]
    list_select_related = ["user"]


@admin.register(Recharge)
class RechargeAdmin(ReadOnlyAdmin):
    """Every auto-recharge attempt and what came of it."""

    list_display = ["created_at", "user", "amount", "status", "payment_intent_id", "failure_code", "finished_at"]
    list_filter = ["status", "created_at"]
    search_fields = ["user__email", "payment_intent_id", "failure_code"]
    list_select_related = ["user"]
    date_hierarchy = "created_at"
