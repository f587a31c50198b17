"""The published OpenAPI schema (/api/schema/) and its Swagger UI (/api/docs/).

The schema is what third-party agents and the scheduler build against, and what
`.ci/schemathesis.sh` fuzzes the live server with; here: it is served, it is valid OpenAPI with
no generator warnings, it documents every JSON endpoint under /auth/ and /api/v1/ with the shared
error shape, and the docs page loads nothing from outside the portal.
"""

import re
from html.parser import HTMLParser

import pytest
from django.core.management import call_command
from django.test import Client, override_settings
from django.urls import URLPattern, URLResolver, get_resolver
from drf_spectacular.validation import validate_schema
from rest_framework.views import APIView

pytestmark = pytest.mark.django_db

SCHEMA_URL = "/api/schema/"
DOCS_URL = "/api/docs/"
DOCUMENTED_PREFIXES = ("auth/", "api/v1/")
HTTP_METHODS = ("get", "post", "put", "patch", "delete")


@pytest.fixture(scope="module")
def schema(django_db_blocker) -> dict:
    with django_db_blocker.unblock():
        response = Client().get(SCHEMA_URL, HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200, response.content[:500]
    assert response["Content-Type"].startswith("application/vnd.oai.openapi+json")
    return response.json()


def api_routes() -> list[tuple[str, type]]:
    """(OpenAPI path, view class) of every URL under the documented prefixes."""
    found = []

    def walk(patterns, prefix: str) -> None:
        for pattern in patterns:
            route = prefix + str(pattern.pattern)
            if isinstance(pattern, URLResolver):
                walk(pattern.url_patterns, route)
            elif isinstance(pattern, URLPattern) and route.startswith(DOCUMENTED_PREFIXES):
                path = "/" + re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", route)
                found.append((path, getattr(pattern.callback, "cls", None)))

    walk(get_resolver().url_patterns, "")
    return found


def test_the_schema_is_served_as_yaml_and_json():
    client = Client()
    as_yaml = client.get(SCHEMA_URL)
    assert as_yaml.status_code == 200
    assert as_yaml["Content-Type"].startswith("application/vnd.oai.openapi")
    assert as_yaml.content.startswith(b"openapi: 3.")
    as_json = client.get(SCHEMA_URL, {"format": "json"})
    assert as_json.status_code == 200
    assert as_json.json()["info"]["title"] == "OmniTensor contributor portal API"


def test_the_schema_is_valid_openapi(schema):
    assert schema["openapi"].startswith("3.")
    validate_schema(schema)  # drf-spectacular's check against the OpenAPI 3 JSON schema


def test_the_schema_generates_without_warnings(tmp_path):
    # --fail-on-warn turns any generator warning (an undiscoverable type, an enum name clash,
    # an unresolvable view) into an error; --validate checks the result too.
    call_command(
        "spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "schema.yaml")
    )


def test_every_api_url_and_method_is_documented(schema):
    routes = api_routes()
    assert routes, "no URL under /auth/ or /api/v1/ was found"
    missing = []
    for path, view in routes:
        assert view is not None and issubclass(view, APIView), (
            f"{path} is not a DRF view, so the schema cannot describe it"
        )
        for method in HTTP_METHODS:
            if hasattr(view, method) and method not in schema["paths"].get(path, {}):
                missing.append(f"{method.upper()} {path}")
    assert not missing, f"undocumented operations: {missing}"
    # And nothing documented that the URLconf does not serve.
    served = {path for path, _ in routes}
    assert set(schema["paths"]) <= served


def test_every_operation_documents_its_answers_and_errors(schema):
    error_ref = "#/components/schemas/Error"
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            where = f"{method.upper()} {path}"
            responses = operation["responses"]
            assert any(code.startswith("2") for code in responses), where
            errors = {code: r for code, r in responses.items() if code.startswith("4")}
            assert errors, f"{where} documents no 4xx"
            for code, response in errors.items():
                body = response["content"]["application/json"]["schema"]
                assert body == {"$ref": error_ref}, f"{where} {code} is not the Error shape"
                assert response["description"], f"{where} {code} names no error codes"
            if "429" in responses:
                assert "Retry-After" in responses["429"]["headers"], where


def test_the_error_component_is_the_contract(schema):
    error = schema["components"]["schemas"]["Error"]
    assert set(error["required"]) == {"error", "detail"}
    assert set(error["properties"]) == {"error", "detail", "errors"}
    field_error = schema["components"]["schemas"]["FieldError"]
    assert set(field_error["required"]) == {"field", "error"}


def test_security_schemes(schema):
    schemes = schema["components"]["securitySchemes"]
    assert schemes["nodeToken"] == {**schemes["nodeToken"], "type": "http", "scheme": "bearer"}
    assert schemes["schedulerToken"]["scheme"] == "bearer"
    assert schemes["sessionCookie"]["in"] == "cookie"
    assert schemes["csrfHeader"] == {**schemes["csrfHeader"], "in": "header", "name": "X-CSRFToken"}
    paths = schema["paths"]
    assert paths["/api/v1/agent/telemetry"]["post"]["security"] == [{"nodeToken": []}]
    assert paths["/api/v1/agent/config"]["get"]["security"] == [{"nodeToken": []}]
    assert "security" not in paths["/api/v1/agent/enroll"]["post"]
    assert paths["/api/v1/scheduler/jobs"]["post"]["security"] == [{"schedulerToken": []}]
    assert paths["/api/v1/me"]["get"]["security"] == [{"sessionCookie": []}]
    unsafe = paths["/api/v1/me/wallets"]["post"]["security"]
    assert unsafe == [{"sessionCookie": [], "csrfCookie": [], "csrfHeader": []}]


def test_telemetry_documents_new_batches_replays_and_limits(schema):
    responses = schema["paths"]["/api/v1/agent/telemetry"]["post"]["responses"]
    assert {"200", "202", "400", "401", "403", "413", "429"} <= set(responses)
    assert responses["200"]["content"] == responses["202"]["content"]


class _Assets(HTMLParser):
    def __init__(self):
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "script" and attrs.get("src"):
            self.urls.append(attrs["src"])
        if tag == "link" and attrs.get("href"):
            self.urls.append(attrs["href"])


def test_the_docs_page_loads_everything_from_the_portal(tmp_path):
    with override_settings(STATIC_ROOT=tmp_path / "static"):
        call_command("collectstatic", interactive=False, verbosity=0)
        # A new client builds a new handler, so WhiteNoise indexes the new STATIC_ROOT.
        client = Client()
        page = client.get(DOCS_URL)
        assert page.status_code == 200
        html = page.content.decode()
        assert not re.search(r"""src=["']?(https?:)?//""", html), "a script from elsewhere"
        assets = _Assets()
        assets.feed(html)
        scripts = [u for u in assets.urls if u.endswith(".js") or "script" in u]
        assert any("swagger-ui-bundle" in u for u in scripts), assets.urls
        for url in assets.urls:
            assert not url.startswith(("http:", "https:", "//")), url
            if url.startswith("/static/"):
                response = client.get(url)
                assert response.status_code == 200, url
                assert b"".join(response.streaming_content), url
        assert any(u.startswith("/static/drf_spectacular_sidecar/") for u in assets.urls)
        # Swagger UI's default would fetch a badge from validator.swagger.io.
        assert '"validatorUrl": null' in html
