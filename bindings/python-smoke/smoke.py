"""Smoke test of the uniffi-generated Python bindings (not the PyO3 package in python/).

Usage: python3 smoke.py DIR, where DIR holds the generated parti_ffi.py and libparti_ffi.so
(scripts/test-bindings prepares it). Proves the generated layer works: plan, explain, config
validation and an async call, with no network. Exits non-zero on any failure.

It ends on an awaited async call and then exits: the runtime thread that woke the last await
may still be returning from Python when the interpreter finalizes, which used to abort the
process (exit 134) about once in ten runs. `parti_ffi.shutdown` registered with `atexit` (what
every Python program using these bindings does) joins that thread first; scripts/test-bindings
runs this file repeatedly and checks every exit code.
"""

import asyncio
import atexit
import sys

sys.path.insert(0, sys.argv[1])
import parti_ffi as p  # noqa: E402

atexit.register(p.shutdown)


def main() -> None:
    assert p.resolve_worker_config(p.WorkerConfig()) == p.default_worker_config(), "unset fields are not the Rust defaults"
    p.validate_config(p.WorkerConfig(heartbeat_ms=250, lease_ttl_ms=2000, safety_margin_ms=400))
    try:
        p.validate_config(p.WorkerConfig(lease_ttl_ms=500))
        raise AssertionError("a 500 ms lease TTL was accepted")
    except p.PartiError.InvalidConfig as e:
        assert e.field == "lease_ttl", e.field
    try:
        p.validate_config(p.WorkerConfig(bucket_prefix="no spaces"))
        raise AssertionError("a bad bucket prefix was accepted")
    except p.PartiError.InvalidConfig as e:
        assert e.field == "bucket_prefix", e.field

    parts = [p.Partition(id=f"p{i}") for i in range(20)]
    inp = p.PlanInput(workers=[p.WorkerSlot(id=1), p.WorkerSlot(id=2)], partitions=parts)
    result = p.plan(p.Strategy.BALANCED(), inp)
    assert set(result.assignment) == {f"p{i}" for i in range(20)}, result.assignment
    assert sorted(len(v) for v in result.by_worker.values()) == [10, 10], result.by_worker
    assert result.summary.max_over_mean == 1.0, result.summary
    why = p.explain(p.Strategy.BOUNDED_LOAD(cap=1.25), inp, "p3")
    assert why.owner in (1, 2) and why.reason, why
    try:
        p.plan(p.Strategy.BALANCED(), p.PlanInput(workers=[], partitions=parts + parts[:1]))
        raise AssertionError("a duplicate partition was accepted")
    except p.PartiError.InvalidPartition as e:
        assert e.partition == "p0", e.partition
    print(f"[python] uniffi bindings: plan, explain, validate_config: ok (parti {p.parti_version()})")
    # Last: an async round trip, right before the interpreter exits.
    assert asyncio.run(p.ping(41)) == 41


if __name__ == "__main__":
    main()
