"""Typed settings from environment variables; every bad value fails loudly.

Each helper reads one variable and raises ``ImproperlyConfigured`` naming the variable and the
bad value, so a typo in a deployment stops the app at start instead of misbehaving later.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping
from urllib.parse import parse_qsl, unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured

TRUE = {"1", "true", "yes", "on"}
FALSE = {"0", "false", "no", "off"}


def _raw(name: str, environ: Mapping[str, str] | None) -> str | None:
    value = (os.environ if environ is None else environ).get(name)
    if value is None or value.strip() == "":
        return None
    return value.strip()


def _bad(name: str, value: str, expected: str) -> ImproperlyConfigured:
    return ImproperlyConfigured(f"{name}={value!r} is not valid: expected {expected}")


def env_str(name: str, default: str | None = None, *, environ: Mapping[str, str] | None = None) -> str | None:
    value = _raw(name, environ)
    return default if value is None else value


def env_bool(name: str, default: bool, *, environ: Mapping[str, str] | None = None) -> bool:
    value = _raw(name, environ)
    if value is None:
        return default
    low = value.lower()
    if low in TRUE:
        return True
    if low in FALSE:
        return False
    raise _bad(name, value, "one of 1/0, true/false, yes/no, on/off")


def env_int(
    name: str,
    default: int,
    *,
    min_value: int | None = None,
    max_value: int | None = None,
    environ: Mapping[str, str] | None = None,
) -> int:
    value = _raw(name, environ)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise _bad(name, value, "an integer") from None
    if min_value is not None and number < min_value:
        raise _bad(name, value, f"an integer >= {min_value}")
    if max_value is not None and number > max_value:
        raise _bad(name, value, f"an integer <= {max_value}")
    return number


def env_float(
    name: str,
    default: float,
    *,
    min_value: float | None = None,
    max_value: float | None = None,
    environ: Mapping[str, str] | None = None,
) -> float:
    value = _raw(name, environ)
    if value is None:
        return default
    try:
        number = float(value)
    except ValueError:
        raise _bad(name, value, "a number") from None
    if number != number or number in (float("inf"), float("-inf")):
        raise _bad(name, value, "a finite number")
    if min_value is not None and number < min_value:
        raise _bad(name, value, f"a number >= {min_value}")
    if max_value is not None and number > max_value:
        raise _bad(name, value, f"a number <= {max_value}")
    return number


def env_list(name: str, default: list[str], *, environ: Mapping[str, str] | None = None) -> list[str]:
    value = _raw(name, environ)
    if value is None:
        return list(default)
    items = [item.strip() for item in value.split(",")]
    if any(not item for item in items):
        raise _bad(name, value, "a comma-separated list with no empty items")
    return items


def env_path(
    name: str,
    default: Path,
    *,
    must_exist: bool = False,
    environ: Mapping[str, str] | None = None,
) -> Path:
    value = _raw(name, environ)
    if value is None:
        return Path(default)
    path = Path(value).expanduser()
    if not path.is_absolute():
        raise _bad(name, value, "an absolute path")
    if must_exist and not path.exists():
        raise _bad(name, value, "an existing path")
    return path


def parse_database_url(url: str, *, name: str = "FACECURATE_DATABASE_URL") -> dict:
    """``postgres://user:pass@host:port/db?sslmode=...`` or ``sqlite:///abs/path`` to a DATABASES entry."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme in {"postgres", "postgresql", "pgsql"}:
        db = unquote(parts.path.lstrip("/"))
        if not db or "/" in db:
            raise _bad(name, url, "postgres://user[:password]@host[:port]/database")
        try:
            port = parts.port
        except ValueError:
            raise _bad(name, url, "a numeric port") from None
        config = {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": db,
            "USER": unquote(parts.username or ""),
            "PASSWORD": unquote(parts.password or ""),
            "HOST": parts.hostname or "",
            "PORT": str(port or ""),
            "CONN_MAX_AGE": 0,
        }
        options = dict(parse_qsl(parts.query))
        if options:
            config["OPTIONS"] = options
        return config
    if scheme == "sqlite":
        path = unquote(parts.path)
        if parts.netloc or not path or path == "/":
            raise _bad(name, url, "sqlite:///absolute/path/to/db.sqlite3")
        if path == "/:memory:":
            path = ":memory:"
        else:  # sqlite:///abs/path and sqlite:////abs/path both mean /abs/path
            path = "/" + path.lstrip("/")
        return {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": path,
            "OPTIONS": {
                "timeout": 30,
                "transaction_mode": "IMMEDIATE",
                # WAL: the web server reads while the worker writes; NORMAL: no fsync per commit.
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            },
        }
    raise _bad(name, url, "a postgres:// or sqlite:/// URL")


def check_broker_url(url: str, *, name: str = "FACECURATE_BROKER_URL") -> str:
    scheme = urlsplit(url).scheme.lower()
    if scheme not in {"redis", "rediss", "amqp", "amqps", "pyamqp", "filesystem", "memory", "sqla+postgresql"}:
        raise _bad(name, url, "a redis://, amqp://, filesystem:// or memory:// URL")
    return url


def parse_cache_url(url: str, *, name: str = "FACECURATE_CACHE_URL") -> dict:
    """``redis://host:6379/1`` (shared by every machine) or ``file:///abs/dir`` to a CACHES entry."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme in {"redis", "rediss"}:
        return {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": url}
    if scheme == "file" and parts.path.startswith("/") and not parts.netloc:
        return {"BACKEND": "django.core.cache.backends.filebased.FileBasedCache", "LOCATION": unquote(parts.path)}
    raise _bad(name, url, "a redis:// URL or file:///absolute/folder")


def secret_key_file(path: Path) -> str:
    """The secret key kept in ``path``; made (random, mode 0600) on first use.

    Made atomically: written to a private temp file, then hard-linked into place, which fails if
    another process got there first; then everyone reads the one file that won.
    """
    import secrets

    path = Path(path)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_urlsafe(50) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
            try:
                os.link(tmp, path)
            except FileExistsError:
                pass  # another process made it first: use theirs
        finally:
            tmp.unlink(missing_ok=True)
    key = path.read_text().strip()
    if len(key) < 32:
        raise ImproperlyConfigured(f"{path} holds no usable secret key (delete it to make a new one)")
    return key
