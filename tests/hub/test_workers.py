"""Several hub workers on one PostgreSQL store, behind one shared subscription.

Door nodes (the real journal and uplink) publish entries and exits; two hub workers with
their own MQTT client ids, in one share group, split them. One worker runs in a process of
its own; it hangs (SIGSTOP) as events start to flow, so that the broker deals it events it
never stores, and is killed (SIGKILL). The other carries on, the nodes send again what the
dead worker never acked, and in the end every event is stored exactly once and the count
is exact.

The workers run with ``session_expiry_s = 0``: Mosquitto keeps dealing a share of the
events to a member of a shared subscription whose session outlives its connection, and
would hold them for a worker that is not coming back (see docs/scaling.md).
"""

from __future__ import annotations

import logging
import random
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from controller.journal import Journal
from controller.uplink import MqttConfig, Uplink
from hub.config import HubConfig
from hub.store.postgres import PgStore
from protocol import topics
from protocol.events import CommandReply, EventKind, NodeState, NodeStatus
from provisioning.mosquitto import Mosquitto

pytestmark = pytest.mark.slow
logger = logging.getLogger(__name__)

F = "mall-w"
NODES = 4
WARM_UP = 100  # entries per node before anyone leaves: the count never nears zero
MIXED = 150  # entries and exits per node while a worker dies (fewer exits than WARM_UP)
AFTER = 25  # events per node once the worker is gone

# A hub worker in a process of its own, as a service manager would run it.
_WORKER = """
import asyncio, sys
from hub.config import HubConfig
from hub.service import Hub
asyncio.run(Hub(HubConfig.model_validate_json(sys.argv[1])).run(asyncio.Event()))
"""


def worker_config(broker: Mosquitto, dsn: str, client_id: str) -> HubConfig:
    return HubConfig.model_validate(
        {
            "mqtt": {
                "host": broker.host,
                "port": broker.port,
                "client_id": client_id,
                "share_group": "pintu-workers",
                # The session ends with the connection: what a dead worker was dealt and
                # never acked is lost at the broker, and the nodes send it again.
                "session_expiry_s": 0,
            },
            "store": {"backend": "postgresql", "dsn": dsn},
            "homeassistant": {"enabled": False},
            "facilities": [
                {
                    "id": F,
                    "name": "Mall W",
                    "doors": [
                        {
                            "id": f"door-{n}",
                            "name": f"Door {n}",
                            "direction": "both",
                            "nodes": [f"node-{n}"],
                        }
                        for n in range(NODES)
                    ],
                }
            ],
        }
    )


class Node:
    """A door node: its journal, and the uplink that sends it until the hub acks."""

    def __init__(self, broker: Mosquitto, folder: Path, index: int) -> None:
        self.node_id = f"node-{index}"
        self.journal = Journal(
            folder / f"{self.node_id}.db",
            node_id=self.node_id,
            facility_id=F,
            door_id=f"door-{index}",
        )
        self.uplink = Uplink(
            MqttConfig(
                host=broker.host,
                port=broker.port,
                reconnect_min_s=0.05,
                reconnect_max_s=0.5,
                ack_timeout_s=1.0,
            ),
            facility_id=F,
            node_id=self.node_id,
            journal=self.journal,
            status=lambda: NodeStatus(state=NodeState.ONLINE),
            on_command=lambda command: CommandReply(id=command.id, ok=False, error="no"),
            on_facility_state=lambda state: None,
        )
        self.sent: list[str] = []
        self.kinds: list[EventKind] = []

    def emit(self, kinds: list[EventKind]) -> None:
        for kind in kinds:
            self.sent.append(self.journal.append(kind).event_id)
            self.kinds.append(kind)
        self.uplink.wake()

    def close(self) -> None:
        self.uplink.stop()
        self.journal.close()


@pytest.fixture
def nodes(broker: Mosquitto, tmp_path: Path) -> Iterator[list[Node]]:
    made = [Node(broker, tmp_path, i) for i in range(NODES)]
    for node in made:
        node.uplink.start()
    yield made
    for node in made:
        node.close()


@pytest.fixture
def worker_process(
    broker: Mosquitto, pg_dsn: str, tmp_path: Path
) -> Iterator[subprocess.Popen[bytes]]:
    config = worker_config(broker, pg_dsn, "hub-worker-2")
    with (tmp_path / "worker-2.log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-c", _WORKER, config.model_dump_json()], stdout=log, stderr=log
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(10)


