from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "facecurate.accounts"
    label = "accounts"
    verbose_name = "Accounts and roles"
