"""brokerq_beanstalk: go-queue's dq done right -- replicated delayed jobs on beanstalkd.

Jobs are written to several beanstalkd nodes; consumers run each job once thanks to a Redis
guard (claim while running, done mark after), retry failures and bury dead letters. Delays
have sub-second precision and jobs never run early. go-queue bodies are read, and can be
written (``goqueue_compat``), so Go and Python services can share a tube.

Public face: ``BeanstalkBroker`` (what ``dq:`` in a worker YAML builds) and the go-queue names
``Producer`` (push / delay / at / revoke; also what the broker's ``producer()`` returns) and
``Consumer`` (a Worker over the broker's source). ``BeanstalkSource`` and ``Guard`` are
internals (brokerq_beanstalk.source, brokerq_beanstalk.guard).
"""

import logging as _logging

from brokerq_beanstalk.broker import BeanstalkBroker
from brokerq_beanstalk.config import Beanstalk, DqConf, RedisConf, SentinelConf
from brokerq_beanstalk.consumer import Consumer
from brokerq_beanstalk.producer import Producer

__all__ = [
    "Beanstalk",
    "BeanstalkBroker",
    "Consumer",
    "DqConf",
    "Producer",
    "RedisConf",
    "SentinelConf",
]

# A library never configures logging; without any handler Python would print WARNING and
# up to stderr by itself (its "last resort"), e.g. librdkafka's connection chatter in
# `brokerq check`. The CLI and applications configure handlers.
_logging.getLogger(__name__).addHandler(_logging.NullHandler())
