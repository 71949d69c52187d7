"""``python -m brokerq`` is the ``brokerq`` command."""

from brokerq.cli import main

main()
