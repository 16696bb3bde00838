"""``python -m nomadwn``: the same CLI as the ``nomadwn`` command."""

from typer_cli import main

main()
