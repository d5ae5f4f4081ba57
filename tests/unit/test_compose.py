"""docker-compose.yml keeps the production shape docs/quickstart.md promises (no Docker engine
is needed: the file is parsed and its rules checked)."""

import asyncio
import ipaddress
import re
from pathlib import Path
from typing import Any

import pytest
import uvicorn
import yaml
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

ROOT = Path(__file__).resolve().parents[2]


def _compose() -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(data, dict)
    return data


def _services() -> dict[str, dict[str, Any]]:
    return _compose()["services"]


def test_api_replicas_publish_no_host_port_and_sit_behind_the_proxy() -> None:
    services = _services()
    assert "ports" not in services["api"], "a fixed host port breaks --scale api=2"
    assert "container_name" not in services["api"]
    assert "container_name" not in services["worker"]
    proxy = services["proxy"]
    assert any(str(p).endswith(":80") for p in proxy["ports"])
    assert any(str(p).endswith(":443") for p in proxy["ports"])
    caddyfile = next(v.split(":")[0] for v in proxy["volumes"] if "Caddyfile" in v)
    config = (ROOT / caddyfile).read_text()
    # every replica, found by the service name in Docker's DNS, not one fixed address
    assert re.search(r"dynamic a \{\s*name api\s*port 8000", config)
    assert "health_uri /health" in config


def test_api_and_worker_restart_and_have_healthchecks() -> None:
    services = _services()
    for name in ("api", "worker", "proxy", "postgres", "redis"):
        assert services[name]["restart"] in ("unless-stopped", "always"), name
    api_check = " ".join(services["api"]["healthcheck"]["test"])
    assert "/health" in api_check
    worker_check = " ".join(services["worker"]["healthcheck"]["test"])
    assert "crmsync:worker:heartbeat" in worker_check
    # the worker check is valid Python that the image can run
    compile(services["worker"]["healthcheck"]["test"][-1], "healthcheck", "exec")
    compile(services["api"]["healthcheck"]["test"][-1], "healthcheck", "exec")


def test_migrations_run_once_before_api_and_worker() -> None:
    services = _services()
    migrate = services["migrate"]
    assert migrate["command"] == ["crmsync", "db", "upgrade"]
    assert migrate["restart"] == "no"
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in ("api", "worker"):
        depends = services[name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully", name
        assert depends["redis"]["condition"] == "service_healthy", name
        assert services[name]["command"][:2] != ["crmsync", "db"], name


def test_app_services_share_one_image_built_from_the_dockerfile() -> None:
    services = _services()
    images = {services[n]["image"] for n in ("migrate", "api", "worker")}
    assert len(images) == 1
    assert all(services[n]["build"] == "." for n in ("migrate", "api", "worker"))
    env = services["api"]["environment"]
    assert env["CRMSYNC_DATABASE_URL"].startswith("postgresql://")
    assert env["CRMSYNC_REDIS_URL"].startswith("redis://redis:")
    assert ":?" in env["CRMSYNC_SECRET_KEY"], "an unset key must stop compose, not start"
    dockerfile = (ROOT / "Dockerfile").read_text()
    for package in ("api", "cli", "core", "connectors", "workers"):
        assert f"COPY {package} {package}" in dockerfile
    assert "EXPOSE 8000" in dockerfile
    assert services["api"]["command"][-1] == "8000"


def test_quickstart_commands_match_the_compose_file() -> None:
    quickstart = (ROOT / "docs" / "quickstart.md").read_text()
    assert "docker compose up -d --scale api=2 --scale worker=2" in quickstart
    # the key is made without Python on the host
    key_line = next(line for line in quickstart.splitlines() if "CRMSYNC_SECRET_KEY=$(" in line)
    assert "openssl rand -base64 32" in key_line and "python" not in key_line
    services = _services()
    for match in re.finditer(r"docker compose (?:exec|run --rm(?: --no-deps)?) (\w+)",
                             quickstart):
        assert match.group(1) in services


def test_the_openssl_key_is_a_valid_fernet_key() -> None:
    import shutil
    import subprocess

    from cryptography.fernet import Fernet

    assert shutil.which("openssl"), "openssl is on every host the quickstart targets"
    quickstart = (ROOT / "docs" / "quickstart.md").read_text()
    command = re.search(r'CRMSYNC_SECRET_KEY=\$\((.+?)\)"', quickstart)
    assert command is not None
    key = subprocess.run(["sh", "-c", command.group(1)], capture_output=True, text=True,
                         check=True).stdout.strip()
    token = Fernet(key).encrypt(b"x")
    assert Fernet(key).decrypt(token) == b"x"



def test_the_api_trusts_forwarded_headers_from_the_proxy_network_only(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Behind Caddy the API must see https (X-Forwarded-Proto) so the dashboard's session
    cookie is Secure; uvicorn believes the header only from FORWARDED_ALLOW_IPS, which must
    be the compose network the proxy sits on (not the default 127.0.0.1, not everyone)."""
    compose = _compose()
    api_env = compose["services"]["api"]["environment"]
    trusted = re.fullmatch(r"\$\{CRMSYNC_INTERNAL_SUBNET:-([0-9./]+)\}",
                           api_env["FORWARDED_ALLOW_IPS"])
    assert trusted, api_env["FORWARDED_ALLOW_IPS"]
    assert compose["networks"]["default"]["ipam"]["config"][0]["subnet"] == \
        api_env["FORWARDED_ALLOW_IPS"]
    network = ipaddress.ip_network(trusted.group(1))
    assert network.is_private
    assert "networks" not in compose["services"]["proxy"]  # on that default network too

    # `crmsync serve` runs uvicorn with its defaults: proxy headers on, trusted addresses
    # from FORWARDED_ALLOW_IPS
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", str(network))
    config = uvicorn.Config(lambda: None)
    assert config.proxy_headers and config.forwarded_allow_ips == str(network)

    def scheme_seen(client: str) -> str:
        seen: dict[str, str] = {}

        async def app(scope: Any, receive: Any, send: Any) -> None:
            seen["scheme"] = scope["scheme"]

        scope = {"type": "http", "scheme": "http", "client": (client, 40000),
                 "headers": [(b"x-forwarded-proto", b"https")]}
        middleware = ProxyHeadersMiddleware(app, trusted_hosts=config.forwarded_allow_ips)
        asyncio.run(middleware(scope, None, None))  # type: ignore[arg-type]
        return seen["scheme"]

    assert scheme_seen(str(next(network.hosts()))) == "https"  # Caddy
    assert scheme_seen("203.0.113.9") == "http"  # anyone else
