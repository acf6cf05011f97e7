"""Every flag of the registry can be set from the environment, and nothing else is read."""

from __future__ import annotations

import comcenter.settings as project_settings
from flags.registry import FLAGS


def test_it_reads_exactly_the_registered_flags_from_the_environment() -> None:
    assert set(project_settings._FLAG_NAMES) == set(FLAGS)
