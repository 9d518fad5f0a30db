"""A real network testbed: the uplink shaped by the kernel in a network namespace, and the
simulator and the user-space shaper checked against it (``docs/testbed.md``).

:mod:`~janus_deploy.testbed.netns`: namespace, veth pair, ``tbf`` trace replay, ``netem`` RTT,
teardown. :mod:`~janus_deploy.testbed.delay`: the user-space RTT relay. :mod:`~janus_deploy.testbed.run`:
:func:`run_testbed`, the three runs and their comparison.
"""

from janus_deploy.testbed.netns import TestbedError, check_privileges, leftovers, sweep_stale
from janus_deploy.testbed.run import TARGETS, TestbedConfig, compare, run_testbed, targets, window

__all__ = ["TARGETS", "TestbedConfig", "TestbedError", "check_privileges", "compare", "leftovers", "run_testbed",
           "sweep_stale", "targets", "window"]
