"""Placeholder until implemented."""


def register(subcommands) -> None:
    pass
