"""The contract suite now ships as ``brokerq.testing.contract``; kept here so tests import it
as before."""

from brokerq.testing.contract import *  # noqa: F403
from brokerq.testing.contract import __all__  # noqa: F401
