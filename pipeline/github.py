"""GitHub's REST API: the review pull request, its labels and reviewers, and its reviews."""

from __future__ import annotations

import http
import http.client
import json
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import KW_ONLY, dataclass, field
from datetime import UTC, datetime
from email.message import Message
from typing import IO, Any, NamedTuple

from pipeline import redact
from pipeline.errors import (
    BadInput,
    GitHubAuthError,
    GitHubError,
    GitHubForbidden,
    GitHubNotFound,
    GitHubRateLimited,
    GitHubRejected,
    GitHubReviewerInvalid,
    GitHubUnavailable,
)

API_VERSION = "2022-11-28"
_USER_AGENT = "fleet-pipeline"
_TIMEOUT = 30.0
_PERMISSIONS = "contents:write and pull-requests:write"
# git@host:owner/name.git (scp-like); every other form is a URL with a path.
_SCP_REMOTE = re.compile(r"^[\w.-]+@[\w.-]+:(?P<path>[^/].*)$")
_OWNER = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?$")
_NAME = re.compile(r"^[A-Za-z0-9._-]+$")
_NEXT_LINK = re.compile(r'<([^>]+)>\s*;\s*rel="next"')
# A comment leaves the reviewer's verdict standing; a dismissal withdraws it.
_VERDICTS = frozenset({"APPROVED", "CHANGES_REQUESTED", "DISMISSED"})


@dataclass(frozen=True)
class PullRequest:
    number: int
    url: str
    head_ref: str
    head_sha: str
    base_ref: str
    state: str
    title: str
    body: str
    requested_reviewers: tuple[str, ...] = ()


@dataclass(frozen=True)
class CommitStatus:
    state: str  # error, failure, pending or success
    description: str


@dataclass(frozen=True)
class Review:
    user: str
    state: str
    commit_id: str
    submitted_at: str


@dataclass(frozen=True)
class Issue:
    number: int
    url: str
    title: str
    body: str
    state: str


def repo_from_remote(url: str) -> tuple[str, str]:
    """Owner and name of a GitHub (or GitHub Enterprise) repository from its git remote URL."""
    scp = _SCP_REMOTE.match(url.strip())
    if scp:
        path = scp["path"]
    else:
        parts = urllib.parse.urlsplit(url.strip())
        path = parts.path if parts.scheme in ("https", "http", "ssh", "git") and parts.hostname else ""
    owner, _, name = path.strip("/").removesuffix(".git").partition("/")
    if not (_OWNER.match(owner) and _NAME.match(name)):
        # Remote URLs may carry credentials (https://user:token@host/...): never echo them.
        shown = redact.redact(re.sub(r"//[^/@]*@", "//", url))
        raise BadInput(f"cannot tell the GitHub repository from remote {shown!r}; pass --github-repo OWNER/NAME")
    return owner, name


class _Response(NamedTuple):
    status: int
    headers: Message
    data: Any


