"""How tunekit builds its google-genai client: the API-choice variables google-genai 2.34 reads are honoured."""

import pytest

from tunekit.components.common.errors import UserError
from tunekit.components.model_clients.vertex import API_ENV_VARS, make_genai_client


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for name in (*API_ENV_VARS, "GOOGLE_CLOUD_PROJECT", "GOOGLE_CLOUD_LOCATION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TUNEKIT_VERTEX_BASE_URL", "http://127.0.0.1:9")  # a static token: no ADC lookup


@pytest.mark.parametrize("name", API_ENV_VARS)
@pytest.mark.parametrize("value", ["false", "0", "no"])
def test_a_variable_asking_for_the_developer_api_is_refused_not_ignored(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(UserError, match=f"{name}={value} selects the Gemini Developer API.*unset {name}"):
        make_genai_client("p", "us-central1")


def test_the_enterprise_variable_wins_over_the_legacy_one_as_in_google_genai(monkeypatch):
    monkeypatch.setenv("GOOGLE_GENAI_USE_ENTERPRISE", "TRUE")
    monkeypatch.setenv("GOOGLE_GENAI_USE_VERTEXAI", "false")
    client = make_genai_client("p", "us-central1")
    assert client.vertexai
    monkeypatch.setenv("GOOGLE_GENAI_USE_ENTERPRISE", "0")
    monkeypatch.setenv("GOOGLE_GENAI_USE_VERTEXAI", "true")
    with pytest.raises(UserError, match="GOOGLE_GENAI_USE_ENTERPRISE=0"):
        make_genai_client("p", "us-central1")


@pytest.mark.parametrize("value", [None, "true", "1"])
def test_the_enterprise_api_client_with_the_sdk_s_project_and_location_fallback(monkeypatch, value):
    if value is not None:
        monkeypatch.setenv("GOOGLE_GENAI_USE_ENTERPRISE", value)
    # The real service's path (no fake base URL): google-genai reads the project and region from its variables
    # when the call gives none; building the client makes no call.
    monkeypatch.delenv("TUNEKIT_VERTEX_BASE_URL")
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "env-project")
    monkeypatch.setenv("GOOGLE_CLOUD_LOCATION", "europe-west4")
    client = make_genai_client("", "")
    assert client.vertexai
    assert (client._api_client.project, client._api_client.location) == ("env-project", "europe-west4")
    client = make_genai_client("p", "us-central1")
    assert (client._api_client.project, client._api_client.location) == ("p", "us-central1")
