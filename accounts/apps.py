from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from allauth.account.signals import user_signed_up

        from . import schema  # noqa: F401 (registers the OpenAPI security scheme)
        from .signup import grant_signup_credit

        # allauth's hook for "an account was just created", whichever way it signed up.
        user_signed_up.connect(lambda request, user, **kwargs: grant_signup_credit(user=user),
                               dispatch_uid="accounts.signup_credit", weak=False)
