"""The floor bracketing comcenter's run (bench/replay.py): two windows, one before and one
after, pooled into the figures the ratio divides by."""

from __future__ import annotations

from bench.replay import attach_floor, pooled_floor


def _window(events: int, total: float, web: float, latencies: list[float], steal: float) -> dict:
    return {
        "events": events,
        "errors": 0,
        "latencies": latencies,
        "cpu_ms_per_event": {"web": web, "database": total - web, "total": total},
        "host_steal_percent": steal,
        "io_stall_percent": None,
    }


def test_it_pools_the_windows_cpu_weighted_by_their_requests() -> None:
    before = _window(1000, 2.0, 1.5, [1.0] * 1000, 1.0)
    after = _window(3000, 3.0, 2.0, [2.0] * 3000, 3.0)

    floor = pooled_floor([before, after])

    assert floor["events"] == 4000
    assert floor["cpu_ms_per_event"] == {"web": 1.875, "database": 0.875, "total": 2.75}
    assert floor["host_steal_percent"] == 2.5
    # No window had a reading: none is made up.
    assert floor["io_stall_percent"] is None
    assert floor["drift"] == 1.5


def test_its_latencies_are_those_of_every_request_of_both_windows() -> None:
    before = _window(100, 2.0, 1.0, [1.0] * 90 + [50.0] * 10, 0.0)
    after = _window(100, 2.0, 1.0, [1.0] * 100, 0.0)

    floor = pooled_floor([before, after])

    # 10 slow of 200: the P95 of the pool is fast, that of the first window alone is slow.
    assert floor["p95_ack_ms"] == 1.0
    assert floor["max_ack_ms"] == 50.0
    assert [w["p95_ack_ms"] for w in floor["windows"]] == [50.0, 1.0]
    assert all("latencies" not in w for w in floor["windows"])


def test_the_ratio_divides_by_the_pooled_total() -> None:
    floor = pooled_floor([_window(10, 2.0, 1.0, [1.0], 0), _window(10, 3.0, 1.0, [1.0], 0)])
    result = {"cpu_ms_per_event": {"total": 4.0}}

    attach_floor(result, floor)

    assert result["cpu_ratio_to_floor"] == 1.6
