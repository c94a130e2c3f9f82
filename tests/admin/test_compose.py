"""The deployment files agree with the CLI and with DESIGN.md's contracts.

``compose/docker-compose.yml`` is checked in Python, with no Docker tool installed: it is loaded
the way Compose loads it (YAML anchors and ``<<`` merges, then ``${VAR:-default}`` interpolation
with an empty environment, ``$$`` as a literal ``$``, build contexts relative to the file), and the
result is validated with ``jsonschema`` against ``compose_schema.json`` beside this file: a subset
of the public Compose Specification written for these tests (the top-level sections and the
service keys a deployment file uses; an unknown key is an error). Then:

- every reference resolves (``depends_on`` services, named volumes, build contexts, bind mounts);
- every service built from this repository runs a real ``sirius`` subcommand whose whole argument
  list parses with ``build_parser()``;
- the env vars those services get are DESIGN.md's contract names, with usable values;
- published ports are DESIGN.md's, and start-up order is postgres -> migrate, minio -> minio-init
  -> ingestion.

The ``Dockerfile`` is checked statically (no engine here): it copies every package folder that
pyproject.toml maps, and its entry point and exposed ports are the contract's.
"""

from __future__ import annotations

import argparse
import functools
import json
import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from sirius.admin.cli import build_parser

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "compose" / "docker-compose.yml"
COMPOSE_SCHEMA = Path(__file__).with_name("compose_schema.json")
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"

# DESIGN.md "env vars": the only variables a Sirius container may be given.
CONTRACT_ENV_VARS = frozenset(
    {
        "MICROMEGAS_SQL_CONNECTION_STRING",
        "MICROMEGAS_OBJECT_STORE_URI",
        "AWS_ENDPOINT_URL",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_REGION",
        "MICROMEGAS_TELEMETRY_URL",
        "MICROMEGAS_API_KEYS",
        "MICROMEGAS_INGESTION_API_KEY",
        "MICROMEGAS_RETENTION_DAYS",
    }
)
CONTRACT_ENV_PREFIXES = ("OTEL_",)

# DESIGN.md "ports": container port(s) of each Sirius service, published on the same host port.
# Later services add their rows: otlp 4317 + 4318, flight 50051, gateway 3000.
DESIGN_PORTS: dict[str, set[int]] = {
    "ingestion": {9000},
    "flight": {50051},
    "gateway": {3000},
    "otlp": {4317, 4318},
    "daemon": set(),
    "migrate": set(),
}
CONTRACT_PORTS = {9000, 4317, 4318, 50051, 3000}


# Compose interpolation: "$$" is a literal "$"; "${NAME}", "$NAME", "${NAME:-default}",
# "${NAME-default}", "${NAME:?error}", "${NAME?error}", "${NAME:+alt}", "${NAME+alt}".
_INTERPOLATION = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^{}]*))?\}"
    r"|(?P<bare>[A-Za-z_][A-Za-z0-9_]*)|(?P<invalid>))"
)


