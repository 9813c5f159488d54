"""Ports picked for one stack never collide, gRPC twins included.

A port is only free until its server binds it; the source and lake servers are picked
before either starts, so a pick that forgot the first set could hand the lake the source's
gRPC port (seen once in CI as "lake: port(s) [...] already in use").
"""

from __future__ import annotations

from crypto_lakehouse.stack.manager import StackPorts
from crypto_lakehouse.stack.process import free_port


def test_a_stacks_ports_are_all_distinct_twins_included() -> None:
    for _ in range(20):
        ports = StackPorts.pick()
        every = [*ports.source.all(), *ports.lake.all(), ports.postgres, ports.prefect]
        assert len(set(every)) == len(every)


def test_free_port_never_hands_out_a_port_twice() -> None:
    picked = [free_port() for _ in range(300)]
    assert len(set(picked)) == len(picked)
