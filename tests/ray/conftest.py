"""A local Ray cluster for the Ray executor's tests: a head and two worker nodes, on loopback.

Ray resolves "localhost" to the machine's outside address unless told it is not a multi-machine
cluster: RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 (read when ray is imported) keeps every node, and the
orchd drivers that inherit this environment, on 127.0.0.1.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # tests reach loopback only

RESOURCE = "orch_session"
CAPS = (2, 3)  # each worker node's session cap
NODE_MEMORY = 80 << 20  # object store per node: sessions pass only small messages


def ray_or_skip() -> None:
    """Skip (locally) or fail (under CI=true) the calling module when Ray is not installed."""
    if importlib.util.find_spec("ray") is not None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail("ray is not installed: .ci/run must install the [ray] extra", pytrace=False)
    pytest.skip("ray is not installed (pip install -e '.[ray]')", allow_module_level=True)


def node_args(sessions: int, **extra: Any) -> dict[str, Any]:
    """Arguments of `Cluster.add_node` for a node that runs `sessions` sessions at once."""
    return {
        "num_cpus": 1,
        "resources": {RESOURCE: sessions},
        "object_store_memory": NODE_MEMORY,
        "node_ip_address": "127.0.0.1",
        **extra,
    }


@dataclass
class RayCluster:
    """The module's cluster: Ray's `Cluster` and its worker nodes with their caps."""

    cluster: Any
    workers: dict[str, int]  # node id -> session cap

    @property
    def address(self) -> str:
        return self.cluster.address

    def live_actors(self, prefix: str) -> list[str]:
        """Names of the actors whose name starts with `prefix` that are not dead."""
        table = self.cluster.global_state.actor_table(None)
        return [
            a["Name"]
            for a in table.values()
            if a.get("Name", "").startswith(prefix) and a["State"] != "DEAD"
        ]


@pytest.fixture(scope="module")
def cluster() -> Iterator[RayCluster]:
    """A head (no sessions) and two workers (2 and 3 sessions); Ray's files in a short private dir."""
    from ray.cluster_utils import Cluster

    temp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # short: Ray's unix socket paths are limited
    saved = os.environ.get("RAY_TMPDIR")
    os.environ["RAY_TMPDIR"] = temp
    head = node_args(
        0,
        num_cpus=0,
        include_dashboard=False,
        temp_dir=os.path.join(temp, "ray"),
        # notice a dead node in ~3 s, not ~30 s
        _system_config={"health_check_period_ms": 1000, "health_check_failure_threshold": 3},
    )
    ray_cluster = Cluster(initialize_head=True, head_node_args=head)
    try:
        workers = {ray_cluster.add_node(**node_args(cap)).node_id: cap for cap in CAPS}
        ray_cluster.wait_for_nodes()
        yield RayCluster(ray_cluster, workers)
    finally:
        ray_cluster.shutdown()
        if saved is None:
            os.environ.pop("RAY_TMPDIR", None)
        else:
            os.environ["RAY_TMPDIR"] = saved
        shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture
def ray_daemon(make_daemon: Any, cluster: RayCluster) -> Any:
    """Start a real orchd whose sessions run on the module's cluster."""

    def make(**config: Any) -> Any:
        return make_daemon(executor="ray", ray={"address": cluster.address}, **config)

    return make
