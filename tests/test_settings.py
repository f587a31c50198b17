"""Settings come from the environment, parsed strictly; production fails fast without secrets."""

import os
import subprocess
import sys
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

PRODUCTION_ENV = {
    "DEBUG": "false",
    "SECRET_KEY": "x7#pQ2!vL9@wR4$zT8^mN3&bK6*yH1(gF5)dS0_aJ-cE+uI=oP{lM}nB[vC]xZ;",
    "ALLOWED_HOSTS": "portal.example.org",
    "CSRF_TRUSTED_ORIGINS": "https://portal.example.org",
}


def run_manage(args: list[str], env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess:
    # A clean environment: only what the test names, plus what Python needs to run, and a
    # private var/ so nothing touches the developer's data.
    base = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "PYTHONPATH")}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=BASE_DIR,
        env={**base, "VAR_DIR": str(tmp_path / "var"), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_production_refuses_to_start_without_secret_key(tmp_path):
    env = {k: v for k, v in PRODUCTION_ENV.items() if k != "SECRET_KEY"}
    result = run_manage(["check"], env, tmp_path)

    assert result.returncode != 0
    assert "SECRET_KEY" in result.stderr
    assert "must be set" in result.stderr


def test_secret_key_can_come_from_a_file(tmp_path):
    secret_file = tmp_path / "secret"
    secret_file.write_text(PRODUCTION_ENV["SECRET_KEY"] + "\n")
    env = {k: v for k, v in PRODUCTION_ENV.items() if k != "SECRET_KEY"}
    result = run_manage(["check"], {**env, "SECRET_KEY_FILE": str(secret_file)}, tmp_path)

    assert result.returncode == 0, result.stderr


def test_deploy_check_reports_nothing_with_production_variables(tmp_path):
    result = run_manage(["check", "--deploy", "--fail-level", "DEBUG"], PRODUCTION_ENV, tmp_path)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_boolean_variables_are_parsed_strictly(tmp_path):
    result = run_manage(["check"], {**PRODUCTION_ENV, "DEBUG": "yes"}, tmp_path)

    assert result.returncode != 0
    assert "DEBUG must be true or false, not 'yes'" in result.stderr


def test_integer_variables_are_parsed_strictly(tmp_path):
    result = run_manage(["check"], {**PRODUCTION_ENV, "CONN_MAX_AGE": "soon"}, tmp_path)

    assert result.returncode != 0
    assert "CONN_MAX_AGE must be an integer" in result.stderr


def test_dotenv_file_is_read_and_environment_wins(tmp_path):
    # Variables in the .env file are read; the environment still overrides them.
    (tmp_path / "dotenv").write_text("LOG_LEVEL=error\nCELERY_BROKER_URL=memory://\n")
    code = "from django.conf import settings; print(settings.LOG_LEVEL, settings.CELERY_BROKER_URL)"
    result = subprocess.run(
        [sys.executable, "-c", f"import django; django.setup(); {code}"],
        cwd=BASE_DIR,
        env={
            "PATH": os.environ["PATH"],
            "DJANGO_SETTINGS_MODULE": "portal.settings",
            "DOTENV_PATH": str(tmp_path / "dotenv"),
            "VAR_DIR": str(tmp_path / "var"),
            "DEBUG": "true",
            "LOG_LEVEL": "warning",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["WARNING", "memory://"]


def test_schema_commands_need_no_secret_key(tmp_path):
    # A checkout checks its migrations (or migrates at build time) before any secret exists.
    env = {k: v for k, v in PRODUCTION_ENV.items() if k != "SECRET_KEY"}
    result = run_manage(["makemigrations", "--check", "--dry-run"], env, tmp_path)

    assert result.returncode == 0, result.stderr
    assert "No changes detected" in result.stdout