class _SameHostRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects (renamed repositories) only on the same host: they carry the token."""

    def redirect_request(  # noqa: PLR0917 (urllib's signature)
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: http.client.HTTPMessage,
        newurl: str,
    ) -> urllib.request.Request | None:
        if urllib.parse.urlsplit(newurl).netloc != urllib.parse.urlsplit(req.full_url).netloc:
            return None
        return super().redirect_request(req, fp, code, msg, headers, newurl)


_OPENER = urllib.request.build_opener(_SameHostRedirects)


@dataclass(frozen=True)
class Client:
    """A GitHub REST client with bounded retries for rate limits and server errors."""

    api_url: str
    token: str = field(repr=False)
    _: KW_ONLY
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.time
    max_retries: int = 4
    max_wait: float = 60.0

    def __post_init__(self) -> None:
        redact.register([self.token])
        object.__setattr__(self, "api_url", self.api_url.rstrip("/"))

    def check_push_access(self, owner: str, repo: str) -> None:
        """That the token is good and may push to the repository: GitHub's repository object lists the
        authenticated user's permissions on it. A token for which GitHub lists none is judged by its writes."""
        slug = f"{owner}/{repo}"
        found = self._call("GET", self._url(f"/repos/{slug}"), slug).data
        permissions = found.get("permissions") if isinstance(found, dict) else None
        if isinstance(permissions, dict) and not permissions.get("push"):
            raise GitHubForbidden(
                _one_line(f"the token may read {slug} but not push to it; GITHUB_TOKEN needs {_PERMISSIONS} on {slug}")
            )

    def find_open_pull(self, owner: str, repo: str, head_branch: str, base: str) -> PullRequest | None:
        query = {"state": "open", "head": f"{owner}:{head_branch}", "base": base}
        found = self._call("GET", self._url(f"/repos/{owner}/{repo}/pulls", query), f"{owner}/{repo}").data
        return _pull(found[0]) if found else None

    def create_pull(  # noqa: PLR0917 (the call contract review.py uses)
        self, owner: str, repo: str, head: str, base: str, title: str, body: str
    ) -> PullRequest:
        slug = f"{owner}/{repo}"
        payload = {"head": head, "base": base, "title": title, "body": body}
        response = self._call("POST", self._url(f"/repos/{slug}/pulls"), slug, body=payload, allow=(422,))
        if response.status != 422:
            return _pull(response.data)
        # Another run opened it between our lookup and this call: converge on that one.
        existing = self.find_open_pull(owner, repo, head, base) if _already_exists(response.data) else None
        if existing is None:
            raise _error(response, "POST", f"/repos/{slug}/pulls", slug, attempts=1)
        return self.update_pull(owner, repo, existing.number, title=title, body=body)

    def update_pull(self, owner: str, repo: str, number: int, title: str, body: str) -> PullRequest:
        url = self._url(f"/repos/{owner}/{repo}/pulls/{number}")
        return _pull(
            self._call("PATCH", url, f"{owner}/{repo}", number=number, body={"title": title, "body": body}).data
        )

    def add_labels(self, owner: str, repo: str, number: int, labels: Sequence[str]) -> None:
        url = self._url(f"/repos/{owner}/{repo}/issues/{number}/labels")
        self._call("POST", url, f"{owner}/{repo}", number=number, body={"labels": list(labels)})

    def request_reviewers(self, owner: str, repo: str, number: int, reviewers: Sequence[str]) -> None:
        slug = f"{owner}/{repo}"
        url = self._url(f"/repos/{slug}/pulls/{number}/requested_reviewers")
        response = self._call("POST", url, slug, number=number, body={"reviewers": list(reviewers)}, allow=(422,))
        if response.status == 422:
            # GitHub refuses the author of the pull request and anyone who is not a collaborator.
            raise GitHubReviewerInvalid(
                _one_line(
                    f"GitHub refused reviewers {', '.join(reviewers)} for {slug}#{number}: "
                    f'"{_message(response)}"; reviewers must be collaborators on {slug} and not the '
                    "pull request's author (the token's user): change the reviewers"
                )
            )

    def reviews(self, owner: str, repo: str, number: int) -> list[Review]:
        found: list[Review] = []
        url: str | None = self._url(f"/repos/{owner}/{repo}/pulls/{number}/reviews", {"per_page": "100"})
        while url is not None:
            response = self._call("GET", url, f"{owner}/{repo}", number=number)
            found.extend(_review(item) for item in response.data)
            url = self._next_page(response.headers.get("Link"))
        return found

    def commit_statuses(self, owner: str, repo: str, ref: str) -> dict[str, CommitStatus]:
        """The latest status of each context on a commit (GitHub's combined status), every page of it."""
        found: dict[str, CommitStatus] = {}
        slug = f"{owner}/{repo}"
        url: str | None = self._url(f"/repos/{slug}/commits/{ref}/status", {"per_page": "100"})
        while url is not None:
            response = self._call("GET", url, slug)
            for item in response.data.get("statuses", []):
                found.setdefault(
                    str(item["context"]), CommitStatus(str(item["state"]), str(item.get("description") or ""))
                )
            url = self._next_page(response.headers.get("Link"))
        return found

    def open_issues(self, owner: str, repo: str, label: str) -> list[Issue]:
        """Every open issue with `label`, oldest first, every page; the pull requests that GitHub's issues
        endpoint lists too are left out."""
        slug = f"{owner}/{repo}"
        query = {"labels": label, "state": "open", "sort": "created", "direction": "asc", "per_page": "100"}
        found: list[Issue] = []
        url: str | None = self._url(f"/repos/{slug}/issues", query)
        while url is not None:
            response = self._call("GET", url, slug)
            found.extend(_issue(item) for item in response.data if "pull_request" not in item)
            url = self._next_page(response.headers.get("Link"))
        return found

    def create_issue(self, owner: str, repo: str, title: str, body: str, labels: Sequence[str]) -> Issue:
        slug = f"{owner}/{repo}"
        payload = {"title": title, "body": body, "labels": list(labels)}
        return _issue(self._call("POST", self._url(f"/repos/{slug}/issues"), slug, body=payload).data)

    def update_issue(self, owner: str, repo: str, number: int, body: str) -> Issue:
        url = self._url(f"/repos/{owner}/{repo}/issues/{number}")
        return _issue(self._call("PATCH", url, f"{owner}/{repo}", body={"body": body}).data)

    def close_issue(self, owner: str, repo: str, number: int, comment: str) -> Issue:
        """Say why in a comment, then close the issue as completed."""
        slug = f"{owner}/{repo}"
        self._call("POST", self._url(f"/repos/{slug}/issues/{number}/comments"), slug, body={"body": comment})
        closing = {"state": "closed", "state_reason": "completed"}
        return _issue(self._call("PATCH", self._url(f"/repos/{slug}/issues/{number}"), slug, body=closing).data)

    def _url(self, path: str, query: Mapping[str, str] | None = None) -> str:
        return f"{self.api_url}{path}" + (f"?{urllib.parse.urlencode(query)}" if query else "")

    def _next_page(self, link: str | None) -> str | None:
        found = _NEXT_LINK.search(link or "")
        if found is None:
            return None
        # The token goes wherever the link points: follow it only within the API.
        if not found[1].startswith(f"{self.api_url}/"):
            raise GitHubRejected(_one_line(f"GitHub's next page {found[1]} is outside {self.api_url}; not followed"))
        return found[1]

    def _call(
        self,
        method: str,
        url: str,
        slug: str,
        *,
        number: int | None = None,
        body: object = None,
        allow: Collection[int] = (),
    ) -> _Response:
        """Send one call, waiting out rate limits and retrying server errors within the bounds."""
        attempt = 0
        while True:
            response = self._send(method, url, body)
            if 200 <= response.status < 300 or response.status in allow:
                return response
            self.sleep(self._retry_wait(response, method, url, slug=slug, number=number, attempt=attempt))
            attempt += 1

    def _retry_wait(
        self, response: _Response, method: str, url: str, *, slug: str, number: int | None, attempt: int
    ) -> float:
        """Seconds to wait before the next attempt, or the error if there is none to make."""
        now = self.clock()
        wait = _rate_limit_wait(response, now, attempt)
        if wait is not None:
            if wait > self.max_wait or attempt >= self.max_retries:
                retry_at = datetime.fromtimestamp(now + wait, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
                raise GitHubRateLimited(
                    _one_line(
                        f'GitHub rate limit hit ({response.status} "{_message(response)}") after {attempt + 1} '
                        f"attempt(s); retry after {retry_at} (in {wait:.0f} s)"
                    )
                )
            return wait
        if response.status >= 500 and attempt < self.max_retries:
            # 1, 2, 4, 8 s: a blip passes, an outage fails within seconds.
            return min(2.0**attempt, self.max_wait)
        path = urllib.parse.urlsplit(url).path
        raise _error(response, method, path, slug, number, attempts=attempt + 1)

    def _send(self, method: str, url: str, body: object) -> _Response:
        data = None if body is None else json.dumps(body).encode()
        headers = {
            "Authorization": f"Bearer {self.token}",
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": API_VERSION,
            "User-Agent": _USER_AGENT,
        }
        if data is not None:
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(url, data=data, headers=headers, method=method)
        try:
            with _OPENER.open(request, timeout=_TIMEOUT) as reply:
                return _Response(reply.status, reply.headers, _json(reply.read()))
        except urllib.error.HTTPError as refused:
            with refused:
                return _Response(refused.code, refused.headers, _json(refused.read()))
        except (urllib.error.URLError, OSError) as failed:
            reason = failed.reason if isinstance(failed, urllib.error.URLError) else failed
            raise GitHubUnavailable(
                _one_line(f"cannot reach GitHub at {self.api_url} ({reason}); check GITHUB_API_URL and the network")
            ) from failed


def open_or_update(  # noqa: PLR0917 (the call contract review.py uses)
    client: Client,
    owner: str,
    repo: str,
    branch: str,
    base: str,
    title: str,
    body: str,
    labels: Sequence[str],
    reviewers: Sequence[str],
) -> PullRequest:
    """The one open pull request for `branch`, created or brought up to date, labelled and with reviewers.

    A re-run with nothing new changes nothing on GitHub: no edit, no repeated review request.
    """
    pull = client.find_open_pull(owner, repo, branch, base)
    if pull is None:
        pull = client.create_pull(owner, repo, branch, base, title=title, body=body)
    elif (pull.title, pull.body) != (title, body):
        pull = client.update_pull(owner, repo, pull.number, title=title, body=body)
    if labels:
        client.add_labels(owner, repo, pull.number, labels)
    if reviewers:
        # Asking again notifies again: skip those already asked or who reviewed this very commit.
        settled = {login.lower() for login in pull.requested_reviewers}
        settled |= {r.user.lower() for r in client.reviews(owner, repo, pull.number) if r.commit_id == pull.head_sha}
        missing = [login for login in reviewers if login.lower() not in settled]
        if missing:
            client.request_reviewers(owner, repo, pull.number, missing)
    return pull


def approved_at(reviews: Iterable[Review], head_sha: str) -> bool:
    """Whether the reviews approve exactly `head_sha`, with no reviewer still requesting changes."""
    latest: dict[str, Review] = {}
    for review in sorted(reviews, key=lambda r: r.submitted_at):
        if review.state in _VERDICTS:
            latest[review.user.lower()] = review
    verdicts = latest.values()
    approved = any(r.state == "APPROVED" and r.commit_id == head_sha for r in verdicts)
    return approved and not any(r.state == "CHANGES_REQUESTED" for r in verdicts)


def _rate_limit_wait(response: _Response, now: float, attempt: int) -> float | None:
    """GitHub's documented order: retry-after, then the primary limit's reset, then at least a minute."""
    if response.status not in (403, 429):
        return None
    retry_after = response.headers.get("retry-after")
    if retry_after is not None and retry_after.strip().isdigit():
        return float(retry_after)
    reset = response.headers.get("x-ratelimit-reset")
    if response.headers.get("x-ratelimit-remaining") == "0" and reset is not None and reset.strip().isdigit():
        # Clocks differ a little; never hammer a limit that should have reset already.
        return max(float(reset) - now, 1.0)
    if "rate limit" in _message(response).lower():
        return 60.0 * 2.0**attempt
    return None


def _error(
    response: _Response, method: str, path: str, slug: str, number: int | None = None, *, attempts: int
) -> GitHubError:
    message = _message(response)
    status = response.status
    if status == 401:
        return GitHubAuthError(_one_line(f"GitHub rejected the token ({status} {message}); check GITHUB_TOKEN"))
    if status == 404:
        what = f"pull request #{number} in {slug}" if number is not None else f"repository {slug}"
        return GitHubNotFound(
            _one_line(
                f'GitHub answered 404 "{message}" for {what}: it does not exist or the token cannot see it '
                f"(GitHub answers 404 for both); check the name and that GITHUB_TOKEN has {_PERMISSIONS} on {slug}"
            )
        )
    if status == 403:
        return GitHubForbidden(
            _one_line(
                f'GitHub refused {method} {path} (403 "{message}"); '
                f"the token lacks permission: GITHUB_TOKEN needs {_PERMISSIONS} on {slug}"
            )
        )
    if 300 <= status < 400:
        # Only a redirect to another host reaches here (see _SameHostRedirects).
        return GitHubRejected(
            _one_line(
                f"GitHub redirected {method} {path} to {response.headers.get('Location')}, another host; "
                "not followed, as it would carry the token: check GITHUB_API_URL"
            )
        )
    if status >= 500:
        return GitHubUnavailable(
            _one_line(
                f'GitHub failed {method} {path} ({status} "{message}") {attempts} time(s); '
                "retry later (https://www.githubstatus.com)"
            )
        )
    details = "; ".join(_detail(e) for e in _errors(response.data))
    return GitHubRejected(
        _one_line(f'GitHub rejected {method} {path} ({status} "{message}"' + (f": {details})" if details else ")"))
    )


def _already_exists(data: Any) -> bool:
    return any("pull request already exists" in _detail(e).lower() for e in _errors(data))


def _errors(data: Any) -> list[Any]:
    errors = data.get("errors") if isinstance(data, dict) else None
    return errors if isinstance(errors, list) else []


def _detail(error: Any) -> str:
    if isinstance(error, dict):
        fallback = " ".join(str(error[k]) for k in ("resource", "field", "code") if k in error)
        return str(error.get("message") or fallback)
    return str(error)


def _message(response: _Response) -> str:
    if isinstance(response.data, dict) and response.data.get("message"):
        return str(response.data["message"])
    try:
        return http.HTTPStatus(response.status).phrase
    except ValueError:
        return "no message"


def _one_line(text: str) -> str:
    return redact.redact(" ".join(text.split()))


def _json(raw: bytes) -> Any:
    # A proxy or load balancer in front of GitHub may answer with HTML.
    try:
        return json.loads(raw) if raw.strip() else None
    except ValueError:
        return None


def _pull(data: Mapping[str, Any]) -> PullRequest:
    return PullRequest(
        number=int(data["number"]),
        url=str(data["html_url"]),
        head_ref=str(data["head"]["ref"]),
        head_sha=str(data["head"]["sha"]),
        base_ref=str(data["base"]["ref"]),
        state=str(data["state"]),
        title=str(data["title"]),
        body=str(data.get("body") or ""),
        requested_reviewers=tuple(str(u["login"]) for u in data.get("requested_reviewers") or ()),
    )


def _issue(data: Mapping[str, Any]) -> Issue:
    return Issue(
        number=int(data["number"]),
        url=str(data["html_url"]),
        title=str(data["title"]),
        body=str(data.get("body") or ""),
        state=str(data["state"]),
    )


def _review(data: Mapping[str, Any]) -> Review:
    user = data.get("user") or {}
    return Review(
        # A deleted account's reviews have no user; GitHub shows them as "ghost".
        user=str(user.get("login") or "ghost"),
        state=str(data["state"]),
        commit_id=str(data.get("commit_id") or ""),
        submitted_at=str(data.get("submitted_at") or ""),
    )
