from django import forms
from django.conf import settings


from .autorecharge import MIN_THRESHOLD_USD


def _within_topup_limits(amount):
    low, high = settings.STRIPE_MIN_TOPUP_USD, settings.STRIPE_MAX_TOPUP_USD
    if not low <= amount <= high:
        raise forms.ValidationError(f"Choose an amount between ${low} and ${high}.")
    return amount


class TopUpForm(forms.Form):
    amount = forms.DecimalField(label="Amount (USD)", max_digits=7, decimal_places=2)
    save_card = forms.BooleanField(label="Save my card for auto-recharge", required=False)

    def clean_amount(self):
        return _within_topup_limits(self.cleaned_data["amount"])


class AutoRechargeForm(forms.Form):
    enabled = forms.BooleanField(label="Recharge automatically", required=False)
    threshold = forms.DecimalField(
        label="When my balance falls below (USD)", min_value=MIN_THRESHOLD_USD, max_value=100000,
        max_digits=9, decimal_places=2,
    )
    amount = forms.DecimalField(label="Add (USD)", max_digits=7, decimal_places=2)
    monthly_cap = forms.DecimalField(
        label="At most per calendar month (USD)", min_value=0, max_value=1000000, max_digits=9, decimal_places=2,
    )

    def clean_amount(self):
        return _within_topup_limits(self.cleaned_data["amount"])

    def clean(self):
        cleaned = super().clean()
        amount, cap = cleaned.get("amount"), cleaned.get("monthly_cap")
        if amount is not None and cap is not None and cap < amount:
            self.add_error("monthly_cap", "The monthly cap must allow at least one recharge.")
        return cleaned


class LowBalanceAlertForm(forms.Form):
    threshold = forms.DecimalField(
        label="E-mail me when my balance falls below (USD)", required=False, min_value=0, max_value=100000,
        max_digits=9, decimal_places=2, help_text="Leave empty for no alert. You are also told when it runs out.",
    )
