"""The console's security rules over HTTP, on the real Redis and Kafka: login, roles,
CSRF, Origin, Host, the security headers, the login rate limit, escaping."""

from __future__ import annotations

import pytest

from inferloop.console.errors import ConsoleConfigError
from inferloop.console.serve import check
from inferloop.settings import ConsoleSettings
from tests.console.conftest import (
    HOSTILE,
    OPERATOR_TOKEN,
    VIEWER_TOKEN,
    ClientFactory,
    Loop,
    csrf_of,
)


def test_every_page_needs_a_login(client_factory: ClientFactory) -> None:
    client = client_factory()
    for path in ("/", "/versions/emails", "/versions/emails/1", "/timeline/emails",
                 "/dlq/emails", "/dlq/emails/0:0", "/actions"):  # fmt: skip
        answer = client.get(path, follow_redirects=False)
        assert (answer.status_code, answer.headers["location"]) == (303, "/login"), path


def test_the_session_cookie_is_httponly_and_samesite_strict(client_factory: ClientFactory) -> None:
    client = client_factory()
    answer = client.post(
        "/login", data={"token": OPERATOR_TOKEN, "csrf": csrf_of(client, "/login")},
        follow_redirects=False,
    )  # fmt: skip
    cookie = answer.headers["set-cookie"].lower()
    assert "httponly" in cookie
    assert "samesite=strict" in cookie


def test_security_headers_forbid_inline_script(client_factory: ClientFactory) -> None:
    answer = client_factory().get("/login")
    csp = answer.headers["content-security-policy"]
    assert "default-src 'none'" in csp
    assert "script-src" not in csp  # falls back to default-src 'none': no script at all
    assert "unsafe-inline" not in csp
    assert answer.headers["x-frame-options"] == "DENY"
    assert "<script" not in answer.text
    assert "<style" not in answer.text


def test_a_host_not_allowed_is_refused(client_factory: ClientFactory) -> None:
    answer = client_factory().get("/login", headers={"host": "rebound.example"})
    assert answer.status_code == 400


def test_a_post_from_another_origin_or_without_one_is_refused(
    client_factory: ClientFactory, loop: Loop
) -> None:
    client = client_factory(OPERATOR_TOKEN)
    csrf = csrf_of(client, "/actions")
    form = {"csrf": csrf, "reason": "x", "confirm": "yes"}
    assert client.post("/actions/rollback/emails", data=form,
                       headers={"origin": "http://evil.example"}).status_code == 403  # fmt: skip
    del client.headers["origin"]
    assert client.post("/actions/rollback/emails", data=form).status_code == 403
    assert loop.registry.resolve("emails").version == 2  # type: ignore[union-attr]


def test_an_action_without_the_csrf_token_is_refused(
    client_factory: ClientFactory, loop: Loop
) -> None:
    client = client_factory(OPERATOR_TOKEN)
    answer = client.post("/actions/rollback/emails", data={"reason": "x", "confirm": "yes"})
    assert answer.status_code == 403
    assert loop.registry.resolve("emails").version == 2  # type: ignore[union-attr]


def test_a_viewer_reads_but_cannot_act(client_factory: ClientFactory, loop: Loop) -> None:
    client = client_factory(VIEWER_TOKEN)
    assert client.get("/").status_code == 200
    csrf = csrf_of(client, "/actions")
    form = {"csrf": csrf, "reason": "viewer tries", "confirm": "yes"}
    answer = client.post("/actions/rollback/emails", data=form)
    assert answer.status_code == 403
    assert "viewers cannot act" in answer.text
    assert loop.registry.resolve("emails").version == 2  # type: ignore[union-attr]


def test_an_operator_rolls_back_and_promotes_with_their_name_in_the_history(
    client_factory: ClientFactory, loop: Loop
) -> None:
    client = client_factory(OPERATOR_TOKEN)
    csrf = csrf_of(client, "/actions")
    unconfirmed = client.post("/actions/rollback/emails", data={"csrf": csrf, "reason": "r"})
    assert unconfirmed.status_code == 400
    form = {"csrf": csrf, "reason": "bad live recall", "confirm": "yes"}
    back = client.post("/actions/rollback/emails", data=form)
    assert back.status_code == 200, back.text
    assert loop.registry.resolve("emails").version == 1  # type: ignore[union-attr]
    again = client.post("/actions/promote/emails", data={
        "csrf": csrf, "reason": "reviewed", "confirm": "yes", "version": "2"})  # fmt: skip
    # v2 is rolled_back now: promoting it again needs a review, which the page refuses.
    assert again.status_code == 409
    entries = loop.registry.history("emails", limit=10)
    assert (entries[0].actor, entries[0].reason) == ("console:alice", "bad live recall")


def test_failed_logins_are_rate_limited(client_factory: ClientFactory) -> None:
    client = client_factory()
    csrf = csrf_of(client, "/login")
    codes = [client.post("/login", data={"token": f"wrong-{i}", "csrf": csrf}).status_code
             for i in range(5)]  # fmt: skip
    assert codes == [401] * 5
    # Even the right token is refused while the limit holds.
    right = client.post("/login", data={"token": OPERATOR_TOKEN, "csrf": csrf})
    assert right.status_code == 429


def test_a_hostile_dead_letter_renders_as_text(client_factory: ClientFactory) -> None:
    client = client_factory(VIEWER_TOKEN)
    listing = client.get("/dlq/emails")
    assert listing.status_code == 200
    assert "invalid_json" in listing.text
    one = client.get("/dlq/emails/0:0")
    assert one.status_code == 200
    assert HOSTILE not in one.text
    assert "<script" not in one.text
    assert "&lt;script id=&#34;hostile&#34;&gt;" in one.text


def test_every_page_renders_real_data(client_factory: ClientFactory) -> None:
    client = client_factory(VIEWER_TOKEN)
    overview = client.get("/").text
    assert 'href="/versions/emails/2">v2</a>' in overview
    assert "invalid_json</a>: 1" in overview
    versions = client.get("/versions/emails").text
    assert 'id="v1"' in versions
    assert 'id="v2"' in versions
    version = client.get("/versions/emails/2").text
    assert "emails.labels" in version  # its lineage
    timeline = client.get("/timeline/emails").text
    assert timeline.count("<td>setup</td>") == 2
    assert client.get("/actions").status_code == 200
    assert client.get("/versions/nowhere").status_code == 404


def test_a_public_bind_without_tls_or_tokens_is_refused() -> None:
    with pytest.raises(ConsoleConfigError):
        check(ConsoleSettings(host="0.0.0.0", operator_token_hashes=("x",)))
    with pytest.raises(ConsoleConfigError):
        check(ConsoleSettings())
    check(ConsoleSettings(operator_token_hashes=("x",)))


def test_over_tls_the_cookie_is_secure_and_the_origin_is_https(loop: Loop) -> None:
    from starlette.testclient import TestClient

    from inferloop.console.app import create_app

    app = create_app(loop.settings, loop.registry, tls=True)
    with TestClient(app, base_url="https://testserver") as client:
        client.headers["origin"] = "https://testserver"
        page = client.get("/login").text
        csrf = page.split('name="csrf" value="')[1].split('"')[0]
        answer = client.post(
            "/login", data={"token": OPERATOR_TOKEN, "csrf": csrf}, follow_redirects=False
        )
        assert answer.status_code == 303
        assert "secure" in answer.headers["set-cookie"].lower()
        client.headers["origin"] = "http://testserver"
        assert client.post("/logout", data={"csrf": csrf}).status_code == 403
