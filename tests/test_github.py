from __future__ import annotations

import subprocess
from collections.abc import Sequence

import pytest

from pipeline import github
from pipeline.errors import (
    EXIT_BAD_INPUT,
    EXIT_BLOCKED,
    EXIT_FAILED,
    BadInput,
    GitHubAuthError,
    GitHubForbidden,
    GitHubNotFound,
    GitHubRateLimited,
    GitHubRejected,
    GitHubReviewerInvalid,
    GitHubUnavailable,
)
from pipeline.github import Client, Review, approved_at, open_or_update
from tests.fixtures import free_port
from tests.github_fake import BOT, TOKEN, FakeGitHub

SHA1 = "1" * 40
SHA2 = "2" * 40
NOW = 1_700_000_000.0


class FakeTime:
    """A clock that only moves when slept on, recording every sleep."""

    def __init__(self) -> None:
        self.now = NOW
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@pytest.fixture
def fake():
    with FakeGitHub() as server:
        server.set_head_sha("cluster/demo", SHA1)
        yield server


@pytest.fixture
def time_():
    return FakeTime()


@pytest.fixture
def client(fake, time_):
    return Client(fake.url, TOKEN, sleep=time_.sleep, clock=time_.clock)


def converge(
    client: Client, body: str = "Creates demo.", labels: Sequence[str] = (), reviewers: Sequence[str] = ()
) -> github.PullRequest:
    return open_or_update(
        client,
        "octo",
        "fleet",
        "cluster/demo",
        "main",
        title="Cluster demo",
        body=body,
        labels=labels,
        reviewers=reviewers,
    )


def one_line(error: BaseException) -> str:
    text = str(error)
    assert "\n" not in text
    assert TOKEN not in text
    return text


def test_remote_urls_of_every_form_name_the_repository():
    for url in (
        "git@github.com:octo/fleet.git",
        "https://github.com/octo/fleet",
        "https://github.com/octo/fleet.git",
        "ssh://git@github.com/octo/fleet.git",
        "ssh://git@ghe.example.com:2222/octo/fleet.git",
        "https://x-access-token:secret@ghe.example.com/octo/fleet.git/",
    ):
        assert github.repo_from_remote(url) == ("octo", "fleet"), url


def test_an_unreadable_remote_names_the_flag_and_hides_credentials():
    for url in ("/srv/fleet.git", "https://github.com/octo", "https://u:hunter2secret@host/a/b/c"):
        with pytest.raises(BadInput, match="--github-repo") as raised:
            github.repo_from_remote(url)
        assert raised.value.exit_code == EXIT_BAD_INPUT
        assert "hunter2secret" not in str(raised.value)


def test_the_token_stays_out_of_the_clients_repr(client):
    assert TOKEN not in repr(client)


def test_a_rerun_updates_the_one_pull_request_and_an_unchanged_one_changes_nothing(fake, client):
    first = converge(client)
    second = converge(client, body="Creates demo, now with three zones.")
    writes_before = len(fake.requests)
    third = converge(client, body="Creates demo, now with three zones.")

    assert first.number == second.number == third.number
    assert len(fake.open_pulls()) == 1
    assert second.body == third.body == "Creates demo, now with three zones."
    assert (second.head_ref, second.head_sha, second.base_ref) == ("cluster/demo", SHA1, "main")
    assert second.url == f"https://github.example/octo/fleet/pull/{first.number}"
    assert [r.method for r in fake.requests[writes_before:]] == ["GET"]


def test_a_pull_request_opened_meanwhile_is_found_and_updated(fake, client):
    opened = client.create_pull("octo", "fleet", "cluster/demo", "main", title="Cluster demo", body="old")
    fake.requests.clear()

    again = client.create_pull("octo", "fleet", "cluster/demo", "main", title="Cluster demo", body="new")

    assert again.number == opened.number
    assert again.body == "new"
    assert [(r.method, r.path) for r in fake.requests] == [
        ("POST", "/repos/octo/fleet/pulls"),
        ("GET", "/repos/octo/fleet/pulls"),
        ("PATCH", f"/repos/octo/fleet/pulls/{opened.number}"),
    ]
    assert fake.requests[1].query == {"state": "open", "head": "octo:cluster/demo", "base": "main"}
    assert len(fake.open_pulls()) == 1


