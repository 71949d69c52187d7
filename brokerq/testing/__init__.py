"""Helpers for testing brokerq and the backends against real servers.

``brokerq.testing.servers``: where the local services are (beanstalkd, Redis, Kafka), probes
that say whether they answer, and set-up / clean-up of the names a test or a benchmark uses
(Kafka topics, beanstalkd tubes, Redis key prefixes). Nothing here imports pytest.
"""
