"""A new cluster on the local target: create, approve, re-run."""

from __future__ import annotations

import pytest
from pytest_bdd import scenarios

scenarios("new_cluster.feature")

pytestmark = pytest.mark.slow