def test_another_validation_failure_is_reported_with_githubs_details(fake, client):
    with pytest.raises(GitHubRejected, match=r'422 "Validation Failed": PullRequest head invalid') as raised:
        client.create_pull("octo", "fleet", "no-such-branch", "main", title="t", body="b")
    one_line(raised.value)


def test_labels_and_reviewers_are_sent_once(fake, client):
    pull = converge(client, labels=["cluster", "review"], reviewers=["alice", "bob"])
    converge(client, labels=["cluster", "review"], reviewers=["alice", "bob"])

    labels = [r.json for r in fake.requests if r.path.endswith("/labels")]
    asked = [r.json for r in fake.requests if r.path.endswith("/requested_reviewers")]
    assert labels == [{"labels": ["cluster", "review"]}] * 2
    assert asked == [{"reviewers": ["alice", "bob"]}]
    assert fake.pulls[pull.number].labels == ["cluster", "review"]


def test_a_reviewer_of_an_older_commit_is_asked_again(fake, client):
    pull = converge(client, reviewers=["alice", "bob"])
    fake.add_review(pull.number, "alice", "APPROVED")
    fake.add_review(pull.number, "bob", "APPROVED")
    fake.set_head_sha("cluster/demo", SHA2)

    converge(client, reviewers=["alice", "bob"])
    converge(client, reviewers=["alice", "bob"])

    asked = [r.json for r in fake.requests if r.path.endswith("/requested_reviewers")]
    assert asked == [{"reviewers": ["alice", "bob"]}] * 2


def test_nothing_is_asked_of_github_for_empty_labels_and_reviewers(fake, client):
    converge(client)
    assert [r.method for r in fake.requests] == ["GET", "POST"]


@pytest.mark.parametrize(
    ("reviewer", "quoted"),
    [
        (BOT, "Review cannot be requested from pull request author."),
        ("mallory", "not a collaborator of the octo/fleet"),
    ],
)
def test_a_reviewer_github_refuses_is_bad_input(client, reviewer, quoted):
    with pytest.raises(GitHubReviewerInvalid) as raised:
        converge(client, reviewers=[reviewer])
    assert raised.value.exit_code == EXIT_BAD_INPUT
    assert quoted in one_line(raised.value)
    assert reviewer in str(raised.value)


def test_reviews_follow_every_page(fake, client):
    pull = converge(client)
    for n in range(150):
        fake.add_review(pull.number, f"user{n}", "COMMENTED")
    fake.requests.clear()

    found = client.reviews("octo", "fleet", pull.number)

    assert [r.user for r in found] == [f"user{n}" for n in range(150)]
    assert [r.query for r in fake.requests] == [{"per_page": "100"}, {"per_page": "100", "page": "2"}]


def review(user: str, state: str, commit_id: str = SHA1, minute: int = 0) -> Review:
    return Review(user, state, commit_id, f"2025-01-01T00:{minute:02d}:00Z")


def test_the_latest_verdict_of_each_reviewer_counts():
    assert approved_at([review("alice", "APPROVED")], SHA1)
    assert approved_at([review("alice", "APPROVED", minute=1), review("alice", "COMMENTED", minute=2)], SHA1)
    assert not approved_at([review("alice", "APPROVED", minute=2), review("alice", "DISMISSED", minute=3)], SHA1)
    assert approved_at([review("alice", "CHANGES_REQUESTED", minute=1), review("alice", "APPROVED", minute=2)], SHA1)
    # Judged by submission time, not by the order given.
    assert not approved_at(
        [review("alice", "CHANGES_REQUESTED", minute=2), review("alice", "APPROVED", minute=1)], SHA1
    )
    assert not approved_at([], SHA1)
    assert not approved_at([review("alice", "COMMENTED")], SHA1)


