from django import forms

from .models import ApiKey


class ApiKeyForm(forms.Form):
    name = forms.CharField(
        max_length=ApiKey._meta.get_field("name").max_length,
        help_text="Where the key is used, so you know which one to revoke later.",
        widget=forms.TextInput(attrs={"placeholder": "e.g. Production server", "autocomplete": "off"}),
    )
