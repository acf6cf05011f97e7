"""What counting an answer for the guard costs a web process (guard/middleware.py).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/comcenter_guard_bench \\
    REDIS_URL=redis://127.0.0.1:6379/6 .venv/bin/python -m bench.measurement_cost

It runs the measurement middleware around a view that returns a ready 202 for an intake
request, for BENCH_SECONDS (3) per variant, and reports the CPU time per request (process
time, so waiting on the store counts only as the CPU it costs) and the wall time, with the
flush every GUARD_FLUSH_SECONDS (1 s) included as it falls: the store is the configured one
(Redis when REDIS_URL is set, else the database, migrated first). The baseline is the same
view without the middleware; the difference is the cost per request.
"""

from __future__ import annotations

import os
import time

import django


def _setup() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "comcenter.settings")
    os.environ.setdefault("SECRET_KEY", "bench-" + "x" * 40)
    django.setup()


def main() -> None:
    _setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.http import HttpResponse
    from django.test import RequestFactory
    from django.urls import resolve

    from guard.measurements import backend, measurements_flush, measurements_forget
    from guard.middleware import MeasurementMiddleware

    if backend() == "database":
        call_command("migrate", verbosity=0)
    measurements_forget()
    seconds = float(os.environ.get("BENCH_SECONDS", "3"))
    request = RequestFactory().post(
        "/api/v1/events", data="{}", content_type="application/json", HTTP_AUTHORIZATION="Bearer t"
    )
    request.resolver_match = resolve("/api/v1/events")
    answer = HttpResponse(status=202)

    def view(req: object) -> HttpResponse:
        return answer

    def run(handler: object) -> tuple[float, float, int]:
        count = 0
        cpu, wall = time.process_time(), time.perf_counter()
        end = wall + seconds
        while time.perf_counter() < end:
            for _ in range(1000):
                request.started_at = time.perf_counter()  # type: ignore[attr-defined]
                handler(request)  # type: ignore[operator]
            count += 1000
        return time.process_time() - cpu, time.perf_counter() - wall, count

    bare_cpu, bare_wall, bare_n = run(view)
    counted_cpu, counted_wall, counted_n = run(MeasurementMiddleware(view))
    measurements_flush()
    per = {
        "bare": (bare_cpu / bare_n * 1e6, bare_wall / bare_n * 1e6),
        "counted": (counted_cpu / counted_n * 1e6, counted_wall / counted_n * 1e6),
    }
    print(f"store: {backend()}, flush every {settings.GUARD_FLUSH_SECONDS:g} s, {seconds:g} s each")
    for name, (cpu_us, wall_us) in per.items():
        print(f"  {name:<8} {cpu_us:7.2f} µs CPU  {wall_us:7.2f} µs wall per request")
    print(
        f"  cost     {per['counted'][0] - per['bare'][0]:7.2f} µs CPU  "
        f"{per['counted'][1] - per['bare'][1]:7.2f} µs wall per request"
    )
    measurements_forget()


if __name__ == "__main__":
    main()
