"""parti: partition ownership for a fleet of workers over NATS JetStream KV.

Workers claim stable IDs, keep leases alive and elect a leader; the leader decides who owns
which partition; every worker applies its share and tells the application::

    import asyncio, parti

    async def main() -> None:
        partitions = [parti.Partition(["orders", str(i)]) for i in range(30)]
        async with parti.Worker(nats="nats://127.0.0.1:4222", partitions=partitions) as w:
            async for event in w.events():
                if isinstance(event, parti.AssignmentChanged):
                    print("assigned", sorted(event.assigned), "revoked", sorted(event.revoked))

    asyncio.run(main())

Without a network: ``parti.plan`` / ``parti.explain`` run the planner, ``parti.Config``
validates a configuration, ``parti.Simulation`` runs a whole fleet on a virtual clock, and
``parti.Worker(memory=parti.MemoryKv(), ...)`` runs workers in-process.
"""

from typing import Union

from ._parti import (
    STRATEGIES,
    Alert,
    AssignmentChanged,
    Config,
    ConfigError,
    ConfigTypeError,
    Drained,
    EventStream,
    Explanation,
    IdClaimed,
    LeadershipChanged,
    MemoryKv,
    Message,
    NatsError,
    PartiError,
    Partition,
    PlanResult,
    Rebalanced,
    Simulation,
    SimulationError,
    StateChanged,
    StopTimeoutError,
    SubscriptionError,
    Worker,
    WorkerSlot,
    WorkerStoppedError,
    WorkerWarning,
    __version__,
    explain,
    metrics_text,
    plan,
)

Event = Union[
    StateChanged,
    IdClaimed,
    AssignmentChanged,
    LeadershipChanged,
    Alert,
    Drained,
    Rebalanced,
    WorkerWarning,
]
"""Any event a worker's ``events()`` stream yields."""

__all__ = [
    "Alert",
    "AssignmentChanged",
    "Config",
    "ConfigError",
    "ConfigTypeError",
    "Drained",
    "Event",
    "EventStream",
    "Explanation",
    "IdClaimed",
    "LeadershipChanged",
    "MemoryKv",
    "Message",
    "NatsError",
    "PartiError",
    "Partition",
    "PlanResult",
    "Rebalanced",
    "STRATEGIES",
    "Simulation",
    "SimulationError",
    "StateChanged",
    "StopTimeoutError",
    "SubscriptionError",
    "Worker",
    "WorkerSlot",
    "WorkerStoppedError",
    "WorkerWarning",
    "__version__",
    "explain",
    "metrics_text",
    "plan",
]
