"""`local up|down|status`: the embedded AWS endpoint (a moto server on loopback, over TLS)."""

from __future__ import annotations

from pipeline import local_endpoint
from pipeline.config import Settings
from pipeline.errors import EXIT_OK, LocalEndpointError
from pipeline.report import Outcome, Reporter


def run(action: str, settings: Settings, reporter: Reporter) -> int:
    if action == "up":
        endpoint = local_endpoint.up(settings)
        lines = [f"local AWS endpoint: {endpoint.url}"]
        if endpoint.ca_bundle is not None:
            lines.append(f"its CA bundle: {endpoint.ca_bundle} (AWS_CA_BUNDLE for other AWS clients)")
        reporter.finish(Outcome(tuple(lines), _data(endpoint)))
        return EXIT_OK
    if action == "down":
        stopped = local_endpoint.down(settings)
        line = "local AWS endpoint stopped" if stopped else "no local AWS endpoint was running"
        reporter.finish(Outcome((line,), {"stopped": stopped}))
        return EXIT_OK
    current = local_endpoint.status(settings)
    if current is None:
        line = "local AWS endpoint: not started (new-cluster or `local up` starts it)"
        reporter.finish(Outcome((line,), {"url": None, "running": False, "ca_bundle": None}))
        return EXIT_OK
    if not current.running:
        raise LocalEndpointError(
            f"the local AWS endpoint recorded at {current.url} does not answer; run `python -m pipeline local up`"
        )
    reporter.finish(Outcome((f"local AWS endpoint: {current.url} answering",), _data(current)))
    return EXIT_OK


def _data(endpoint: local_endpoint.Endpoint) -> dict[str, object]:
    return {"url": endpoint.url, "running": endpoint.running, "ca_bundle": endpoint.ca_bundle}
