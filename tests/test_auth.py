"""Offline tests of the passphrase (ident) handshake proofs: no sockets, just the Authenticator."""
from __future__ import annotations

import types

import pytest
from Pyro5 import errors

from eventservice.pyro import auth
from eventservice.pyro.auth import Authenticator, PassphraseError

HOSTED = {"obj_eventservice"}


class FakeClock:
    """Stands in for the time module inside eventservice.pyro.auth."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def time(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    fake = FakeClock()
    monkeypatch.setattr(auth, "time", types.SimpleNamespace(time=fake.time))
    return fake


@pytest.fixture(scope="module")
def server():
    return Authenticator("secret passphrase", window=60.0)


@pytest.fixture(scope="module")
def client():
    return Authenticator("secret passphrase", window=60.0)


def resign(authenticator: Authenticator, proof: dict) -> dict:
    """The proof with its MAC recomputed, as a passphrase holder would make it."""
    proof = dict(proof)
    proof["mac"] = authenticator._mac("client", proof["object"], proof["time"], proof["nonce"])
    return proof


def test_proof_from_same_passphrase_is_accepted_and_answer_verifies(server, client):
    """A proof made with the same passphrase is accepted; the server's answer verifies at the client."""
    proof = client.client_proof("obj_eventservice")
    answer = server.check_client_proof(proof, HOSTED)
    assert isinstance(answer, dict) and answer.get("mac")
    client.check_server_answer(proof, answer)


def test_wrong_passphrase_is_refused(server):
    """A proof made with another passphrase raises PassphraseError 'wrong passphrase'."""
    proof = Authenticator("other passphrase").client_proof("obj_eventservice")
    with pytest.raises(PassphraseError, match="wrong passphrase"):
        server.check_client_proof(proof, HOSTED)


@pytest.mark.parametrize("data", ["hello", None, {}, {"auth": "something-else"}, ["eventservice-ident-1"]])
def test_missing_proof_says_passphrase_required(server, data):
    """A handshake without a proof (Pyro5's default 'hello') is refused as needing a passphrase."""
    with pytest.raises(PassphraseError, match=r"requires a passphrase"):
        server.check_client_proof(data, HOSTED)


@pytest.mark.parametrize("missing", ["object", "time", "nonce", "mac"])
def test_malformed_proof_is_refused(server, client, missing):
    """A proof missing a field is refused."""
    proof = client.client_proof("obj_eventservice")
    del proof[missing]
    with pytest.raises(PassphraseError, match="passphrase refused"):
        server.check_client_proof(proof, HOSTED)


def test_replayed_proof_is_refused(server, client):
    """The same proof presented twice is refused the second time as replayed."""
    proof = client.client_proof("obj_eventservice")
    server.check_client_proof(proof, HOSTED)
    with pytest.raises(PassphraseError, match="replayed"):
        server.check_client_proof(dict(proof), HOSTED)


def test_proof_for_object_not_hosted_is_refused(server, client):
    """A valid proof made for an object id this daemon does not host is refused."""
    proof = client.client_proof("obj_somewhere_else")
    with pytest.raises(PassphraseError, match="another server"):
        server.check_client_proof(proof, HOSTED)


@pytest.mark.parametrize("offset", [-61.0, 61.0, -3600.0])
def test_stale_or_future_proof_is_refused(server, client, offset):
    """A correctly signed proof whose time is outside the window is refused."""
    proof = client.client_proof("obj_eventservice")
    proof["time"] = repr(float(proof["time"]) + offset)
    with pytest.raises(PassphraseError, match="clocks differ"):
        server.check_client_proof(resign(client, proof), HOSTED)


def test_proof_inside_window_is_accepted(server, client):
    """A correctly signed proof a little off the server's clock (within the window) is accepted."""
    proof = client.client_proof("obj_eventservice")
    proof["time"] = repr(float(proof["time"]) - 30.0)
    assert server.check_client_proof(resign(client, proof), HOSTED)["mac"]


def test_stale_proof_by_clock_is_refused(monkeypatch, clock):
    """A proof checked after the window has passed (patched clock) is refused."""
    authenticator = Authenticator("pw", window=10.0)
    proof = authenticator.client_proof("obj_eventservice")
    clock.now += 11.0
    with pytest.raises(PassphraseError, match="old"):
        authenticator.check_client_proof(proof, HOSTED)


@pytest.mark.parametrize(("field", "value"), [("object", "obj_other"), ("time", "1.0"), ("nonce", "00" * 16),
                                              ("mac", "0" * 64), ("auth", "eventservice-ident-0")])
