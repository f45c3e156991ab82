import datetime
from decimal import Decimal

from django import forms
from django.utils import timezone

from billing.models import MONEY

from .apikeys import validate_networks
from .models import ApiKey

# What a datetime-local input sends and shows: minutes, no zone (the page says UTC).
DATETIME_LOCAL = "%Y-%m-%dT%H:%M"


class ApiKeyForm(forms.Form):
    name = forms.CharField(
        max_length=ApiKey._meta.get_field("name").max_length,
        help_text="Where the key is used, so you know which one to revoke later.",
        widget=forms.TextInput(attrs={"placeholder": "e.g. Production server", "autocomplete": "off"}),
    )
    test = forms.BooleanField(
        required=False,
        label="Test key",
        help_text="Starts with ank_test_. Free: it answers with preview images, charges nothing and has a "
                  "daily quota of its own, for CI and development.",
    )


class UTCDateTimeField(forms.DateTimeField):
    """Read and shown in UTC whatever TIME_ZONE says, because the page labels it UTC."""

    def to_python(self, value):
        with timezone.override(datetime.UTC):
            return super().to_python(value)

    def prepare_value(self, value):
        with timezone.override(datetime.UTC):
            return super().prepare_value(value)


class UsdField(forms.DecimalField):
    """Shows a stored amount as people type it: 1.00, 0.009 (the column keeps 6 decimals)."""

    def prepare_value(self, value):
        if isinstance(value, Decimal):
            value = value.normalize()
            return f"{value:.2f}" if value.as_tuple().exponent >= -2 else f"{value:f}"
        return value


def _spend_cap(label, help_text):
    return UsdField(
        label=label, help_text=help_text, required=False, min_value=0, **MONEY,
        widget=forms.NumberInput(attrs={"inputmode": "decimal", "step": "any", "placeholder": "No cap"}),
    )


class KeyLimitsForm(forms.ModelForm):
    """Validates a key's limits; `apikeys.set_key_limits` stores them (never `save()`, which
    would write back a stale spent_total_usd)."""

    spend_cap_daily_usd = _spend_cap(
        "Spend cap per day (USD)",
        "Requests past it get 402 KEY_SPEND_CAP_REACHED until midnight UTC. Empty: no cap.",
    )
    spend_cap_total_usd = _spend_cap(
        "Total spend cap (USD)",
        "Over the key's whole life; requests past it get 402 KEY_SPEND_CAP_REACHED. Empty: no cap.",
    )
    expires_at = UTCDateTimeField(
        label="Expires (UTC)",
        required=False,
        input_formats=[DATETIME_LOCAL],
        help_text="From then on requests get 401 KEY_EXPIRED. Empty: never.",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format=DATETIME_LOCAL),
    )
    allowed_networks = forms.CharField(
        label="Allowed IP networks",
        required=False,
        help_text="Comma-separated addresses or CIDR networks, e.g. 203.0.113.0/24, 2001:db8::/32. Requests "
                  "from anywhere else get 403 IP_NOT_ALLOWED. Empty: any address.",
        widget=forms.TextInput(attrs={"placeholder": "Any address", "autocomplete": "off", "spellcheck": "false"}),
    )

    class Meta:
        model = ApiKey
        fields = ["spend_cap_daily_usd", "spend_cap_total_usd", "expires_at", "allowed_networks"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.is_test:
            # Test keys are never charged, so a spend cap could never apply.
            del self.fields["spend_cap_daily_usd"], self.fields["spend_cap_total_usd"]

    def clean_expires_at(self):
        expires_at = self.cleaned_data["expires_at"]
        current = self.instance.expires_at
        if current is not None and expires_at == current.replace(second=0, microsecond=0):
            return current  # unchanged (the input drops seconds), even if already past
        if expires_at is not None and expires_at <= timezone.now():
            raise forms.ValidationError("Pick a time in the future. To stop the key now, revoke it.")
        return expires_at

    def clean_allowed_networks(self):
        try:
            return validate_networks(self.cleaned_data["allowed_networks"])
        except ValueError as exc:
            raise forms.ValidationError(str(exc)) from None
