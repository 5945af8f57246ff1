"""Settings come from the environment: URLs, flags, lists and the secret key."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from portal import settings as portal_settings
from portal.settings import database_from_url, env_bool, env_list, load_secret_key

SERVICE_VARIABLES = (
    "DATABASE_URL",
    "REDIS_URL",
    "DEBUG",
    "ALLOWED_HOSTS",
    "SECRET_KEY",
    "PORTAL_VAR_DIR",
    "SECURE_COOKIES",
    "HTTPS",
    "DJANGO_SETTINGS_MODULE",
    "EMBEDDED_PG_PORT",
    "EMBEDDED_REDIS_PORT",
)
PREPARED = {"server_side_binding": True, "prepare_threshold": 5}  # the defaults every URL gets


class TestDatabaseFromUrl:
    @pytest.fixture(autouse=True)
    def default_preparation(self, monkeypatch):
        monkeypatch.delenv("DATABASE_PREPARE_THRESHOLD", raising=False)

    def test_every_part_of_the_url_is_used(self, monkeypatch):
        monkeypatch.delenv("DATABASE_CONN_MAX_AGE", raising=False)
        monkeypatch.delenv("DATABASE_TEST_NAME", raising=False)
        monkeypatch.delenv("DATABASE_POOL_SIZE", raising=False)

        config = database_from_url(
            "postgres://ops:s3cret@db.example.test:6543/warehouse?sslmode=require&connect_timeout=5"
        )

        assert config == {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": "warehouse",
            "USER": "ops",
            "PASSWORD": "s3cret",
            "HOST": "db.example.test",
            "PORT": "6543",
            "CONN_MAX_AGE": 0,
            "CONN_HEALTH_CHECKS": True,
            "OPTIONS": {"sslmode": "require", "connect_timeout": "5", **PREPARED},
            "TEST": {"NAME": None},
        }

    def test_percent_encoded_credentials_are_decoded(self):
        config = database_from_url("postgresql://user%40corp:p%40ss%2Fw%3Ard@localhost/my%20db")

        assert (config["USER"], config["PASSWORD"], config["NAME"]) == ("user@corp", "p@ss/w:rd", "my db")

    def test_a_repeated_query_option_keeps_the_last_value(self):
        assert database_from_url("postgres://h/x?sslmode=disable&sslmode=verify-full")["OPTIONS"] == {
            "sslmode": "verify-full",
            **PREPARED,
        }

    def test_missing_parts_fall_back_to_defaults(self):
        config = database_from_url("pgsql://localhost")

        assert (config["NAME"], config["USER"], config["PASSWORD"], config["HOST"], config["PORT"]) == (
            "portal",
            "",
            "",
            "localhost",
            "",
        )
        assert config["OPTIONS"] == PREPARED

    def test_connection_age_and_test_database_name_come_from_the_environment(self, monkeypatch):
        monkeypatch.setenv("DATABASE_CONN_MAX_AGE", "60")
        monkeypatch.setenv("DATABASE_TEST_NAME", "portal_ci")

        config = database_from_url("postgres://h/x")

        assert config["CONN_MAX_AGE"] == 60
        assert config["TEST"] == {"NAME": "portal_ci"}

    def test_a_pool_size_gives_each_process_a_connection_pool_and_no_persistent_connections(self, monkeypatch):
        monkeypatch.setenv("DATABASE_POOL_SIZE", "8")
        monkeypatch.setenv("DATABASE_POOL_TIMEOUT", "2.5")
        monkeypatch.setenv("DATABASE_CONN_MAX_AGE", "60")

        config = database_from_url("postgres://h/x?sslmode=disable")

        assert config["OPTIONS"] == {
            "sslmode": "disable",
            "pool": {"min_size": 1, "max_size": 8, "timeout": 2.5},
            **PREPARED,
        }
        assert config["CONN_MAX_AGE"] == 0  # Django refuses persistent connections beside a pool

    def test_statements_are_bound_on_the_server_and_prepared_unless_turned_off(self, monkeypatch):
        monkeypatch.setenv("DATABASE_PREPARE_THRESHOLD", "off")  # behind PgBouncer in transaction mode

        assert database_from_url("postgres://h/x")["OPTIONS"] == {
            "server_side_binding": True,
            "prepare_threshold": None,
        }
        assert database_from_url("postgres://h/x?prepare_threshold=0")["OPTIONS"]["prepare_threshold"] == 0
        assert database_from_url("postgres://h/x?server_side_binding=false")["OPTIONS"]["server_side_binding"] is False
        with pytest.raises(ValueError, match="whole number or off"):
            database_from_url("postgres://h/x?prepare_threshold=soon")

    @pytest.mark.django_db
    def test_a_statement_run_often_on_a_connection_is_prepared_there_and_planned_once(self):
        from django.db import connection

        from orchestration.models import Customer

        def prepared() -> int:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE %s",
                    ["%orchestration_customer%code%"],
                )
                return cursor.fetchone()[0]

        before = prepared()
        for code in ("a", "b", "c", "d", "e", "f"):
            Customer.objects.filter(code=code).first()  # one statement, six sets of parameters

        assert prepared() == before + 1

    def test_without_a_pool_size_there_is_no_pool(self, monkeypatch):
        monkeypatch.delenv("DATABASE_POOL_SIZE", raising=False)

        assert "pool" not in database_from_url("postgres://h/x")["OPTIONS"]

    @pytest.mark.parametrize(
        "url", ["mysql://u:p@h:3306/x", "sqlite:///tmp/db.sqlite3", "redis://127.0.0.1:6379/0", "h:5432/x"]
    )
    def test_non_postgres_schemes_are_refused(self, url):
        with pytest.raises(ValueError, match="DATABASE_URL must be a postgres:// URL"):
            database_from_url(url)


class TestEnvHelpers:
    @pytest.mark.parametrize("value", ["1", "true", "TRUE", "yes", "on", " On "])
    def test_env_bool_true_words(self, monkeypatch, value):
        monkeypatch.setenv("PORTAL_TEST_FLAG", value)

        assert env_bool("PORTAL_TEST_FLAG") is True

    @pytest.mark.parametrize("value", ["0", "false", "no", "off", "nonsense"])
    def test_env_bool_other_words_are_false_even_with_a_true_default(self, monkeypatch, value):
        monkeypatch.setenv("PORTAL_TEST_FLAG", value)

        assert env_bool("PORTAL_TEST_FLAG", True) is False

    @pytest.mark.parametrize("default", [True, False])
    def test_env_bool_unset_or_empty_uses_the_default(self, monkeypatch, default):
        monkeypatch.delenv("PORTAL_TEST_FLAG", raising=False)
        assert env_bool("PORTAL_TEST_FLAG", default) is default

        monkeypatch.setenv("PORTAL_TEST_FLAG", "")
        assert env_bool("PORTAL_TEST_FLAG", default) is default

    def test_env_list_splits_trims_and_drops_empty_items(self, monkeypatch):
        monkeypatch.setenv("PORTAL_TEST_LIST", " a.example , b.example,,  ,c ")

        assert env_list("PORTAL_TEST_LIST") == ["a.example", "b.example", "c"]

    def test_env_list_unset_uses_the_default(self, monkeypatch):
        monkeypatch.delenv("PORTAL_TEST_LIST", raising=False)

        assert env_list("PORTAL_TEST_LIST") == []
        assert env_list("PORTAL_TEST_LIST", "x,y") == ["x", "y"]

    def test_env_list_empty_value_is_an_empty_list(self, monkeypatch):
        monkeypatch.setenv("PORTAL_TEST_LIST", "")

        assert env_list("PORTAL_TEST_LIST", "x,y") == []


class TestSecretKey:
    def test_secret_key_from_the_environment_writes_nothing(self, monkeypatch, tmp_path):
        monkeypatch.setattr(portal_settings, "VAR_DIR", tmp_path / "var")
        monkeypatch.setenv("SECRET_KEY", "from-the-environment")

        assert load_secret_key() == "from-the-environment"
        assert not (tmp_path / "var").exists()

    def test_generated_key_is_persisted_privately_and_reused(self, monkeypatch, tmp_path):
        var_dir = tmp_path / "var"
        monkeypatch.setattr(portal_settings, "VAR_DIR", var_dir)
        monkeypatch.delenv("SECRET_KEY", raising=False)

        first = load_secret_key()
        second = load_secret_key()

        key_file = var_dir / "secret_key"
        assert key_file.read_text() == first
        assert (key_file.stat().st_mode & 0o777) == 0o600
        assert len(first) >= 50
        assert second == first

    def test_an_existing_key_file_is_read(self, monkeypatch, tmp_path):
        (tmp_path / "secret_key").write_text("kept-from-last-time\n")
        monkeypatch.setattr(portal_settings, "VAR_DIR", tmp_path)
        monkeypatch.delenv("SECRET_KEY", raising=False)

        assert load_secret_key() == "kept-from-last-time"


def settings_in_subprocess(env_overrides: dict[str, str]) -> dict:
    """Import portal.settings in a fresh interpreter with a controlled environment."""
    env = {key: value for key, value in os.environ.items() if key not in SERVICE_VARIABLES}
    env.update(env_overrides)
    env["DJANGO_SETTINGS_MODULE"] = "portal.settings"
    code = (
        "import json, django; from django.conf import settings; "
        "db = settings.DATABASES['default']; "
        "print(json.dumps({'debug': settings.DEBUG, 'allowed_hosts': settings.ALLOWED_HOSTS, "
        "'db': [db['USER'], db['PASSWORD'], db['HOST'], db['PORT'], db['NAME']], "
        "'redis': settings.REDIS_URL, 'broker': settings.CELERY_BROKER_URL, "
        "'cache': settings.CACHES['default']['LOCATION'], 'secret_key': settings.SECRET_KEY, "
        "'session_cookie_secure': settings.SESSION_COOKIE_SECURE}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        cwd=portal_settings.BASE_DIR,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_the_settings_module_reads_the_environment(tmp_path):
    loaded = settings_in_subprocess(
        {
            "DATABASE_URL": "postgres://u:p@h:5433/x",
            "REDIS_URL": "redis://cache.example.test:6380/2",
            "DEBUG": "1",
            "ALLOWED_HOSTS": "a,b",
            "SECRET_KEY": "subprocess-secret",
            "PORTAL_VAR_DIR": str(tmp_path),
        }
    )

    assert loaded["debug"] is True
    assert loaded["allowed_hosts"] == ["a", "b"]
    assert loaded["db"] == ["u", "p", "h", "5433", "x"]
    assert loaded["redis"] == loaded["broker"] == loaded["cache"] == "redis://cache.example.test:6380/2"
    assert loaded["secret_key"] == "subprocess-secret"
    assert loaded["session_cookie_secure"] is False
    assert list(tmp_path.iterdir()) == []


def test_without_environment_debug_is_off_and_services_default_to_embedded(tmp_path):
    first = settings_in_subprocess({"PORTAL_VAR_DIR": str(tmp_path)})
    second = settings_in_subprocess({"PORTAL_VAR_DIR": str(tmp_path)})

    assert first["debug"] is False
    assert first["allowed_hosts"] == ["localhost", "127.0.0.1", "[::1]"]
    assert first["db"] == ["postgres", "", "127.0.0.1", "54329", "portal"]
    assert first["redis"] == "redis://127.0.0.1:63799/0"
    # the generated development key is written under PORTAL_VAR_DIR and reused by the next process
    assert first["secret_key"] == (tmp_path / "secret_key").read_text()
    assert second["secret_key"] == first["secret_key"]


@pytest.mark.parametrize("value", ["0", "false", ""])
def test_debug_stays_off_unless_asked(tmp_path, value):
    assert settings_in_subprocess({"DEBUG": value, "PORTAL_VAR_DIR": str(tmp_path)})["debug"] is False


def test_https_switches_secure_cookies_on(tmp_path):
    loaded = settings_in_subprocess({"HTTPS": "1", "PORTAL_VAR_DIR": str(tmp_path)})

    assert loaded["session_cookie_secure"] is True
