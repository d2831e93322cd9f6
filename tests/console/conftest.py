"""Fixtures of the console tests: a registry with real versions, topics, tokens, a client."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from kafka import KafkaProducer
from starlette.testclient import TestClient

from inferloop.console.app import create_app
from inferloop.console.auth import hash_token
from inferloop.registry import Registry
from inferloop.settings import ConsoleSettings, Settings
from inferloop.topics import create_domain_topics, for_settings
from tests.registry import conftest as registry_fixtures
from tests.registry.factories import Register, Trained

# The registry tests' fixtures: signing keys, a registry on the test's prefix, real versions.
emails_model = registry_fixtures.emails_model
signing_keys = registry_fixtures.signing_keys
registry_settings = registry_fixtures.registry_settings
registry_factory = registry_fixtures.registry_factory
registry = registry_fixtures.registry
register = registry_fixtures.register

OPERATOR_TOKEN = "operator-token-0123456789"
VIEWER_TOKEN = "viewer-token-0123456789abc"
HOSTILE = '<script id="hostile">document.title="owned"</script><img src=x onerror=alert(1)>'


@dataclass(frozen=True)
class Hashes:
    """Stored hashes of the test tokens (scrypt is slow: made once)."""

    operator: str
    viewer: str


@pytest.fixture(scope="session")
def token_hashes() -> Hashes:
    """The operator alice's and the viewer victor's hashes."""
    return Hashes(hash_token("alice", OPERATOR_TOKEN), hash_token("victor", VIEWER_TOKEN))


@pytest.fixture
def console_settings(registry_settings: Settings, token_hashes: Hashes) -> Settings:
    """The test's settings with both tokens and the test client's host allowed."""
    section = ConsoleSettings(
        operator_token_hashes=(token_hashes.operator,),
        viewer_token_hashes=(token_hashes.viewer,),
        allowed_hosts=("testserver", "127.0.0.1", "localhost"),
    )
    return registry_settings.model_copy(update={"console": section})


@dataclass(frozen=True)
class Loop:
    """A domain with two versions (v2 champion, v1 before it) and its topics."""

    settings: Settings
    registry: Registry


@pytest.fixture
def loop(
    console_settings: Settings, registry: Registry, register: Register, emails_model: Trained
) -> Loop:
    """Three emails versions (v1 promoted then v2; v3 a candidate), the emails topics and
    one hostile letter."""
    for number in (1, 2):
        register(emails_model)
        registry.promote("emails", number, expected_current=number - 1 or None, reason="setup")
    register(emails_model)
    create_domain_topics(console_settings, "emails")
    dead_letter(console_settings, HOSTILE)
    return Loop(console_settings, registry)


def dead_letter(settings: Settings, text: str) -> None:
    """Write one dead letter whose reason, detail and value all carry ``text``."""
    topics = for_settings(settings, "emails")
    producer = KafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers)
    headers = [
        ("dlq.reason", b"invalid_json"),
        ("dlq.detail", text.encode()),
        ("dlq.source.topic", topics.events.encode()),
        ("dlq.source.partition", b"0"),
        ("dlq.source.offset", b"7"),
    ]
    producer.send(topics.dlq, key=b"k1", value=text.encode(), headers=headers, partition=0)
    producer.flush()
    producer.close()


ClientFactory = Callable[..., TestClient]


@pytest.fixture
def client_factory(loop: Loop) -> Iterator[ClientFactory]:
    """``make(token=None)``: a test client of the console, logged in with ``token``."""
    made: list[TestClient] = []

    def make(token: str | None = None) -> TestClient:
        client = TestClient(create_app(loop.settings, loop.registry), base_url="http://testserver")
        client.headers["origin"] = "http://testserver"
        made.append(client)
        if token is not None:
            login(client, token)
        return client

    yield make
    for client in made:
        client.close()


def csrf_of(client: TestClient, path: str) -> str:
    """The CSRF token the page at ``path`` puts in its forms."""
    page: str = client.get(path).text
    marker = 'name="csrf" value="'
    start = page.index(marker) + len(marker)
    return page[start : page.index('"', start)]


def login(client: TestClient, token: str) -> None:
    """Log in with ``token`` (asserting it worked)."""
    answer = client.post(
        "/login", data={"token": token, "csrf": csrf_of(client, "/login")}, follow_redirects=False
    )
    assert answer.status_code == 303, answer.text