def test_tampered_field_is_refused(server, client, field, value):
    """Changing any field of a proof without re-signing it gets it refused."""
    proof = client.client_proof("obj_eventservice")
    proof[field] = value
    with pytest.raises(PassphraseError):
        server.check_client_proof(proof, HOSTED | {"obj_other"})


def test_server_answer_from_other_passphrase_is_refused(client):
    """An answer made by a server with a different passphrase fails check_server_answer."""
    impostor = Authenticator("impostor")
    proof = client.client_proof("obj_eventservice")
    forged = {"auth": proof["auth"], "mac": impostor._mac("server", proof["nonce"])}
    with pytest.raises(PassphraseError, match="could not prove"):
        client.check_server_answer(proof, forged)


@pytest.mark.parametrize("answer", [None, "ok", {}, {"mac": ""}, {"mac": 12}])
def test_missing_server_answer_is_refused(client, answer):
    """A missing or malformed server answer fails check_server_answer."""
    proof = client.client_proof("obj_eventservice")
    with pytest.raises(PassphraseError):
        client.check_server_answer(proof, answer)


def test_server_answer_for_another_nonce_is_refused(server, client):
    """A genuine server answer to one proof does not verify another proof."""
    first = client.client_proof("obj_eventservice")
    second = client.client_proof("obj_eventservice")
    answer = server.check_client_proof(first, HOSTED)
    with pytest.raises(PassphraseError):
        client.check_server_answer(second, answer)


def test_proof_does_not_reveal_passphrase_or_key():
    """No field of the proof (or the answer) contains the passphrase or the derived key."""
    passphrase = "correct horse battery staple"
    authenticator = Authenticator(passphrase)
    key = auth._derive_key(passphrase)
    proof = authenticator.client_proof("obj_eventservice")
    answer = authenticator.check_client_proof(proof, HOSTED)
    assert set(proof) == {"auth", "object", "time", "nonce", "mac"}
    for value in list(proof.values()) + list(answer.values()):
        text = str(value)
        assert passphrase not in text
        assert key.hex() not in text
        assert key.decode("latin-1") not in text


def test_proofs_use_fresh_nonces(client):
    """Two proofs for the same object differ in nonce and MAC."""
    first, second = client.client_proof("obj_eventservice"), client.client_proof("obj_eventservice")
    assert first["nonce"] != second["nonce"]
    assert first["mac"] != second["mac"]


@pytest.mark.parametrize("passphrase", ["", None, b"bytes"])
def test_empty_or_non_string_passphrase_is_rejected(passphrase):
    """An empty (or non-str) passphrase raises ValueError."""
    with pytest.raises(ValueError, match=r"passphrase \(ident\) must be a non-empty string"):
        Authenticator(passphrase)


def test_passphrase_error_is_a_pyro_security_error():
    """PassphraseError is a Pyro5 SecurityError and so a PyroError."""
    assert issubclass(PassphraseError, errors.SecurityError)
    assert issubclass(PassphraseError, errors.PyroError)


def test_replay_cache_forgets_expired_nonces(clock):
    """Nonces are remembered for the replay window only: the seen table does not grow without bound."""
    authenticator = Authenticator("pw", window=10.0)
    for _ in range(5):
        authenticator.check_client_proof(authenticator.client_proof("obj_eventservice"), HOSTED)
    assert len(authenticator._seen) == 5
    clock.now += 15.0  # inside 2 * window: still remembered
    authenticator.check_client_proof(authenticator.client_proof("obj_eventservice"), HOSTED)
    assert len(authenticator._seen) == 6
    clock.now += 6.0  # the first five are now older than 2 * window
    authenticator.check_client_proof(authenticator.client_proof("obj_eventservice"), HOSTED)
    assert len(authenticator._seen) == 2
    clock.now += 100.0
    authenticator.check_client_proof(authenticator.client_proof("obj_eventservice"), HOSTED)
    assert len(authenticator._seen) == 1


def test_replay_is_refused_for_as_long_as_the_proof_is_fresh(clock):
    """A proof stamped at the edge of the window cannot be replayed before it goes stale."""
    authenticator = Authenticator("pw", window=10.0)
    clock.now += 9.0  # the proof claims a time 9 s ahead of the server
    proof = authenticator.client_proof("obj_eventservice")
    clock.now -= 9.0
    authenticator.check_client_proof(proof, HOSTED)
    for _ in range(18):
        clock.now += 1.0
        with pytest.raises(PassphraseError, match=r"replayed|old"):
            authenticator.check_client_proof(proof, HOSTED)
