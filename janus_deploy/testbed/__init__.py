"""A real network testbed: the uplink shaped by the kernel in a network namespace, and the
simulator and the user-space shaper checked against it (``docs/testbed.md``).

:mod:`~janus_deploy.testbed.netns`: namespace, veth pair, ``tbf`` trace replay, ``netem`` RTT,
teardown. :mod:`~janus_deploy.testbed.delay`: the user-space RTT relay. :mod:`~janus_deploy.testbed.run`:
:func:`run_testbed`, the three runs and their comparison. :mod:`~janus_deploy.testbed.fleet`:
:func:`run_testbed_fleet`, several edges behind one server. :mod:`~janus_deploy.testbed.setup`:
:func:`testbed_config`, a run's configuration from trace files and images (what the CLI calls).
"""

from janus_deploy.testbed.fleet import FleetSettings, run_testbed_fleet
from janus_deploy.testbed.netns import TestbedError, check_privileges, leftovers, sweep_stale
from janus_deploy.testbed.run import TARGETS, TestbedConfig, compare, run_testbed, targets, window
from janus_deploy.testbed.setup import TraceWindow, image_frames, testbed_config

__all__ = ["TARGETS", "FleetSettings", "TestbedConfig", "TestbedError", "TraceWindow", "check_privileges", "compare",
           "image_frames", "leftovers", "run_testbed", "run_testbed_fleet", "sweep_stale", "targets", "testbed_config",
           "window"]
