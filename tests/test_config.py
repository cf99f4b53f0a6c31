"""Where the key comes from, that it is never shown, and which URLs the pack will talk to."""
import os
import stat

import pytest

from magi1 import config
from magi1.errors import MissingApiKeyError, UnsafeUrlError


@pytest.fixture
def no_env(monkeypatch):
    monkeypatch.delenv("WAVESPEED_API_KEY", raising=False)
    monkeypatch.delenv("WAVESPEED_BASE_URL", raising=False)


def test_without_any_key_the_error_names_both_ways_to_set_one(no_env, tmp_path):
    with pytest.raises(MissingApiKeyError) as caught:
        config.resolve_api_key(tmp_path)
    assert "WAVESPEED_API_KEY" in str(caught.value) and "Settings" in str(caught.value)


def test_the_key_file_is_used_when_the_environment_has_none(no_env, tmp_path):
    config.write_key_file(tmp_path, "  file-key-1234  ")
    key = config.resolve_api_key(tmp_path)
    assert key.reveal() == "file-key-1234" and key.source == "settings"


def test_the_environment_wins_over_the_key_file(no_env, tmp_path, monkeypatch):
    config.write_key_file(tmp_path, "file-key-1234")
    monkeypatch.setenv("WAVESPEED_API_KEY", "env-key-5678")
    key = config.resolve_api_key(tmp_path)
    assert key.reveal() == "env-key-5678" and key.source == "environment"


def test_the_key_file_is_readable_by_its_owner_only(no_env, tmp_path):
    path = config.write_key_file(tmp_path / "private", "secret-key-abcd")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_a_key_never_shows_in_repr_or_str(no_env):
    key = config.ApiKey("sk-very-secret-0000", "environment")
    assert "very-secret" not in repr(key) and "very-secret" not in str(key) and "very-secret" not in f"{key}"
    assert key.last4 == "0000"


def test_the_default_base_url_is_wavespeeds(no_env):
    assert config.resolve_base_url() == "https://api.wavespeed.ai"


@pytest.mark.parametrize("url", ["http://127.0.0.1:8000", "http://localhost:9", "http://[::1]:80", "http://127.5.5.5"])
def test_plain_http_is_accepted_on_loopback(url):
    assert config.check_url(url) == url


@pytest.mark.parametrize("url", ["http://api.wavespeed.ai", "http://10.0.0.1:80", "http://192.168.1.2", "ftp://x", "file:///etc/passwd"])
def test_plain_http_elsewhere_and_other_schemes_are_refused(url):
    with pytest.raises(UnsafeUrlError):
        config.check_url(url)


def test_a_refused_url_is_reported_without_its_query_string():
    with pytest.raises(UnsafeUrlError) as caught:
        config.check_url("http://example.com/v.mp4?token=SECRET")
    assert "SECRET" not in str(caught.value)


def test_a_non_loopback_http_base_url_from_the_environment_is_refused(no_env, monkeypatch):
    monkeypatch.setenv("WAVESPEED_BASE_URL", "http://proxy.example.com")
    with pytest.raises(UnsafeUrlError, match="WAVESPEED_BASE_URL"):
        config.resolve_base_url()
