"""Peers, one layer at a time: the `peers:` section, and which peer serves a model (a table)."""

from __future__ import annotations

import pytest

from homestack.config import load_fleet
from homestack.errors import ConfigError
from homestack.peers.choice import PeerModel, PeerView, rank
from homestack.peers.directory import PeerDirectory
from homestack.peers.forward import HOP_HEADER, forwarded

FRAGMENT = """\
peers:
  box2: {url: "http://127.0.0.1:9090", key_env: BOX2_KEY}
"""

GIB = 1 << 30


def _peer(name: str, state: str = "stopped", size: int = GIB, free: int = 4 * GIB, up: bool = True,
          model: str = "m") -> PeerView:
    return PeerView(name, name, up, (PeerModel(model, ("alias",), state, size, "cpu"),), {"cpu": free})


CASES = [
    # (peers in fleet-file order, model asked for, expected order of peers tried)
    ([_peer("a"), _peer("b", "ready")], "m", ["b", "a"]),  # resident first
    ([_peer("a", "starting"), _peer("b", "ready")], "m", ["a", "b"]),  # loading counts as resident; file order
    ([_peer("a", free=2 * GIB), _peer("b", free=8 * GIB)], "m", ["b", "a"]),  # fits: the most free first
    ([_peer("a", free=GIB // 2), _peer("b", free=2 * GIB)], "m", ["b", "a"]),  # fits before must-evict
    ([_peer("a", free=0), _peer("b", free=GIB // 2)], "m", ["b", "a"]),  # neither fits: the least to evict
    ([_peer("a", "ready", up=False), _peer("b")], "m", ["b"]),  # down peers are skipped
    ([_peer("a"), _peer("b", model="other")], "m", ["a"]),  # only peers that serve the model
    ([_peer("a", size=0, free=0)], "m", ["a"]),  # a remote runner holds no memory: it fits
    ([_peer("a"), _peer("b", "ready")], "alias", ["b", "a"]),  # aliases find the model
    ([_peer("a")], "nope", []),
]


@pytest.mark.parametrize("peers, model, expected", CASES)
def test_rank(peers, model, expected):
    assert [peer.name for peer, _ in rank(model, peers)] == expected


def test_the_issue_fragment_validates(tmp_path, monkeypatch):
    path = tmp_path / "fleet.yaml"
    path.write_text(FRAGMENT)
    fleet = load_fleet(path)
    assert fleet.peers["box2"].url == "http://127.0.0.1:9090" and fleet.peers["box2"].key_env == "BOX2_KEY"
    with pytest.raises(ConfigError, match="peers.box2.key_env: the environment variable BOX2_KEY is not set"):
        PeerDirectory.for_fleet(fleet)
    monkeypatch.setenv("BOX2_KEY", "s3cret")
    directory = PeerDirectory.for_fleet(fleet)
    assert directory.auth_header("box2") == b"Authorization: Bearer s3cret\r\n"


@pytest.mark.parametrize("text, key", [
    ('peers:\n  box2: {url: "ftp://x"}\n', "peers.box2.url"),
    ('peers:\n  box2: {url: "http://x:1", key: inline}\n', "peers.box2.key"),
    ('peers:\n  box2: {url: "http://x:1", key_env: "NOT A NAME"}\n', "peers.box2.key_env"),
])
def test_bad_peers_name_the_key(tmp_path, text, key):
    path = tmp_path / "fleet.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_fleet(path)


def test_hop_header_marks_a_forwarded_request():
    assert forwarded([(b"authorization", b"x"), (HOP_HEADER, b"box1")])
    assert not forwarded([(b"authorization", b"x")])
