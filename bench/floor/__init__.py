"""The floor of the benchmark: the least a Django + DRF intake can do per event.

A bare DRF view that checks a static bearer token, parses the JSON body and does one ORM
INSERT, on the same web server, PostgreSQL cluster and settings as comcenter in the same run.
Its CPU per event is the yardstick of `cpu_ratio_to_floor`: the cost of comcenter's guarantees
(idempotency, the outbox, ordering, lineage, delivery) on top of the unavoidable."""
