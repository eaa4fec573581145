"""Key names: versioned prefix, namespace, and one hash tag per agent (no Redis)."""

from __future__ import annotations

import inspect
import re

import pytest

from pygents_dist import Keys
from pygents_dist._keys import check_agent_name


def hash_tag(key: str) -> str:
    """The part of ``key`` Redis Cluster hashes: the first ``{...}`` if not empty, else all."""
    start = key.find("{")
    if start >= 0:
        end = key.find("}", start + 1)
        if end > start + 1:
            return key[start + 1 : end]
    return key


def agent_keys(keys: Keys, agent: str) -> dict[str, str]:
    """Every per-agent key of ``keys`` (methods taking an ``agent``), by method name."""
    out: dict[str, str] = {}
    for name, method in inspect.getmembers(keys, inspect.ismethod):
        params = inspect.signature(method).parameters
        if "agent" in params:
            extra = ["turn-1"] * (len(params) - 1)
            out[name] = method(agent, *extra)
    return out


def test_every_per_agent_key_is_found() -> None:
    found = set(agent_keys(Keys(), "alice"))
    assert {"turns", "state", "owner", "outbox", "done", "cancel", "reply"} <= found


@pytest.mark.parametrize("namespace", ["", "staging", "t1234abcd"])
def test_every_key_of_an_agent_shares_its_hash_tag(namespace: str) -> None:
    keys = Keys(namespace)
    for agent in ("alice", "bob.2", "a:b"):
        for name, key in agent_keys(keys, agent).items():
            assert hash_tag(key) == agent, (name, key)


def test_keys_of_two_agents_differ_per_kind() -> None:
    keys = Keys("ns")
    a, b = agent_keys(keys, "alice"), agent_keys(keys, "bob")
    assert not set(a.values()) & set(b.values())
    assert len(set(a.values())) == len(a)


def test_reply_keys_are_per_turn() -> None:
    keys = Keys()
    assert keys.reply("alice", "t1") != keys.reply("alice", "t2")
    assert hash_tag(keys.reply("alice", "t{x}")) == "alice"


def test_shared_keys_have_no_agent_tag() -> None:
    keys = Keys("ns")
    shared = [keys.directory, keys.ready, keys.owned, keys.dead, keys.worker("w1")]
    shared.append(keys.lock("tool:add"))
    assert all("{" not in key for key in shared)
    assert len(set(shared)) == len(shared)


def test_keys_start_with_the_namespace_and_a_version() -> None:
    assert Keys("staging").turns("alice") == "staging:pyg1:{alice}:turns"
    assert Keys().turns("alice") == "pyg1:{alice}:turns"
    for key in [*agent_keys(Keys("ns"), "a").values(), Keys("ns").dead]:
        assert re.match(r"^ns:pyg1:", key)


def test_worker_pattern_matches_worker_keys_only() -> None:
    keys = Keys("ns")
    pattern = "^" + re.escape(keys.worker_pattern).replace(r"\*", ".*") + "$"
    assert re.match(pattern, keys.worker("host-1-abc"))
    assert not re.match(pattern, keys.turns("worker"))


@pytest.mark.parametrize("name", ["", "a{b", "a}b", "two words", "tab\there", "x" * 201])
def test_agent_names_that_break_keys_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="cannot be served"):
        check_agent_name(name)


@pytest.mark.parametrize("name", ["alice", "a.b-c_d:1", "x" * 200, "émile"])
def test_ordinary_agent_names_are_accepted(name: str) -> None:
    assert check_agent_name(name) == name


def test_the_send_script_creates_the_group_the_workers_read_through() -> None:
    from importlib.resources import files

    from pygents_dist._keys import GROUP

    send = (files("pygents_dist") / "lua" / "send.lua").read_text()
    assert f"'XGROUP', 'CREATE', KEYS[k], '{GROUP}', '0'" in send


def test_a_tools_limiter_keys_share_the_tools_hash_tag() -> None:
    keys = Keys("ns")
    for name in ("fetch", "parent.child"):
        assert hash_tag(keys.rate(name)) == hash_tag(keys.slots(name)) == f"tool:{name}"
    assert keys.rate("a") != keys.slots("a") and keys.rate("a") != keys.rate("b")
