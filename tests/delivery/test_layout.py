"""The module map in docs/architecture.md names every module of the delivery package and the
database seam, so the map cannot fall behind the tree."""

from __future__ import annotations

from tests.delivery.conftest import ROOT


def test_it_maps_every_delivery_module_in_architecture_md():
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    modules = [
        path.relative_to(ROOT).as_posix()
        for path in sorted((ROOT / "delivery").rglob("*.py"))
        if path.name not in {"__init__.py", "apps.py"} and "migrations" not in path.parts
    ]

    assert modules
    assert [m for m in [*modules, "comcenter/lib/db.py"] if f"`{m}`" not in text] == []