def test_workers_share_the_events_and_survive_one_killed(
    broker: Mosquitto,
    pg_dsn: str,
    nodes: list[Node],
    worker_process: subprocess.Popen[bytes],
    run_hub: Callable[..., Any],
    clients: Callable[..., Any],
    wait_until: Callable[..., None],
) -> None:
    status = clients(topics=[topics.hub_status(F)])

    def hub_state() -> str | None:
        payloads = status.on(topics.hub_status(F))
        return NodeStatus.parse(payloads[-1]).state.value if payloads else None

    # The worker in its own process first: once it says it is online, it is subscribed.
    wait_until(lambda: hub_state() == "online", 20, "worker 2 online")
    survivor = run_hub(worker_config(broker, pg_dsn, "hub-worker-1"))
    metrics = survivor.hub.metrics
    with PgStore(pg_dsn) as store:

        def stored() -> int:
            return store.count_events(F)

        def by_survivor() -> int:
            return int(metrics.events_in.value(facility=F))

        def all_acked() -> bool:
            return all(node.journal.pending_count() == 0 for node in nodes)

        rng = random.Random(5)
        for node in nodes:
            node.emit([EventKind.ENTRY] * WARM_UP)
        wait_until(all_acked, 30, "the warm-up acked")
        assert stored() == NODES * WARM_UP
        assert by_survivor() > 0 and stored() - by_survivor() > 0, "both workers took a share"

        # Worker 2 hangs as the mixed events start, and dies while they flow: whatever the
        # broker dealt it meanwhile, it never stored or acked.
        before = by_survivor()
        worker_process.send_signal(signal.SIGSTOP)
        for node in nodes:
            node.emit(
                [
                    rng.choice([EventKind.ENTRY, EventKind.EXIT, EventKind.DENIED])
                    for _ in range(MIXED)
                ]
            )
        wait_until(
            lambda: by_survivor() >= before + NODES * MIXED // 4, 30, "worker 1 storing its share"
        )
        worker_process.send_signal(signal.SIGKILL)
        assert not all_acked(), "the worker was killed mid-stream"
        share_of_the_dead = stored() - by_survivor()
        worker_process.wait(10)
        assert worker_process.returncode == -signal.SIGKILL
        # The broker saw the connection drop: it sent the dead worker's Last Will.
        wait_until(lambda: hub_state() == "offline", 10, "worker 2's will")

        for node in nodes:
            node.emit([EventKind.ENTRY] * AFTER)
        wait_until(all_acked, 30, "every event acked")

        total = NODES * (WARM_UP + MIXED + AFTER)
        assert stored() == total
        # Nothing lost, nothing doubled: each journaled id is stored, once.
        ids = {e.event.event_id for e in _all_events(store)}
        assert ids == {i for node in nodes for i in node.sent} and len(ids) == total
        # The dead worker stored no more; the survivor stored the rest.
        assert stored() - by_survivor() == share_of_the_dead > 0
        entries = sum(node.kinds.count(EventKind.ENTRY) for node in nodes)
        exits = sum(node.kinds.count(EventKind.EXIT) for node in nodes)
        assert store.occupancy(F).occupancy == entries - exits
        assert store.alerts(F, open_only=False, kind="exit_without_entry") == []
        # Out-of-order arrivals between the workers leave no gap open, and no node looks
        # reset; each node's last seq is its last event.
        assert store.gaps(F) == []
        assert store.alerts(F, kind="seq_gap") == []
        assert store.alerts(F, open_only=False, kind="seq_reset") == []
        assert {n.node_id: n.last_seq for n in store.nodes(F)} == {
            node.node_id: len(node.sent) for node in nodes
        }
        # What the dead worker was dealt came back from the nodes' journals.
        resent = sum(node.uplink.stats.resent for node in nodes)
        assert resent > 0
        logger.info(
            "worker 1 stored %d, worker 2 stored %d; the nodes sent %d again, worker 1 found "
            "%d of them stored already",
            by_survivor(),
            share_of_the_dead,
            resent,
            metrics.duplicates.value(),
        )


def _all_events(store: PgStore) -> Iterator[Any]:
    page = store.events(facility_id=F, limit=1000)
    while True:
        yield from page.events
        if page.next_before is None:
            return
        page = store.events(facility_id=F, limit=1000, before=page.next_before)
