from django import forms
from django.conf import settings


class TopUpForm(forms.Form):
    amount = forms.DecimalField(label="Amount (USD)", max_digits=7, decimal_places=2)

    def clean_amount(self):
        amount = self.cleaned_data["amount"]
        low, high = settings.STRIPE_MIN_TOPUP_USD, settings.STRIPE_MAX_TOPUP_USD
        if not low <= amount <= high:
            raise forms.ValidationError(f"Choose an amount between ${low} and ${high}.")
        return amount


class LowBalanceAlertForm(forms.Form):
    threshold = forms.DecimalField(
        label="E-mail me when my balance falls below (USD)", required=False, min_value=0, max_value=100000,
        max_digits=9, decimal_places=2, help_text="Leave empty for no alert. You are also told when it runs out.",
    )
