"""The local endpoint's server process: moto, taught the one policy condition the state bucket relies on.

moto stores bucket policies and enforces their Deny statements but ignores their conditions, so the
state bucket's "deny unless TLS" would deny everything. This process knows whether it serves TLS,
which is all `aws:SecureTransport` asks; a statement conditioned on that key alone is kept when it
holds and dropped when it does not, as AWS evaluates it. Any other condition is left to moto.

Run as `python -m pipeline.local_server` with moto.server's own arguments (moto is the `local` extra).
"""

from __future__ import annotations

import json
import sys
from typing import Any

from moto import server
from moto.iam.access_control import IAMPolicy, PermissionResult
from moto.s3.models import FakeBucket

SECURE_TRANSPORT = "aws:SecureTransport"


def statements_for_transport(policy: dict[str, Any], tls: bool) -> dict[str, Any]:
    """The policy as it applies to a request over TLS (or not): its SecureTransport conditions settled."""
    statements = policy.get("Statement", [])
    if isinstance(statements, dict):
        statements = [statements]
    kept = []
    for statement in statements:
        condition = statement.get("Condition")
        wanted = _secure_transport_only(condition) if isinstance(condition, dict) else None
        if wanted is None:
            kept.append(statement)
        elif wanted == tls:
            kept.append({key: value for key, value in statement.items() if key != "Condition"})
    return {**policy, "Statement": kept}


def _secure_transport_only(condition: dict[str, Any]) -> bool | None:
    """The transport a condition of only `Bool: {aws:SecureTransport: ...}` asks for; None for any other."""
    if (
        list(condition) != ["Bool"]
        or not isinstance(condition["Bool"], dict)
        or list(condition["Bool"]) != [SECURE_TRANSPORT]
    ):
        return None
    value = condition["Bool"][SECURE_TRANSPORT]
    values = value if isinstance(value, list) else [value]
    if len(values) != 1 or str(values[0]).lower() not in ("true", "false"):
        return None
    return str(values[0]).lower() == "true"


def _teach(tls: bool) -> None:
    def get_permission(self: FakeBucket, action: str, resource: str) -> Any:
        if self.policy is None:
            return PermissionResult.NEUTRAL
        policy = statements_for_transport(json.loads(self.policy.decode()), tls)
        return IAMPolicy(json.dumps(policy)).is_action_permitted(action, resource)

    FakeBucket.get_permission = get_permission  # type: ignore[method-assign]


def main(argv: list[str]) -> None:
    _teach(tls="-c" in argv or "--ssl-cert" in argv)
    server.main(argv)


if __name__ == "__main__":
    main(sys.argv[1:])
