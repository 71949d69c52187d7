"""brokerq side by side with go-queue and the raw clients, against the same servers.

    bench/run [--quick] [--only kq,kqc,dq,at,embedded,rss]   # bootstrap, services, Go build, then:
    .venv/bin/python -m bench [--quick] [MEASURE ...]          # all default measures, or some
    .venv/bin/python -m bench kq-push --quick                  # one measure alone

Modules: ``cli`` (arguments, the run), ``driver`` (runs implementations, keeps samples and
figures), ``harness`` (child processes: a fresh interpreter per Python measure, the
``goqueue`` binary for go-queue), ``report`` (targets, the table, latest.json), ``machine``
(facts about the machine and the servers), ``timing`` (what a measure counts) and
``measures/`` (one module per measure, listed in ``registry``). Server set-up and clean-up come from
``brokerq.testing.servers``, shared with the tests.
"""
