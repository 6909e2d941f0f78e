"""AWS faults through the real parts: boto3 → a throttling or failing proxy → the moto server.

The proxy answers signed AWS requests with the error AWS itself sends when it throttles (or is
unavailable), for the first N requests or for as long as a fault is set, and forwards everything
else to moto. It counts every request, so each test sees how many tries the pipeline really made.
"""

from __future__ import annotations

import http.client
import os
import re
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from pipeline import aws, config, local_endpoint, network, node_iam, terraform
from pipeline.config import Settings
from pipeline.errors import EXIT_BLOCKED, EXIT_FAILED, AwsThrottled, AwsUnavailable
from pipeline.model import AwsAccess
from pipeline.signing import Signer
from pipeline.spec import BastionSpec
from tests.fixtures import fleet_refs, free_port
from tests.fixtures_render import sample_spec

CREDENTIALS = (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"))
CONTINUES = "the next run continues from where this one stopped"
AGAIN = f"wait and run again; {CONTINUES}"
# botocore's throttling backoff is rand(0,1) * 2**i s: under 1+2+4+8 s for five tries, plus the tries.
THROTTLED_BOUND = 15 + 10
_SCOPE = re.compile(r"Credential=[^/]+/\d{8}/[^/]+/([^/]+)/aws4_request")
_ATTEMPT = re.compile(r"attempt=(\d+)")


@dataclass(frozen=True)
class Fault:
    """What AWS sends: the HTTP status and error code per service (EC2, S3 and the query protocol differ)."""

    codes: dict[str, tuple[int, str, str]]

    def answer(self, service: str) -> tuple[int, bytes]:
        status, code, message = self.codes.get(service, self.codes["*"])
        if service == "ec2":
            body = f"<Response><Errors><Error><Code>{code}</Code><Message>{message}</Message></Error></Errors>"
            body += "<RequestID>fault-proxy</RequestID></Response>"
        elif service == "s3":
            body = f"<Error><Code>{code}</Code><Message>{message}</Message><RequestId>fault-proxy</RequestId></Error>"
        else:
            body = f"<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message>"
            body += "</Error><RequestId>fault-proxy</RequestId></ErrorResponse>"
        return status, body.encode()


THROTTLING = Fault(
    {
        "ec2": (503, "RequestLimitExceeded", "Request limit exceeded."),
        "s3": (503, "SlowDown", "Please reduce your request rate."),
        "*": (400, "Throttling", "Rate exceeded"),
    }
)
UNAVAILABLE = Fault({"*": (503, "ServiceUnavailable", "Service is unavailable")})


@dataclass(frozen=True)
class Seen:
    service: str  # from the signature's credential scope; "" for an unsigned request (a liveness probe)
    attempt: int  # botocore's own count, from its amz-sdk-request header ("attempt=2; ttl=...; max=5")
    status: int


class FaultProxy(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, upstream: str) -> None:
        super().__init__(("127.0.0.1", 0), _Forward)
        self.upstream = urlsplit(upstream)
        self.url = f"http://127.0.0.1:{self.server_address[1]}"
        self.fault = THROTTLING
        self.fail_next = 0  # fail this many more signed requests
        self.fail_all = False  # fail every signed request while set
        self.action: bytes | None = None  # only requests of this API action fail (EC2's Action=...)
        self.seen: list[Seen] = []
        self.lock = threading.Lock()

    def fail(self, fault: Fault, *, first: int = 0, always: bool = False, action: str | None = None) -> None:
        with self.lock:
            self.fault, self.fail_next, self.fail_all = fault, first, always
            self.action = None if action is None else f"Action={action}&".encode()

    def heal(self) -> None:
        self.fail(self.fault)

    def signed(self, service: str | None = None) -> list[Seen]:
        with self.lock:
            return [s for s in self.seen if s.service and service in (None, s.service)]

    def failing(self, service: str, body: bytes) -> tuple[int, bytes] | None:
        with self.lock:
            if not service or (self.action is not None and self.action not in body):
                return None
            if self.fail_all:
                return self.fault.answer(service)
            if self.fail_next > 0:
                self.fail_next -= 1
                return self.fault.answer(service)
            return None

    def record(self, seen: Seen) -> None:
        with self.lock:
            self.seen.append(seen)


class _Forward(BaseHTTPRequestHandler):
    server: FaultProxy

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _handle(self) -> None:
        scope = _SCOPE.search(self.headers.get("Authorization", ""))
        service = scope.group(1) if scope else ""
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        failed = self.server.failing(service, body)
        if failed is not None:
            status, answer = failed
            headers = [("Content-Type", "text/xml"), ("Content-Length", str(len(answer)))]
        else:
            status, headers, answer = self._forward(body)
        attempt = _ATTEMPT.search(self.headers.get("amz-sdk-request", ""))
        self.server.record(Seen(service, int(attempt.group(1)) if attempt else 0, status))
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(answer)

    def _forward(self, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        upstream = self.server.upstream
        # The session's moto serves TLS under the CA the session trusts (AWS_CA_BUNDLE).
        trusted = ssl.create_default_context(cafile=os.environ[AwsAccess.CA_BUNDLE])
        connection = http.client.HTTPSConnection(
            upstream.hostname or "127.0.0.1", upstream.port, timeout=60, context=trusted
        )
        try:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection", "keep-alive")}
            connection.request(self.command, self.path, body=body, headers=headers)
            response = connection.getresponse()
            answer = response.read()
            kept = [(k, v) for k, v in response.getheaders() if k.lower() not in ("connection", "transfer-encoding")]
            if self.command != "HEAD":
                kept = [(k, v) for k, v in kept if k.lower() != "content-length"]
                kept.append(("Content-Length", str(len(answer))))
            return response.status, kept, answer
        finally:
            connection.close()

    do_GET = do_POST = do_PUT = do_HEAD = do_DELETE = _handle


@pytest.fixture
def proxy(moto_endpoint: str) -> Iterator[FaultProxy]:
    server = FaultProxy(moto_endpoint)
    thread = threading.Thread(target=server.serve_forever, name="fault-proxy", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def _access(endpoint: str) -> AwsAccess:
    return AwsAccess(region="eu-west-1", endpoint=endpoint, env=CREDENTIALS)


@pytest.mark.reliability("fault", "AWS throttles EC2 on all but the last allowed try: the retries carry the call")
def test_throttling_for_fewer_tries_than_the_bound_is_retried_until_the_call_succeeds(proxy, record_property):
    proxy.fail(THROTTLING, first=aws.MAX_ATTEMPTS - 1)

    started = time.monotonic()
    zones = aws.zones(_access(proxy.url))
    took = time.monotonic() - started

    seen = proxy.signed("ec2")
    assert zones and all(z.startswith("eu-west-1") for z in zones)
    assert [s.status for s in seen] == [503] * (aws.MAX_ATTEMPTS - 1) + [200]
    assert [s.attempt for s in seen] == list(range(1, aws.MAX_ATTEMPTS + 1))
    record_property(
        "outcome",
        f"no error: {len(zones)} zones in {took:.1f}s after {len(seen)} attempts counted at the proxy "
        f"({len(seen) - 1} answered 503 RequestLimitExceeded)",
    )


@pytest.mark.parametrize(
    ("call", "service", "head"),
    [
        (aws.caller_identity, "sts", "sts:GetCallerIdentity on the current credentials failed: throttled (Throttling"),
        (aws.zones, "ec2", "ec2:DescribeAvailabilityZones on eu-west-1 failed: throttled (RequestLimitExceeded"),
    ],
    ids=["sts", "ec2"],
)
@pytest.mark.reliability("fault", "AWS keeps throttling: one line, exit 3, after exactly the bounded tries")
def test_throttling_that_outlasts_the_retries_is_one_blocked_error_and_a_rerun_continues(
    proxy, record_property, call, service, head
):
    proxy.fail(THROTTLING, always=True)
    access = _access(proxy.url)

    started = time.monotonic()
    with pytest.raises(AwsThrottled) as caught:
        call(access)
    took = time.monotonic() - started

    message = str(caught.value)
    tries = len(proxy.signed(service))
    assert tries == aws.MAX_ATTEMPTS
    assert message.startswith(head)
    assert message.endswith(f") after {aws.MAX_ATTEMPTS} attempts at {proxy.url}; {AGAIN}")
    assert "\n" not in message
    assert caught.value.exit_code == EXIT_BLOCKED
    assert took < THROTTLED_BOUND

    proxy.heal()  # the throttling passes; the same call, run again, goes through
    assert call(access)
    assert len(proxy.signed(service)) == tries + 1
    record_property(
        "outcome",
        f"AwsThrottled (exit {caught.value.exit_code}) in {took:.1f}s, {tries} attempts counted at the proxy: "
        f"{message[:110]}...; after the throttling stopped the same call succeeded in 1 attempt",
    )


@pytest.mark.reliability("fault", "AWS answers 503 on every try: one line, exit 1, after the bounded tries")
def test_an_endpoint_that_keeps_failing_is_one_error_after_the_bounded_tries(proxy, record_property):
    proxy.fail(UNAVAILABLE, always=True)

    started = time.monotonic()
    with pytest.raises(AwsUnavailable) as caught:
        aws.caller_identity(_access(proxy.url))
    took = time.monotonic() - started

    message = str(caught.value)
    tries = len(proxy.signed("sts"))
    assert tries == aws.MAX_ATTEMPTS
    assert message == (
        "sts:GetCallerIdentity on the current credentials failed: ServiceUnavailable: Service is unavailable "
        f"after {aws.MAX_ATTEMPTS} attempts at {proxy.url}; {AGAIN}"
    )
    assert caught.value.exit_code == EXIT_FAILED
    assert took < 10  # a 5xx backs off 50 ms * 2**i, not seconds
    record_property(
        "outcome",
        f"AwsUnavailable (exit {caught.value.exit_code}) in {took:.1f}s, {tries} attempts counted at the proxy: "
        f"{message[:100]}...",
    )


@pytest.mark.reliability("fault", "the AWS endpoint refuses connections: one line, exit 1, within seconds")
def test_an_endpoint_that_refuses_connections_is_one_error_quickly(record_property):
    endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens there

    started = time.monotonic()
    with pytest.raises(AwsUnavailable) as caught:
        aws.caller_identity(_access(endpoint))
    took = time.monotonic() - started

    message = str(caught.value)
    assert message.startswith(
        "sts:GetCallerIdentity on the current credentials failed: "
        f"no answer after {aws.MAX_ATTEMPTS} attempts at {endpoint} (Could not connect to the endpoint URL"
    )
    assert message.endswith(f"check the network and the endpoint, then run again; {CONTINUES}")
    assert "\n" not in message
    assert caught.value.exit_code == EXIT_FAILED
    assert took < 5
    record_property(
        "outcome",
        f"AwsUnavailable (exit {caught.value.exit_code}) in {took:.1f}s, {aws.MAX_ATTEMPTS} attempts counted by "
        f"botocore's retry hook: {message[:100]}...",
    )


@pytest.mark.reliability("fault", "new-cluster against an always-throttling AWS: exit 3, one line, no commit")
def test_new_cluster_against_a_throttling_endpoint_exits_blocked_in_one_line(
    proxy, record_property, tmp_path: Path, settings: Settings, fleet_signer: Signer
):
    before = set(fleet_refs(settings.fleet).splitlines())
    proxy.fail(THROTTLING, always=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("GITHUB_")}
    env["PIPELINE_AWS_ENDPOINT"] = proxy.url

    def new_cluster() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "pipeline", "new-cluster", "demo"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    started = time.monotonic()
    result = new_cluster()
    took = time.monotonic() - started

    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode == EXIT_BLOCKED, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    assert errors == [
        "error: ec2:DescribeAvailabilityZones on us-east-1 failed: throttled "
        f"(RequestLimitExceeded: Request limit exceeded.) after {aws.MAX_ATTEMPTS} attempts at {proxy.url}; {AGAIN}"
    ]
    assert result.stderr.splitlines()[-1] == errors[0]
    assert took < THROTTLED_BOUND + 30  # plus starting Python
    # The pre-flight's first AWS call, nothing after it.
    assert [s.service for s in proxy.signed()] == ["ec2"] * aws.MAX_ATTEMPTS
    assert not settings.terraform_work_dir("demo").exists()  # Terraform never ran
    # The pre-flight runs before the fleet is touched: no commit, no push, no CIDR claim.
    assert set(fleet_refs(settings.fleet).splitlines()) == before

    again = new_cluster()  # still throttled, and still nothing written
    assert again.returncode == EXIT_BLOCKED
    assert set(fleet_refs(settings.fleet).splitlines()) == before
    record_property(
        "outcome",
        f"exit {result.returncode} in {took:.1f}s, {aws.MAX_ATTEMPTS} ec2 attempts counted at the proxy, "
        f"{errors[0][:60]}...; fleet: no ref added, by this run or its re-run",
    )


@pytest.mark.slow
@pytest.mark.reliability("fault", "AWS throttles EC2 CreateVpc in the middle of terraform apply")
def test_throttling_mid_apply_is_one_blocked_error_naming_the_call(proxy, tmp_path, monkeypatch, record_property):
    monkeypatch.setenv("PIPELINE_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("PIPELINE_AWS_ENDPOINT", proxy.url)
    settings = config.load_settings(os.environ, tmp_path)
    access = local_endpoint.ensure(settings, "us-east-1")
    node_iam.ensure(settings)  # the account's roles, which the cluster's stack names, as in a run
    spec = sample_spec(f"thr-{os.getpid()}", cidr="10.44.0.0/16", bastion=BastionSpec(enabled=False))
    spec = spec.model_copy(update={"network": spec.network.model_copy(update={"zones": 1, "endpoints": ("s3",)})})
    proxy.fail(THROTTLING, always=True, action="CreateVpc")

    with pytest.raises(AwsThrottled) as caught:
        network.provision(spec, access, settings)

    message = str(caught.value)
    tries = sum(1 for s in proxy.signed("ec2") if s.status == 503)
    assert message.startswith("terraform apply: AWS throttled EC2: CreateVpc after 5 attempts (RequestLimitExceeded)")
    assert message.endswith(AGAIN)
    assert tries == 5
    assert caught.value.exit_code == EXIT_BLOCKED

    # What was made before CreateVpc (keys, log group, role) is in the state Terraform saved: nothing orphaned.
    state = terraform.pulled(terraform.workspace(settings, spec.name, network.STACK, dict(access.env)))
    assert not aws.tagged_resources(access, spec.name)["aws_vpc"]
    assert not network.orphans(spec.name, state, access), "what was built is in the state, nothing orphaned"
    record_property("outcome", f"{message[:110]}… ({tries} CreateVpc tries at the proxy); no VPC, nothing orphaned")
