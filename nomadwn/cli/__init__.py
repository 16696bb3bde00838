"""The ``nomadwn`` commands, one module per verb or area; ``typer_cli.py`` assembles them.

See the docstring of ``typer_cli`` for how to add a command.
"""