def test_an_approval_of_an_older_commit_does_not_count():
    assert not approved_at([review("alice", "APPROVED", commit_id=SHA2)], SHA1)
    assert approved_at([review("alice", "APPROVED", commit_id=SHA2), review("bob", "APPROVED", minute=1)], SHA1)


def test_changes_requested_by_anyone_block():
    reviews = [review("alice", "APPROVED", minute=1), review("bob", "CHANGES_REQUESTED", commit_id=SHA2, minute=2)]
    assert not approved_at(reviews, SHA1)


def test_approval_is_judged_against_the_branch_head_github_resolves(fake, client, tmp_path):
    bare = tmp_path / "fleet.git"
    work = tmp_path / "work"
    git = ["git", "-c", "commit.gpgsign=false"]
    subprocess.run(["git", "init", "-q", "--bare", str(bare)], check=True)
    subprocess.run(["git", "init", "-q", str(work)], check=True)
    subprocess.run([*git, "-C", str(work), "commit", "-q", "--allow-empty", "-m", "demo"], check=True)
    subprocess.run(["git", "-C", str(work), "push", "-q", str(bare), "HEAD:refs/heads/cluster/demo"], check=True)

    def branch_head(branch: str) -> str | None:
        shown = subprocess.run(
            ["git", "--git-dir", str(bare), "rev-parse", "--verify", "-q", f"refs/heads/{branch}"],
            capture_output=True,
            text=True,
            check=False,
        )
        return shown.stdout.strip() or None

    fake.resolve_head = branch_head
    pull = converge(client)
    fake.add_review(pull.number, "alice", "APPROVED")
    assert approved_at(client.reviews("octo", "fleet", pull.number), pull.head_sha)

    subprocess.run([*git, "-C", str(work), "commit", "-q", "--allow-empty", "-m", "more"], check=True)
    subprocess.run(["git", "-C", str(work), "push", "-q", str(bare), "HEAD:refs/heads/cluster/demo"], check=True)
    moved = converge(client)
    assert moved.head_sha != pull.head_sha
    assert not approved_at(client.reviews("octo", "fleet", pull.number), moved.head_sha)


def test_a_wrong_token_is_one_line_and_the_token_goes_only_in_its_header(fake, time_):
    wrong = "ghp_wrongToken0123456789abcdefABCDEF99"
    with pytest.raises(GitHubAuthError) as raised:
        converge(Client(fake.url, wrong, sleep=time_.sleep, clock=time_.clock))

    assert str(raised.value) == "GitHub rejected the token (401 Bad credentials); check GITHUB_TOKEN"
    assert raised.value.exit_code == EXIT_FAILED
    assert wrong not in repr(raised.value)
    assert time_.slept == []
    request = fake.requests[0]
    assert request.headers["authorization"] == f"Bearer {wrong}"
    assert request.headers["accept"] == "application/vnd.github+json"
    assert request.headers["x-github-api-version"] == "2022-11-28"
    others = [value for name, value in request.headers.items() if name != "authorization"]
    assert all(wrong not in text for text in [request.path, repr(request.query), repr(request.json), *others])


def test_an_invisible_repository_names_it_and_the_permissions(client):
    with pytest.raises(GitHubNotFound) as raised:
        client.find_open_pull("octo", "secret", "cluster/demo", "main")
    text = one_line(raised.value)
    assert '404 "Not Found" for repository octo/secret' in text
    assert "does not exist or the token cannot see it" in text
    assert "contents:write and pull-requests:write" in text


def test_a_missing_pull_request_is_named(client):
    with pytest.raises(GitHubNotFound, match=r"pull request #99 in octo/fleet"):
        client.update_pull("octo", "fleet", 99, title="t", body="b")


