from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "facecurate.accounts"
    label = "accounts"
    verbose_name = "Accounts and roles"

    def ready(self):
        from django.contrib.auth.signals import user_logged_in, user_login_failed

        from . import lockout

        user_login_failed.connect(lockout.on_login_failed, dispatch_uid="facecurate-lockout-failed")
        user_logged_in.connect(lockout.on_logged_in, dispatch_uid="facecurate-lockout-reset")
