"""Command line commands (placeholder until this group's commands are written)."""


def register(subparsers) -> None:
    pass
