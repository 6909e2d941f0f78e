"""A local server speaking the part of GitHub's REST contract the pipeline uses, over real HTTP.

Its answers follow GitHub's documentation: JSON bodies with `message` and
`documentation_url`, 401 for a wrong token, 404 for a repository the token cannot
see, 422 for a second open pull request from the same head, `Link` pagination and
the `x-ratelimit-*` headers on every answer. Tests add reviews, inject faults and
read back every request it received.
"""

from __future__ import annotations

import json
import re
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

TOKEN = "ghp_fakeToken0123456789abcdefABCDEF0123"
BOT = "fleet-bot"
REPO = "octo/fleet"
DOCS = "https://docs.github.com/rest"
API_VERSIONS = ("2022-11-28",)
_RATE_LIMIT = 5000
_EPOCH = datetime(2025, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-cased names
    json: Any


@dataclass
class _Pull:
    number: int
    repo: str
    author: str
    head: str
    base: str
    title: str
    body: str | None
    state: str = "open"
    closed_sha: str | None = None
    labels: list[str] = field(default_factory=list)
    requested: list[str] = field(default_factory=list)
    reviews: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class _Issue:
    number: int
    repo: str
    author: str
    title: str
    body: str | None
    labels: list[str]
    state: str = "open"
    state_reason: str | None = None
    comments: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class _Fault:
    status: int
    headers: dict[str, str]
    body: Any
    times: int
    method: str | None  # None: any request


class _Answer(Exception):
    """Ends a request with a status and a JSON body (GitHub's error shape)."""

    def __init__(self, status: int, body: Any, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(status)
        self.status = status
        self.body = body
        self.headers = dict(headers or {})


def _problem(status: int, message: str, **extra: Any) -> _Answer:
    return _Answer(status, {"message": message, **extra, "documentation_url": DOCS})


class FakeGitHub:
    """GitHub on a free loopback port; use as a context manager so it always shuts down."""

    def __init__(
        self,
        *,
        tokens: Mapping[str, str] | None = None,
        repos: Mapping[str, Iterable[str]] | None = None,
        readers: Mapping[str, Iterable[str]] | None = None,
        resolve_head: Callable[[str], str | None] | None = None,
    ) -> None:
        self.tokens = dict(tokens or {TOKEN: BOT})  # token -> login
        # repository -> its collaborators (the logins that may be asked to review)
        self.repos = {name: set(users) for name, users in (repos or {REPO: (BOT, "alice", "bob")}).items()}
        # repository -> logins that may read it but not push (GitHub's "read" role)
        self.readers = {name: set(users) for name, users in (readers or {}).items()}
        self.heads: dict[str, str] = {}
        self.resolve_head = resolve_head or self.heads.get
        self.pulls: dict[int, _Pull] = {}
        self.issues: dict[int, _Issue] = {}  # numbered with the pull requests, as on GitHub
        self.statuses: dict[tuple[str, str], list[dict[str, Any]]] = {}  # (repo, sha) -> newest first
        self.requests: list[Recorded] = []
        self._faults: list[_Fault] = []
        self._lock = threading.Lock()
        self._clock = 0
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> FakeGitHub:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join()
        self._server.server_close()

    # What tests arrange.

    def set_head_sha(self, branch: str, sha: str) -> None:
        self.heads[branch] = sha

    def add_review(self, number: int, user: str, state: str, commit_id: str | None = None) -> None:
        """A submitted review; without commit_id it is of the pull request's current head."""
        with self._lock:
            pull = self.pulls[number]
            self._clock += 1
            pull.reviews.append(
                {
                    "id": 1000 + self._clock,
                    "user": {"login": user},
                    "state": state,
                    "commit_id": commit_id or self._head_sha(pull),
                    "body": "",
                    "submitted_at": (_EPOCH + timedelta(minutes=self._clock)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                }
            )
            # GitHub takes a reviewer off the requested list once they submit.
            if user in pull.requested:
                pull.requested.remove(user)

    def fail_next(
        self,
        status: int,
        headers: Mapping[str, str] | None = None,
        body: Any = None,
        times: int = 1,
        method: str | None = None,
    ) -> None:
        """Answer the next `times` requests (any path; only `method`'s when given) with this status, headers, body."""
        if body is None:
            body = {"message": HTTPStatus(status).phrase, "documentation_url": DOCS}
        with self._lock:
            self._faults.append(_Fault(status, dict(headers or {}), body, times, method))

    # What tests read back.

    def open_pulls(self, head: str | None = None) -> list[_Pull]:
        return [p for p in self.pulls.values() if p.state == "open" and head in (None, p.head)]

    def add_issue(self, title: str, body: str, labels: Iterable[str] = (), author: str = "alice") -> int:
        """An issue someone opened by hand, in the fake's one repository."""
        with self._lock:
            number = self._next_number()
            self.issues[number] = _Issue(number, REPO, author, title, body, list(labels))
            return number

    # The contract.

    def handle(
        self, method: str, target: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[int, Any, dict[str, str]]:
        parts = urllib.parse.urlsplit(target)
        query = dict(urllib.parse.parse_qsl(parts.query))
        try:
            payload = json.loads(body) if body else None
        except ValueError:
            payload = None
        with self._lock:
            self.requests.append(Recorded(method, parts.path, query, dict(headers), payload))
            used = len(self.requests)
            limits = {
                "x-ratelimit-limit": str(_RATE_LIMIT),
                "x-ratelimit-remaining": str(max(_RATE_LIMIT - used, 0)),
                "x-ratelimit-reset": str(int(time.time()) + 3600),
                "x-ratelimit-used": str(used),
                "x-ratelimit-resource": "core",
            }
            try:
                if self._faults and self._faults[0].method in (None, method):
                    fault = self._faults[0]
                    fault.times -= 1
                    if fault.times <= 0:
                        self._faults.pop(0)
                    raise _Answer(fault.status, fault.body, fault.headers)
                if body and payload is None:
                    raise _problem(400, "Problems parsing JSON")
                status, answer, extra = self._route(method, parts.path, query, headers, payload)
            except _Answer as ended:
                status, answer, extra = ended.status, ended.body, ended.headers
            return status, answer, {**limits, **extra}

    def _route(
        self, method: str, path: str, query: dict[str, str], headers: Mapping[str, str], payload: Any
    ) -> tuple[int, Any, dict[str, str]]:
        version = headers.get("x-github-api-version")
        if version is not None and version not in API_VERSIONS:
            raise _problem(400, f"Unsupported 'X-GitHub-Api-Version' header: {version}")
        user = self._user(headers.get("authorization", ""))
        status = re.fullmatch(r"/repos/([^/]+/[^/]+)/(?:statuses/([0-9a-f]{40})|commits/([^/]+)/status)", path)
        if status is not None and status[1] in self.repos:
            return self._statuses(method, path, query, status, user=user, payload=payload)
        whole = re.fullmatch(r"/repos/([^/]+/[^/]+)", path)
        if whole is not None and method == "GET":
            return 200, self._repository(whole[1], user), {}
        return self._pulls_and_issues(method, path, query, user, payload)

    def _pulls_and_issues(
        self, method: str, path: str, query: dict[str, str], user: str, payload: Any
    ) -> tuple[int, Any, dict[str, str]]:
        found = re.fullmatch(r"/repos/([^/]+/[^/]+)/(pulls|issues)(?:/(\d+)(?:/(\w+))?)?", path)
        if found is None or found[1] not in self.repos:
            raise _problem(404, "Not Found")
        repo, kind, number, sub = found[1], found[2], found[3], found[4]
        if number is None:
            return self._collection(method, kind, repo, path, query, user, payload)
        issue = self.issues.get(int(number))
        if kind == "issues" and issue is not None and issue.repo == repo:
            return self._issue_route(method, issue, sub, user, payload)
        pull = self.pulls.get(int(number))
        if pull is None or pull.repo != repo:
            raise _problem(404, "Not Found")
        route = (method, kind, sub)
        if route == ("GET", "pulls", None):
            return 200, self._json(pull), {}
        if route == ("PATCH", "pulls", None):
            return 200, self._update(pull, payload), {}
        if route == ("POST", "issues", "labels"):
            pull.labels.extend(name for name in payload["labels"] if name not in pull.labels)
            return 200, [{"name": name} for name in pull.labels], {}
        if route == ("POST", "pulls", "requested_reviewers"):
            return 201, self._request_reviewers(pull, payload), {}
        if route == ("GET", "pulls", "reviews"):
            return self._page(path, query, pull.reviews)
        raise _problem(404, "Not Found")

    def _statuses(
        self, method: str, path: str, query: dict[str, str], found: re.Match[str], *, user: str, payload: Any
    ) -> tuple[int, Any, dict[str, str]]:
        if method == "POST" and found[2] is not None:
            return 201, self._post_status(found[1], found[2], user, payload), {}
        if method == "GET" and found[3] is not None:
            return self._combined_status(path, query, found[1], found[3])
        raise _problem(404, "Not Found")

    def _post_status(self, repo: str, sha: str, user: str, payload: Any) -> dict[str, Any]:
        """POST /repos/{owner}/{repo}/statuses/{sha}, as notification-controller's github provider calls it."""
        if not isinstance(payload, dict) or payload.get("state") not in ("error", "failure", "pending", "success"):
            raise _problem(
                422, "Validation Failed", errors=[{"resource": "Status", "field": "state", "code": "invalid"}]
            )
        self._clock += 1
        posted = {
            "id": self._clock,
            "state": payload["state"],
            "description": payload.get("description"),
            "target_url": payload.get("target_url"),
            "context": payload.get("context") or "default",
            "creator": {"login": user},
            "created_at": f"2026-01-01T00:00:{self._clock % 60:02d}Z",
            "updated_at": f"2026-01-01T00:00:{self._clock % 60:02d}Z",
        }
        self.statuses.setdefault((repo, sha), []).insert(0, posted)
        return posted

    def _combined_status(
        self, path: str, query: dict[str, str], repo: str, ref: str
    ) -> tuple[int, Any, dict[str, str]]:
        """GET /repos/{owner}/{repo}/commits/{ref}/status: the latest status per context, paginated."""
        sha = ref if re.fullmatch(r"[0-9a-f]{40}", ref) else self.resolve_head(ref)
        if sha is None:
            raise _problem(422, f"No commit found for SHA: {ref}")
        latest: dict[str, dict[str, Any]] = {}
        for posted in self.statuses.get((repo, sha), []):
            latest.setdefault(posted["context"], posted)
        states = {s["state"] for s in latest.values()}
        state = (
            "failure"
            if states & {"error", "failure"}
            else "pending"
            if not states or "pending" in states
            else "success"
        )
        code, page, extra = self._page(path, query, list(latest.values()))
        return code, {"state": state, "sha": sha, "total_count": len(latest), "statuses": page}, extra

    def _repository(self, repo: str, user: str) -> dict[str, Any]:
        """GET /repos/{owner}/{repo}: a private repository, seen only by its collaborators and readers, with
        the `permissions` GitHub lists for the authenticated user."""
        push = user in self.repos.get(repo, set())
        if not push and user not in self.readers.get(repo, set()):
            raise _problem(404, "Not Found")
        return {
            "full_name": repo,
            "private": True,
            "default_branch": "main",
            "permissions": {"admin": False, "maintain": False, "push": push, "triage": push, "pull": True},
        }

    def _user(self, authorization: str) -> str:
        if not authorization:
            raise _problem(401, "Requires authentication")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() not in ("bearer", "token") or token not in self.tokens:
            raise _problem(401, "Bad credentials")
        return self.tokens[token]

    def _find(self, repo: str, query: dict[str, str]) -> list[_Pull]:
        state = query.get("state", "open")
        owner = repo.split("/", maxsplit=1)[0]
        return [
            p
            for p in self.pulls.values()
            if p.repo == repo
            and state in ("all", p.state)
            and query.get("head") in (None, f"{owner}:{p.head}")
            and query.get("base") in (None, p.base)
        ]

    def _create(self, repo: str, user: str, payload: Any) -> Any:
        owner = repo.split("/", maxsplit=1)[0]
        head = str(payload.get("head", "")).removeprefix(f"{owner}:")
        base = str(payload.get("base", ""))
        if not payload.get("title"):
            raise _problem(
                422,
                "Validation Failed",
                errors=[{"resource": "PullRequest", "field": "title", "code": "missing_field"}],
            )
        if self.resolve_head(head) is None:
            raise _problem(
                422, "Validation Failed", errors=[{"resource": "PullRequest", "field": "head", "code": "invalid"}]
            )
        if any(p.head == head and p.base == base for p in self._find(repo, {"state": "open"})):
            message = f"A pull request already exists for {owner}:{head}."
            raise _problem(
                422, "Validation Failed", errors=[{"resource": "PullRequest", "code": "custom", "message": message}]
            )
        number = self._next_number()
        self.pulls[number] = _Pull(number, repo, user, head, base, str(payload["title"]), payload.get("body"))
        return self._json(self.pulls[number])

    def _update(self, pull: _Pull, payload: Any) -> Any:
        for name in ("title", "body", "base"):
            if name in payload:
                setattr(pull, name, payload[name])
        if payload.get("state") in ("open", "closed") and payload["state"] != pull.state:
            pull.closed_sha = self._head_sha(pull) if payload["state"] == "closed" else None
            pull.state = payload["state"]
        return self._json(pull)

    def _collection(  # noqa: PLR0917 (the request's parts, as _route has them)
        self, method: str, kind: str, repo: str, path: str, query: dict[str, str], user: str, payload: Any
    ) -> tuple[int, Any, dict[str, str]]:
        if kind == "pulls" and method == "GET":
            return 200, [self._json(p) for p in self._find(repo, query)], {}
        if kind == "pulls" and method == "POST":
            return 201, self._create(repo, user, payload), {}
        if kind == "issues" and method == "GET":
            return self._page(path, query, self._list_issues(repo, query))
        if kind == "issues" and method == "POST":
            return 201, self._create_issue(repo, user, payload), {}
        raise _problem(404, "Not Found")

    def _next_number(self) -> int:
        return max([*self.pulls, *self.issues], default=0) + 1

    def _list_issues(self, repo: str, query: dict[str, str]) -> list[dict[str, Any]]:
        """GET /repos/{owner}/{repo}/issues: issues and pull requests (these with a `pull_request` key), filtered
        by state (default open) and every one of `labels`, sorted by creation (default newest first)."""
        state = query.get("state", "open")
        wanted = {name for name in query.get("labels", "").split(",") if name}
        every: list[_Issue | _Pull] = [*self.issues.values(), *self.pulls.values()]
        found = [
            (i.number, self._issue_json(i))
            for i in every
            if i.repo == repo and state in ("all", i.state) and wanted <= set(i.labels)
        ]
        found.sort(key=lambda item: item[0], reverse=query.get("direction", "desc") == "desc")
        return [item for _, item in found]

    def _create_issue(self, repo: str, user: str, payload: Any) -> dict[str, Any]:
        if not isinstance(payload, dict) or not payload.get("title"):
            raise _problem(
                422, "Validation Failed", errors=[{"resource": "Issue", "field": "title", "code": "missing_field"}]
            )
        # GitHub: "Only users with push access can set labels for new issues. Labels are silently dropped otherwise."
        labels = [str(name) for name in payload.get("labels", [])] if user in self.repos[repo] else []
        number = self._next_number()
        self.issues[number] = _Issue(number, repo, user, str(payload["title"]), payload.get("body"), labels)
        return self._issue_json(self.issues[number])

    def _issue_route(
        self, method: str, issue: _Issue, sub: str | None, user: str, payload: Any
    ) -> tuple[int, Any, dict[str, str]]:
        if (method, sub) == ("GET", None):
            return 200, self._issue_json(issue), {}
        if (method, sub) == ("PATCH", None):
            return 200, self._update_issue(issue, payload), {}
        if (method, sub) == ("POST", "comments"):
            if not isinstance(payload, dict) or not payload.get("body"):
                raise _problem(
                    422, "Validation Failed", errors=[{"resource": "IssueComment", "field": "body", "code": "missing"}]
                )
            self._clock += 1
            comment = {"id": self._clock, "body": payload["body"], "user": {"login": user}}
            issue.comments.append(comment)
            return 201, comment, {}
        raise _problem(404, "Not Found")

    def _update_issue(self, issue: _Issue, payload: Any) -> dict[str, Any]:
        state = payload.get("state", issue.state)
        reason = payload.get("state_reason")
        if state not in ("open", "closed") or reason not in (None, "completed", "not_planned", "reopened"):
            raise _problem(
                422, "Validation Failed", errors=[{"resource": "Issue", "field": "state", "code": "invalid"}]
            )
        for name in ("title", "body"):
            if name in payload:
                setattr(issue, name, payload[name])
        if state != issue.state:
            issue.state_reason = reason or ("completed" if state == "closed" else "reopened")
            issue.state = state
        return self._issue_json(issue)

    def _issue_json(self, item: _Issue | _Pull) -> dict[str, Any]:
        """An issue as GitHub answers it; a pull request, listed among the issues, carries `pull_request`."""
        page = "issues" if isinstance(item, _Issue) else "pull"
        found = {
            "url": f"{self.url}/repos/{item.repo}/issues/{item.number}",
            "html_url": f"https://github.example/{item.repo}/{page}/{item.number}",
            "number": item.number,
            "state": item.state,
            "title": item.title,
            "body": item.body,
            "user": {"login": item.author},
            "labels": [{"name": name} for name in item.labels],
        }
        if isinstance(item, _Issue):
            return found | {"state_reason": item.state_reason, "comments": len(item.comments)}
        return found | {"pull_request": {"url": f"{self.url}/repos/{item.repo}/pulls/{item.number}"}}

    def _request_reviewers(self, pull: _Pull, payload: Any) -> Any:
        reviewers = list(payload.get("reviewers", []))
        if pull.author in reviewers:
            raise _problem(422, "Review cannot be requested from pull request author.")
        if any(r not in self.repos[pull.repo] for r in reviewers):
            raise _problem(
                422,
                "Reviews may only be requested from collaborators. One or more of the users or teams you "
                f"specified is not a collaborator of the {pull.repo} repository.",
            )
        pull.requested.extend(r for r in reviewers if r not in pull.requested)
        return self._json(pull)

    def _page(self, path: str, query: dict[str, str], items: list[Any]) -> tuple[int, Any, dict[str, str]]:
        per_page = min(int(query.get("per_page", 30)), 100)
        page = int(query.get("page", 1))
        last = max((len(items) + per_page - 1) // per_page, 1)
        links = {"next": page + 1, "last": last} if page < last else {}
        if page > 1:
            links |= {"first": 1, "prev": page - 1}
        link = ", ".join(
            f'<{self.url}{path}?{urllib.parse.urlencode({**query, "page": n})}>; rel="{rel}"'
            for rel, n in links.items()
        )
        return 200, items[(page - 1) * per_page : page * per_page], {"link": link} if link else {}

    def _head_sha(self, pull: _Pull) -> str:
        # An open pull request follows its branch, as on GitHub; a closed one keeps its last head.
        return pull.closed_sha or self.resolve_head(pull.head) or "0" * 40

    def _json(self, pull: _Pull) -> dict[str, Any]:
        owner = pull.repo.split("/")[0]
        return {
            "url": f"{self.url}/repos/{pull.repo}/pulls/{pull.number}",
            "html_url": f"https://github.example/{pull.repo}/pull/{pull.number}",
            "number": pull.number,
            "state": pull.state,
            "title": pull.title,
            "body": pull.body,
            "user": {"login": pull.author},
            "head": {"label": f"{owner}:{pull.head}", "ref": pull.head, "sha": self._head_sha(pull)},
            "base": {"label": f"{owner}:{pull.base}", "ref": pull.base},
            "labels": [{"name": name} for name in pull.labels],
            "requested_reviewers": [{"login": login} for login in pull.requested],
        }


def _handler(fake: FakeGitHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = {name.lower(): value for name, value in self.headers.items()}
            status, answer, extra = fake.handle(self.command, self.path, headers, body)
            data = b"" if answer is None else json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            for name, value in extra.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _serve

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: tests read `fake.requests` instead."""

    return Handler