def _interpolate(text: str, env: dict[str, str], where: str) -> str:
    """Resolve one string as Compose does; a variable with no value and no default fails the test."""

    def substitute(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        if match["invalid"] is not None:
            pytest.fail(f"{where}: invalid interpolation in {text!r}", pytrace=False)
        name = match["braced"] or match["bare"]
        op, arg = match["op"], match["arg"] or ""
        value = env.get(name)
        empty = value is None or (value == "" and op is not None and op.startswith(":"))
        if op in {"-", ":-"}:
            return arg if empty else str(value)
        if op in {"+", ":+"}:
            return "" if empty else arg
        if empty:
            reason = arg if op in {"?", ":?"} else "no value and no default"
            pytest.fail(f"{where}: ${{{name}}}: {reason} (every setting needs a default)", pytrace=False)
        return str(value)

    return _INTERPOLATION.sub(substitute, text)


def _resolve(node: Any, env: dict[str, str], where: str) -> Any:
    if isinstance(node, dict):
        return {key: _resolve(value, env, f"{where}.{key}") for key, value in node.items()}
    if isinstance(node, list):
        return [_resolve(item, env, f"{where}[{index}]") for index, item in enumerate(node)]
    if isinstance(node, str):
        return _interpolate(node, env, where)
    return node


@functools.cache
def _schema_validator() -> jsonschema.Draft7Validator:
    schema = json.loads(COMPOSE_SCHEMA.read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def _schema_errors(config: Any) -> list[str]:
    errors = sorted(_schema_validator().iter_errors(config), key=lambda e: [str(p) for p in e.absolute_path])
    return [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in errors]


def _load(text: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Compose text as Compose would run it (no .env, no shell variables unless given), validated."""
    raw = yaml.safe_load(text)  # anchors and "<<" merge keys resolve here
    assert isinstance(raw, dict)
    config = _resolve(raw, env or {}, "compose")
    errors = _schema_errors(config)
    if errors:
        pytest.fail("the compose file does not validate:\n" + "\n".join(errors), pytrace=False)
    for svc in config["services"].values():  # build contexts are relative to the compose file
        build = svc.get("build")
        if isinstance(build, str):
            svc["build"] = build = {"context": build}
        if isinstance(build, dict):
            build["context"] = str((COMPOSE_FILE.parent / build.get("context", ".")).resolve())
            build.setdefault("dockerfile", "Dockerfile")
    return config


@functools.cache
def _compose_config() -> dict[str, Any]:
    return _load(COMPOSE_FILE.read_text())


def _services() -> dict[str, dict[str, Any]]:
    return _compose_config()["services"]


def _sirius_services() -> dict[str, dict[str, Any]]:
    """Services running the Sirius image: built from the repository root, or sharing that image."""
    services = _services()
    built = {
        name
        for name, svc in services.items()
        if isinstance(svc.get("build"), dict) and Path(svc["build"]["context"]).resolve() == REPO
    }
    images = {services[name].get("image") for name in built} - {None}
    return {name: svc for name, svc in services.items() if name in built or svc.get("image") in images}


def _command(svc: dict[str, Any]) -> list[str]:
    command = svc.get("command")
    if command is None:
        return []
    return shlex.split(command) if isinstance(command, str) else [str(token) for token in command]


def _env(svc: dict[str, Any]) -> dict[str, str]:
    env = svc.get("environment") or {}
    if isinstance(env, list):  # "NAME=value" form
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def _published(svc: dict[str, Any]) -> list[tuple[str, int, int]]:
    """(host ip, host port, container port) of each published port, short or long syntax."""
    out = []
    for port in svc.get("ports") or []:
        if isinstance(port, dict):
            out.append((str(port.get("host_ip", "")), int(port["published"]), int(port["target"])))
            continue
        spec = str(port).split("/", 1)[0]
        parts = spec.rsplit(":", 2)
        if len(parts) == 3:
            out.append((parts[0], int(parts[1]), int(parts[2])))
        elif len(parts) == 2:
            out.append(("", int(parts[0]), int(parts[1])))
        else:
            pytest.fail(f"port {port!r} is not published on a fixed host port")
    return out


def _subcommands(parser: argparse.ArgumentParser) -> set[str]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return set(action.choices)
    raise AssertionError("build_parser() has no subcommands")


def test_compose_file_validates() -> None:
    config = _compose_config()
    assert {"postgres", "minio", "minio-init", "migrate", "ingestion"} <= set(config["services"])
    assert {"migrate", "ingestion"} <= set(_sirius_services())


def test_the_validator_rejects_what_compose_would_reject() -> None:
    good = {"services": {"a": {"image": "x", "depends_on": {"b": {"condition": "service_healthy"}}}, "b": {}}}
    assert _schema_errors(good) == []
    typo = {"services": {"a": {"image": "x", "dependson": ["b"]}}}
    assert any("dependson" in error for error in _schema_errors(typo))
    bad_condition = {"services": {"a": {"depends_on": {"b": {"condition": "service_ready"}}}}}
    assert _schema_errors(bad_condition)
    bad_duration = {"services": {"a": {"healthcheck": {"test": ["CMD", "true"], "interval": "5 seconds"}}}}
    assert _schema_errors(bad_duration)
    assert _schema_errors({"services": {}, "servics": {}})
    assert _interpolate("a$${B}${C:-c}${D-d}${E:+e}", {"E": "1"}, "t") == "a${B}cde"
    assert _interpolate("${E:-x}", {"E": ""}, "t") == "x"
    assert _interpolate("${E-x}", {"E": ""}, "t") == ""
    with pytest.raises(pytest.fail.Exception, match="no default"):
        _interpolate("${UNSET}", {}, "t")


def test_every_reference_resolves() -> None:
    config = _compose_config()
    services = config["services"]
    declared_volumes = set(config.get("volumes") or {})
    for name, svc in services.items():
        depends = svc.get("depends_on") or {}
        for dependency in depends if isinstance(depends, list) else depends.keys():
            assert dependency in services, f"{name} depends on unknown service {dependency}"
            assert dependency != name, f"{name} depends on itself"
        for volume in svc.get("volumes") or []:
            source = volume.split(":", 1)[0] if isinstance(volume, str) else volume.get("source", "")
            if source.startswith((".", "/")):
                assert (COMPOSE_FILE.parent / source).exists(), f"{name}: bind mount {source} does not exist"
            else:
                assert source in declared_volumes, f"{name}: volume {source} is not declared under volumes:"
        build = svc.get("build")
        if build:
            context = Path(build["context"])
            assert (context / build["dockerfile"]).is_file(), f"{name}: no {build['dockerfile']} in {context}"
        healthcheck = svc.get("healthcheck")
        if healthcheck:
            test = healthcheck["test"]
            assert isinstance(test, str) or test[0] in {"CMD", "CMD-SHELL", "NONE"}, f"{name}: healthcheck test"


def test_sirius_services_share_one_image_built_from_the_repo() -> None:
    sirius = _sirius_services()
    assert len({svc.get("image") for svc in sirius.values()}) == 1, "one image for every Sirius service"
    for name, svc in sirius.items():
        assert svc["build"]["dockerfile"] == "Dockerfile", name
        assert Path(svc["build"]["context"]).resolve() == REPO, name


def test_sirius_commands_are_real_subcommands_that_parse() -> None:
    parser = build_parser()
    subcommands = _subcommands(parser)
    for name, svc in _sirius_services().items():
        assert "entrypoint" not in svc, f"{name}: the image's ENTRYPOINT is `sirius`; do not override it"
        tokens = _command(svc)
        assert tokens, f"{name}: no command (the image would only print --help)"
        assert tokens[0] in subcommands, f"{name}: `sirius {tokens[0]}` is not one of {sorted(subcommands)}"
        try:
            args = build_parser().parse_args(tokens)
        except SystemExit as exc:
            pytest.fail(f"{name}: `sirius {shlex.join(tokens)}` does not parse (exit {exc.code})")
        assert args.command == tokens[0]


def test_sirius_env_vars_are_contract_names() -> None:
    for name, svc in _sirius_services().items():
        env = _env(svc)
        unknown = {var for var in env if var not in CONTRACT_ENV_VARS and not var.startswith(CONTRACT_ENV_PREFIXES)}
        assert not unknown, f"{name}: env vars outside DESIGN.md's contract: {sorted(unknown)}"
        assert env.get("MICROMEGAS_SQL_CONNECTION_STRING", "").startswith("postgresql://"), name


def test_ingestion_env_reaches_postgres_minio_and_has_keys() -> None:
    services = _services()
    env = _env(services["ingestion"])
    assert env["MICROMEGAS_SQL_CONNECTION_STRING"].split("@", 1)[1].startswith("postgres:5432/")
    match = re.fullmatch(r"s3://([a-z0-9.-]+)/(\S+)", env["MICROMEGAS_OBJECT_STORE_URI"])
    assert match, env["MICROMEGAS_OBJECT_STORE_URI"]
    assert env["AWS_ENDPOINT_URL"] == "http://minio:9000"
    assert env["AWS_REGION"]

    # The bucket the service writes to is the one minio-init creates, with MinIO's credentials.
    minio = _env(services["minio"])
    assert env["AWS_ACCESS_KEY_ID"] == minio["MINIO_ROOT_USER"]
    assert env["AWS_SECRET_ACCESS_KEY"] == minio["MINIO_ROOT_PASSWORD"]
    assert _env(services["minio-init"])["SIRIUS_BUCKET"] == match.group(1)
    assert "mb --ignore-existing" in " ".join(_command(services["minio-init"]))

    # Bound to 0.0.0.0, ingestion refuses to start without keys (DESIGN.md "auth").
    keys = json.loads(env["MICROMEGAS_API_KEYS"])
    assert isinstance(keys, list)
    assert keys
    for entry in keys:
        assert set(entry) == {"name", "key"}
        assert isinstance(entry["name"], str)
        assert entry["name"]
        assert isinstance(entry["key"], str)
        assert entry["key"]


def test_published_ports_match_design() -> None:
    services = _services()
    for name, svc in _sirius_services().items():
        assert name in DESIGN_PORTS, f"{name}: add its DESIGN.md ports to DESIGN_PORTS"
        published = _published(svc)
        assert {target for _, _, target in published} == DESIGN_PORTS[name], name
        for _, host, target in published:
            assert host == target, f"{name}: container port {target} published on host port {host}"
        tokens = _command(svc)
        if "--port" in tokens:
            assert int(tokens[tokens.index("--port") + 1]) in DESIGN_PORTS[name], f"{name}: --port"
    # No other service takes a contract port on the host, and no two share a host port.
    seen: dict[tuple[str, int], str] = {}
    sirius = set(_sirius_services())
    for name, svc in services.items():
        for ip, host, _ in _published(svc):
            if name not in sirius:
                assert host not in CONTRACT_PORTS, f"{name} publishes host port {host}, a Sirius port"
            assert (ip, host) not in seen, f"{name} and {seen[ip, host]} both publish {ip}:{host}"
            seen[ip, host] = name


def test_start_order_and_health_checks() -> None:
    services = _services()
    assert services["migrate"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert services["minio-init"]["depends_on"] == {"minio": {"condition": "service_healthy"}}
    assert services["ingestion"]["depends_on"] == {
        "migrate": {"condition": "service_completed_successfully"},
        "minio-init": {"condition": "service_completed_successfully"},
    }
    for one_shot in ("migrate", "minio-init"):
        assert services[one_shot]["restart"] == "no", one_shot
    for name in ("postgres", "minio", "ingestion"):
        assert services[name]["healthcheck"]["test"], name
    check = services["ingestion"]["healthcheck"]["test"]
    assert check[:3] == ["CMD", "python", "-c"], "the slim image has python but no curl"
    assert "http://127.0.0.1:9000/ready" in check[3]
    compile(check[3], "<ingestion healthcheck>", "exec")


def test_dockerfile_copies_every_package_and_exposes_the_contract() -> None:
    text = DOCKERFILE.read_text()
    package_dirs = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    copied = set(re.findall(r"^COPY\s+(\S+?)/?\s+\S+$", text, flags=re.MULTILINE))
    missing = set(package_dirs.values()) - copied
    assert not missing, f"Dockerfile does not COPY package folders {sorted(missing)}"
    ignored = {line.strip().rstrip("/") for line in DOCKERIGNORE.read_text().splitlines()}
    assert not ignored & set(package_dirs.values()), ".dockerignore excludes a package folder"
    assert re.search(r"^ENTRYPOINT \[\"sirius\"\]$", text, flags=re.MULTILINE)
    expose = re.search(r"^EXPOSE (.+)$", text, flags=re.MULTILINE)
    assert expose
    assert {int(port) for port in expose.group(1).split()} == CONTRACT_PORTS
    assert re.search(r"^USER (?!root|0\b)\S+", text, flags=re.MULTILINE), "the runtime runs as non-root"
    assert "HEALTHCHECK" not in re.sub(r"#.*", "", text), "compose defines the health checks"
