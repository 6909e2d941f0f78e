"""The `local` target's AWS: a moto server on loopback over TLS, started once and reused across runs."""

from __future__ import annotations

import fcntl
import importlib.util
import json
import os
import signal
import socket
import ssl
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from pipeline import local_tls
from pipeline.config import Settings
from pipeline.errors import LocalEndpointError
from pipeline.model import AwsAccess

# moto accepts any credentials; fixed ones keep every child's environment the same.
DUMMY_KEY_ID = "testing"
DUMMY_SECRET = "testing"  # noqa: S105 - not a secret: moto accepts anything
SERVER = "pipeline.local_server"
START_DEADLINE = 30.0
STOP_DEADLINE = 10.0
_RECORD = "local-endpoint.json"
_LOG = "local-endpoint.log"
_LOCK = "local-endpoint.lock"
_TLS_DIR = "local-endpoint-tls"


@dataclass(frozen=True)
class Endpoint:
    url: str
    pid: int | None  # None: an endpoint this pipeline did not start (PIPELINE_AWS_ENDPOINT)
    running: bool
    ca_bundle: str | None = None  # the CA its certificate is signed by; None: the ambient trust


def ensure(settings: Settings, region: str) -> AwsAccess:
    """Access to a running local endpoint, starting one if none answers."""
    return access(up(settings), region)


def access(endpoint: Endpoint, region: str) -> AwsAccess:
    env = {
        "AWS_ACCESS_KEY_ID": DUMMY_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": DUMMY_SECRET,
        "AWS_DEFAULT_REGION": region,
        "AWS_REGION": region,
    }
    if endpoint.ca_bundle is not None:
        env[AwsAccess.CA_BUNDLE] = endpoint.ca_bundle
    return AwsAccess(region=region, endpoint=endpoint.url, env=tuple(sorted(env.items())))


def up(settings: Settings) -> Endpoint:
    if settings.aws_endpoint is not None:
        if not answers(settings.aws_endpoint):
            raise LocalEndpointError(
                f"PIPELINE_AWS_ENDPOINT={settings.aws_endpoint} does not answer; "
                "start that endpoint or unset PIPELINE_AWS_ENDPOINT to use the embedded one"
            )
        return Endpoint(settings.aws_endpoint, None, running=True)
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    # Runs started together must share one server, not race to start one each.
    with (settings.state_dir / _LOCK).open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        recorded = status(settings)
        if recorded is not None and recorded.running:
            return recorded
        if recorded is not None and recorded.pid is not None:
            # Alive but refusing (a certificate past its date, a wedged server): replaced, not left behind.
            _stop(recorded.pid)
        return _start(settings)


def status(settings: Settings) -> Endpoint | None:
    """The recorded endpoint, if any, and whether it still answers."""
    if settings.aws_endpoint is not None:
        return Endpoint(settings.aws_endpoint, None, running=answers(settings.aws_endpoint))
    record = _read_record(settings)
    if record is None:
        return None
    ca = _ca_bundle(settings) if record.url.startswith("https://") else None
    return Endpoint(record.url, record.pid, running=_alive(record.pid) and answers(record.url, ca), ca_bundle=ca)


def down(settings: Settings) -> bool:
    """Stop the endpoint this pipeline started and forget it; whether one was running."""
    record = _read_record(settings)
    if record is None:
        return False
    stopped = _stop(record.pid)
    (settings.state_dir / _RECORD).unlink(missing_ok=True)
    return stopped


def answers(url: str, ca_bundle: str | None = None, timeout: float = 5.0, patience: float = 30.0) -> bool:
    """Whether an HTTP server answers at url; any HTTP status counts, only silence does not.

    Over TLS its certificate must be signed by ca_bundle (by default AWS_CA_BUNDLE, else the system's CAs):
    a server the AWS clients would refuse does not answer.

    A refused connection means no server, at once. A timeout means a busy one, as a moto
    server serving several Terraform runs on two cores can be: it is asked again until
    `patience` runs out.
    """
    deadline = time.monotonic() + patience
    trusted = ssl.create_default_context(cafile=ca_bundle or os.environ.get(AwsAccess.CA_BUNDLE) or None)
    while True:
        try:
            # Not /moto-api/data.json: it serialises every resource and slows as the server fills.
            with urllib.request.urlopen(f"{url.rstrip('/')}/", timeout=timeout, context=trusted):
                return True
        except urllib.error.HTTPError:
            return True
        except OSError as failed:
            busy = isinstance(failed, TimeoutError) or isinstance(getattr(failed, "reason", None), TimeoutError)
            if not busy or time.monotonic() >= deadline:
                return False


def _start(settings: Settings) -> Endpoint:
    if importlib.util.find_spec("moto") is None:
        raise LocalEndpointError("the local target needs moto; install it with: pip install -e '.[local]'")
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    tls = local_tls.ensure(settings.state_dir / _TLS_DIR)
    url = f"https://{local_tls.HOST}:{port}"
    log = settings.state_dir / _LOG
    argv = [sys.executable, "-m", SERVER, *server_args(port, tls)]
    # posix_spawn with its own session: the server outlives this run and a Ctrl-C aimed at it.
    pid = os.posix_spawn(
        sys.executable,
        argv,
        dict(os.environ),
        file_actions=[
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_OPEN, 1, str(log), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600),
            (os.POSIX_SPAWN_DUP2, 1, 2),
        ],
        setsid=True,
    )
    deadline = time.monotonic() + START_DEADLINE
    while not answers(url, str(tls.ca)):
        if not _alive(pid) or time.monotonic() > deadline:
            _stop(pid)
            raise LocalEndpointError(f"the local AWS endpoint did not start on {url}; see {log}")
        time.sleep(0.2)
    endpoint = Endpoint(url, pid, running=True, ca_bundle=str(tls.ca))
    (settings.state_dir / _RECORD).write_text(json.dumps({"url": url, "pid": pid}, sort_keys=True) + "\n")
    return endpoint


def server_args(port: int, tls: local_tls.Files) -> list[str]:
    """The server's arguments: loopback only, over TLS with the given certificate."""
    return ["-H", local_tls.HOST, "-p", str(port), "-c", str(tls.cert), "-k", str(tls.key)]


def _ca_bundle(settings: Settings) -> str:
    return str(local_tls.Files.under(settings.state_dir / _TLS_DIR).ca)


class _Record(NamedTuple):
    url: str
    pid: int


def _read_record(settings: Settings) -> _Record | None:
    path = settings.state_dir / _RECORD
    try:
        data = json.loads(path.read_text())
        return _Record(str(data["url"]), int(data["pid"]))
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError) as e:
        raise LocalEndpointError(
            f"{path} is unreadable ({e}); stop any moto server by hand and delete the file"
        ) from None


def _stop(pid: int) -> bool:
    if not _alive(pid) or not _is_moto(pid):
        return False
    os.kill(pid, signal.SIGTERM)
    if not _gone_within(pid, STOP_DEADLINE):
        os.kill(pid, signal.SIGKILL)
        _gone_within(pid, STOP_DEADLINE)
    return True


def _gone_within(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while _alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def _alive(pid: int) -> bool:
    try:
        # Reap it if it is our own child, or a stopped server would linger as a zombie.
        reaped, _ = os.waitpid(pid, os.WNOHANG)
        return reaped == 0
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _is_moto(pid: int) -> bool:
    """Guard against a recycled pid: only signal a process that is a moto server."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return not Path("/proc/self").exists()
    # moto.server: started by a version of the pipeline from before the server was its own module.
    return SERVER.encode() in cmdline or b"moto.server" in cmdline


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