def test_forbidden_without_rate_limit_is_a_permission_error_at_once(fake, client, time_):
    fake.fail_next(403, body={"message": "Resource not accessible by personal access token"})
    with pytest.raises(GitHubForbidden) as raised:
        converge(client)
    text = one_line(raised.value)
    assert '403 "Resource not accessible by personal access token"' in text
    assert "contents:write and pull-requests:write" in text
    assert raised.value.exit_code == EXIT_FAILED
    assert time_.slept == []


def test_a_secondary_rate_limit_waits_retry_after_then_succeeds(fake, client, time_):
    fake.fail_next(429, {"retry-after": "1"}, {"message": "You have exceeded a secondary rate limit."})
    assert converge(client).number == 1
    assert time_.slept == [1.0]
    assert len(fake.open_pulls()) == 1


def test_a_secondary_rate_limit_without_headers_waits_a_minute(fake, client, time_):
    fake.fail_next(403, body={"message": "You have exceeded a secondary rate limit. Please wait a few minutes."})
    converge(client)
    assert time_.slept == [60.0]


def test_the_primary_rate_limit_waits_until_its_reset(fake, client, time_):
    fake.fail_next(
        403,
        {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(NOW) + 2)},
        {"message": "API rate limit exceeded for user ID 1."},
    )
    converge(client)
    assert time_.slept == [2.0]


def test_a_reset_beyond_the_longest_wait_blocks_at_once_naming_when(fake, client, time_):
    fake.fail_next(
        429,
        {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(NOW) + 3600)},
        {"message": "API rate limit exceeded for user ID 1."},
    )
    with pytest.raises(GitHubRateLimited) as raised:
        converge(client)
    text = one_line(raised.value)
    assert raised.value.exit_code == EXIT_BLOCKED
    assert "API rate limit exceeded" in text
    assert "retry after 2023-11-14 23:13:20 UTC (in 3600 s)" in text
    assert time_.slept == []
    assert len(fake.requests) == 1


def test_rate_limit_retries_are_bounded(fake, time_):
    client = Client(fake.url, TOKEN, sleep=time_.sleep, clock=time_.clock, max_retries=3)
    fake.fail_next(429, {"retry-after": "1"}, times=100)
    with pytest.raises(GitHubRateLimited, match="after 4 attempt"):
        converge(client)
    assert time_.slept == [1.0, 1.0, 1.0]
    assert len(fake.requests) == 4


def test_server_errors_are_retried_with_backoff_then_reported(fake, client, time_):
    fake.fail_next(502, times=2)
    converge(client)
    assert time_.slept == [1.0, 2.0]

    time_.slept.clear()
    fake.fail_next(503, times=100)
    with pytest.raises(GitHubUnavailable, match=r'503 "Service Unavailable"\) 5 time') as raised:
        converge(client)
    one_line(raised.value)
    assert time_.slept == [1.0, 2.0, 4.0, 8.0]


def test_an_unreachable_api_is_one_line_naming_github_api_url(time_):
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(GitHubUnavailable) as raised:
        Client(url, TOKEN, sleep=time_.sleep, clock=time_.clock).find_open_pull("octo", "fleet", "b", "main")
    text = one_line(raised.value)
    assert url in text
    assert "GITHUB_API_URL" in text
    assert raised.value.exit_code == EXIT_FAILED


def test_a_redirect_to_another_host_is_not_followed_with_the_token(fake, client):
    with FakeGitHub() as elsewhere:
        fake.fail_next(301, {"Location": elsewhere.url.replace("127.0.0.1", "localhost") + "/repos/octo/fleet/pulls"})
        with pytest.raises(GitHubRejected, match="another host; not followed"):
            client.find_open_pull("octo", "fleet", "cluster/demo", "main")
        assert elsewhere.requests == []
