"""The loopback and token rules shared by `robotflow serve` and the WebXR page."""

import pytest

from robotflow.network import bearer_token, is_loopback, token_matches, unauthenticated_bind_error


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "127.3.2.1", "::1", "[::1]"])
def test_loopback_hosts(host):
    assert is_loopback(host)


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.5", "::", "127.example.com", "example.com", ""])
def test_non_loopback_hosts(host):
    # "127.example.com" is the case a string-prefix rule got wrong: a name that resolves anywhere.
    assert not is_loopback(host)


def test_tokens():
    assert bearer_token("Bearer abc ") == "abc" and bearer_token("bearer abc") == "abc"
    assert bearer_token("Basic abc") == "" and bearer_token(None) == ""
    assert token_matches("abc", "abc") and not token_matches("abd", "abc") and not token_matches(None, "abc")


def test_bind_refusal():
    assert unauthenticated_bind_error("127.0.0.1", None, False) is None
    assert unauthenticated_bind_error("0.0.0.0", "t", False) is None
    assert unauthenticated_bind_error("0.0.0.0", None, True) is None
    assert "--token" in unauthenticated_bind_error("0.0.0.0", None, False)
