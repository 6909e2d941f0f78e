"""`local up|down|status`: the embedded AWS endpoint (a moto server on loopback, over TLS)."""

from __future__ import annotations

from pipeline import local_endpoint
from pipeline.config import Settings
from pipeline.errors import EXIT_FAILED, EXIT_OK
from pipeline.report import Reporter


def run(action: str, settings: Settings, reporter: Reporter) -> int:
    if action == "up":
        endpoint = local_endpoint.up(settings)
        print(f"local AWS endpoint: {endpoint.url}")
        if endpoint.ca_bundle is not None:
            print(f"its CA bundle: {endpoint.ca_bundle} (AWS_CA_BUNDLE for other AWS clients)")
        return EXIT_OK
    if action == "down":
        stopped = local_endpoint.down(settings)
        print("local AWS endpoint stopped" if stopped else "no local AWS endpoint was running")
        return EXIT_OK
    current = local_endpoint.status(settings)
    if current is None:
        print("local AWS endpoint: not started (new-cluster or `local up` starts it)")
        return EXIT_OK
    print(f"local AWS endpoint: {current.url} {'answering' if current.running else 'NOT answering'}")
    if not current.running:
        reporter.error("the recorded endpoint does not answer; run `python -m pipeline local up`")
        return EXIT_FAILED
    return EXIT_OK
