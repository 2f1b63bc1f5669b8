"""Security headers, cookies, the Content Security Policy and `check --deploy` (docs/security.md)."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.core.management import call_command
from django.urls import reverse

from tests.factories import MerchantMemberFactory

BASE_DIR = Path(django_settings.BASE_DIR)


@pytest.fixture
def production(settings):
    """The values the settings module computes with DJANGO_DEBUG=0 (see bnpl/settings.py)."""
    settings.DEBUG = False
    settings.SECRET_KEY = secrets.token_urlsafe(50)
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_HSTS_SECONDS = 31536000
    settings.SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    settings.SECURE_HSTS_PRELOAD = True
    settings.SESSION_COOKIE_SECURE = True
    settings.CSRF_COOKIE_SECURE = True
    settings.LANGUAGE_COOKIE_SECURE = True
    settings.ALLOWED_HOSTS = ["testserver", "pay.example.com"]
    # pytest-django swaps in the locmem mailer, which check --deploy refuses; production sends by SMTP.
    settings.MAILERS = {"default": {"BACKEND": "django.core.mail.backends.smtp.EmailBackend"}}
    return settings


class _Scripts(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[dict[str, str | None]] = []
        self.handlers: list[str] = []

    def handle_starttag(self, tag, attrs) -> None:
        attributes = dict(attrs)
        if tag == "script":
            self.scripts.append(attributes)
        self.handlers += [name for name in attributes if name.startswith("on")]


def _scripts(html: str) -> _Scripts:
    parser = _Scripts()
    parser.feed(html)
    return parser


def _assert_common_headers(response, *, nonce_expected: bool = True) -> None:
    csp = response["Content-Security-Policy"]
    directives = dict(part.strip().split(" ", 1) for part in csp.split(";"))
    assert directives["default-src"] == "'self'"
    assert directives["script-src"].startswith("'self'")
    assert "unsafe-inline" not in directives["script-src"] and "unsafe-eval" not in directives["script-src"]
    assert directives["object-src"] == "'none'"
    assert directives["frame-ancestors"] == "'none'"
    if nonce_expected:
        assert re.search(r"'nonce-[A-Za-z0-9_\-+/=]+'", directives["script-src"])
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "strict-origin-when-cross-origin"
    assert response["X-Frame-Options"] == "DENY"
    assert response["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains; preload"


@pytest.mark.django_db
def test_page_api_and_admin_send_the_security_headers(client, production):
    page = client.get(reverse("shop:index"), secure=True)
    assert page.status_code == 200
    _assert_common_headers(page)

    api = client.get("/api/v1/orders", secure=True)  # no key: refused, still with the headers
    assert api.status_code in (401, 403)
    _assert_common_headers(api, nonce_expected=False)  # no page used the nonce: none is sent

    admin_login = client.get(reverse("admin:login"), secure=True)
    assert admin_login.status_code == 200
    _assert_common_headers(admin_login)


@pytest.mark.django_db
def test_plain_http_is_redirected_except_the_health_probe(client, production):
    response = client.get(reverse("shop:index"))
    assert response.status_code == 301
    assert response["Location"].startswith("https://")
    assert client.get(reverse("healthz")).status_code != 301


@pytest.mark.django_db
def test_forwarded_proto_counts_only_with_the_proxy_setting(client, production):
    production.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    response = client.get(reverse("shop:index"), headers={"x-forwarded-proto": "https"})
    assert response.status_code == 200


@pytest.mark.django_db
def test_cookies_are_secure_and_http_only(client, production):
    response = client.get(reverse("admin:login"), secure=True)
    csrf = response.cookies[django_settings.CSRF_COOKIE_NAME]
    assert csrf["secure"] and csrf["httponly"]
    assert production.SESSION_COOKIE_SECURE and production.SESSION_COOKIE_HTTPONLY

    language = client.post(reverse("set_language"), {"language": "en", "next": "/shop/"}, secure=True)
    cookie = language.cookies[django_settings.LANGUAGE_COOKIE_NAME]
    assert cookie["secure"] and cookie["httponly"]


@pytest.mark.django_db
def test_api_reference_pages_run_no_inline_script(client, production):
    swagger = client.get(reverse("api-docs"), secure=True)
    assert swagger.status_code == 200
    scripts = _scripts(swagger.content.decode()).scripts
    assert scripts and all(s.get("src") for s in scripts), "Swagger UI must load its start-up script as a file"
    init_src = [s["src"] for s in scripts if "script" in s["src"]]
    assert init_src
    init = client.get(init_src[0], secure=True)
    assert init.status_code == 200 and "javascript" in init["Content-Type"]
    assert b"SwaggerUIBundle" in init.content

    redoc = client.get(reverse("api-redoc"), secure=True)
    assert redoc.status_code == 200
    html = redoc.content.decode()
    assert all(s.get("src") for s in _scripts(html).scripts)
    assert "googleapis" not in html  # the CSP allows no other origin; fonts fall back to the system's


TEMPLATE_DIRS = [BASE_DIR / "templates", *BASE_DIR.glob("*/templates"), *BASE_DIR.glob("*/*/templates")]


def _template_files() -> list[Path]:
    return sorted({p for d in TEMPLATE_DIRS if d.is_dir() for p in d.rglob("*.html")})


def test_templates_have_no_inline_handlers_or_unnonced_inline_scripts():
    """The CSP refuses inline event handlers and inline <script> without the nonce: none may creep back."""
    files = _template_files()
    assert len(files) > 20
    problems = []
    for path in files:
        text = path.read_text(encoding="utf-8")
        for match in re.finditer(r"<[a-zA-Z][^>]*\son[a-z]+\s*=", text):
            problems.append(f"{path}: inline handler {match.group(0)[:60]!r}")
        for match in re.finditer(r"<script\b([^>]*)>", text):
            attrs = match.group(1)
            if "src=" not in attrs and "csp_nonce_attr" not in attrs and "nonce=" not in attrs:
                problems.append(f"{path}: inline <script> without the CSP nonce")
        for match in re.finditer(r"hx-trigger=\"[^\"]*\[", text):
            problems.append(f"{path}: hx-trigger filter expressions need eval: {match.group(0)!r}")
        if re.search(r"hx-on[:-]|hx-vals=['\"]js:", text):
            problems.append(f"{path}: hx-on / js: values need eval")
    assert not problems, "\n".join(problems)


@pytest.mark.django_db
def test_check_deploy_is_clean_with_production_overrides(production, capsys):
    call_command("check", deploy=True, fail_level="WARNING")
    assert "no issues" in capsys.readouterr().out


def _test_database_url() -> str:
    """A DATABASE_URL for the test database (the system checks of generated fields connect to it)."""
    import urllib.parse

    from django.db import connection

    params = connection.settings_dict
    user = urllib.parse.quote(params.get("USER") or "postgres")
    password = params.get("PASSWORD") or ""
    auth = f"{user}:{urllib.parse.quote(password)}" if password else user
    host, port = str(params.get("HOST") or ""), str(params.get("PORT") or "5432")
    if host.startswith("/"):
        return f"postgres://{auth}@/{params['NAME']}?host={urllib.parse.quote(host)}&port={port}"
    return f"postgres://{auth}@{host}:{port}/{params['NAME']}"


@pytest.mark.django_db
def test_check_deploy_is_clean_for_the_real_production_settings():
    """The settings module itself, with DJANGO_DEBUG=0 and a real key, passes check --deploy with no warning."""
    env = {
        **os.environ,
        "DATABASE_URL": _test_database_url(),
        "DJANGO_DEBUG": "0",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "DJANGO_ALLOWED_HOSTS": "pay.example.com",
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues (0 silenced)" in result.stdout


@pytest.mark.django_db
def test_rendered_pages_run_only_scripts_the_policy_allows(client, staff_user, merchant):
    """Every <script> of a rendered page is a file or carries this response's nonce; no inline handlers."""
    member = MerchantMemberFactory(merchant=merchant)
    pages = [(None, reverse("shop:index")), (None, reverse("admin:login")), (staff_user, reverse("admin:index"))]
    pages += [(staff_user, reverse("admin:consumers_creditprofile_changelist"))]
    pages += [(member.user, reverse("merchant:dashboard"))]
    for user, url in pages:
        client.logout()
        if user is not None:
            client.force_login(user)
        response = client.get(url, follow=True)
        assert response.status_code == 200, url
        nonce = re.search(r"'nonce-([^']+)'", response["Content-Security-Policy"])
        parsed = _scripts(response.content.decode())
        assert not parsed.handlers, (url, parsed.handlers)
        for script in parsed.scripts:
            if script.get("type") == "application/json":  # json_script data: never executed
                continue
            assert script.get("src") or (nonce and script.get("nonce") == nonce.group(1)), (url, script)
