"""``python -m cli`` runs the ``batchline`` command."""

from cli.main import main

main()
