"""The ACL's key patterns come from the key builder: every key it builds falls under an
area that the roles' rules name, so a key added to ``inferloop/keys.py`` cannot escape them."""

from __future__ import annotations

import inspect
from fnmatch import fnmatchcase
from typing import get_args

from inferloop.keys import Area, Keys
from inferloop.registry.acl import ROLES, acl_rules


def every_key(keys: Keys) -> dict[str, str]:
    """Each public key builder of ``keys`` called with sample arguments: name -> key."""
    built = {}
    for name, method in inspect.getmembers(keys, inspect.ismethod):
        if name.startswith("_") or name == "area":
            continue
        params = inspect.signature(method).parameters.values()
        built[name] = method(*(1 if p.annotation == "int" else "x" for p in params))
    return built


def test_every_key_built_falls_under_an_area_the_roles_name() -> None:
    keys = Keys("p")
    areas = [keys.area(area) for area in get_args(Area)]
    built = every_key(keys)
    assert len(built) > 25  # the introspection found the builders
    for name, key in built.items():
        assert any(fnmatchcase(key, pattern) for pattern in areas), (name, key)
    rules = " ".join(acl_rules(role, "p") for role in ROLES)
    for pattern in areas:
        assert f"~{pattern}" in rules


def test_the_keys_named_one_by_one_are_the_builders_keys() -> None:
    keys = Keys("p")
    monitor = acl_rules("monitor", "p")
    # The monitor writes the sent markers and adds to the trigger stream, nothing else
    # of the retrain area.
    assert f"~{keys.retrain_sent('*')} " in monitor
    assert fnmatchcase(keys.retrain_sent("abc"), keys.retrain_sent("*"))
    assert f"%W~{keys.retrain_triggers()} " in monitor
    assert f"&{keys.area('model')}" in monitor
    assert fnmatchcase(keys.notices("m"), keys.area("model"))
