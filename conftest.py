"""Fixtures for both the unit tests (tests/) and the journeys (features/)."""

pytest_plugins = ["tests.fixtures", "tests.reliability"]
