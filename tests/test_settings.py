from __future__ import annotations

import pytest
from pydantic import ValidationError

from pipeline.endpoints import needs_emulator, online_target
from pipeline.settings import GLM_BASE_URL, Settings


def test_key_from_environment_and_by_name_never_in_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZHIPUAI_API_KEY", "sk-sentinel-123")
    from_env = Settings()
    assert from_env.api_key_value() == "sk-sentinel-123"
    assert "sk-sentinel-123" not in repr(from_env) and "sk-sentinel-123" not in str(from_env.model_dump())
    by_name = Settings(api_key="sk-other")
    assert by_name.api_key_value() == "sk-other"


def test_endpoint_choice() -> None:
    assert needs_emulator(Settings())
    assert not needs_emulator(Settings(api_key="k"))
    glm = online_target(Settings(api_key="sk-zz9"))
    assert glm.kind == "glm" and glm.endpoint.base_url == GLM_BASE_URL and "sk-zz9" not in repr(glm.endpoint)
    custom = online_target(Settings(base_url="http://127.0.0.1:8000/v1/"))
    assert custom.kind == "custom" and custom.endpoint.base_url == "http://127.0.0.1:8000/v1"


def test_invalid_values_are_rejected() -> None:
    with pytest.raises(ValueError, match="concurrency"):
        Settings(concurrency=0)
    with pytest.raises(ValueError, match="max_tokens"):
        Settings(max_tokens=20000)


@pytest.mark.parametrize("url", ["robot:s3cret-pw@127.0.0.1:8080/v4", "ftp://robot:s3cret-pw@h/v4", "http:///v4"])
def test_a_base_url_without_scheme_or_host_is_refused_without_echoing_it(url: str) -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(base_url=url)
    assert "http:// or https://" in str(caught.value) and "s3cret-pw" not in str(caught.value)


def test_url_credentials_never_in_the_settings_repr() -> None:
    shown = repr(Settings(base_url="http://robot:pw-SECRET@127.0.0.1:9/v4"))
    assert "pw-SECRET" not in shown and "concurrency" in shown


@pytest.mark.parametrize("url", ["http://h/v4?key=sk-s3cret", "http://h/v4#sk-s3cret", "http://h/v4?", "http://h/v4#"])
def test_a_base_url_with_a_query_or_fragment_is_refused_without_echoing_it(url: str) -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(base_url=url)
    assert "query" in str(caught.value) and "s3cret" not in str(caught.value)


@pytest.mark.parametrize("model", ["", " ", "glm-4-air ", "glm 4"])
def test_a_blank_or_spaced_model_id_is_refused(model: str) -> None:
    with pytest.raises(ValidationError, match="model id"):
        Settings(model=model)
