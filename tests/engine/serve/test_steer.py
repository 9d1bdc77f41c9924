"""Concept steering through the entry points, on the tiny Steerling checkpoint: the service steers
an edit through its scheduler exactly as the engine does, and refuses an unknown concept with a 400
naming the field; the CLI steers with --steer and refuses with one line."""
import io

import httpx
import pytest

from engine import Span, build_canvas, load_model, run
from engine.cli import main
from engine.correct import corrected
from engine.serve.app import create_app
from engine.settings import PRESETS
from tests.engine.serve.conftest import served
from tests.steerling_tiny import write_tiny_steerling

TEXT = " ".join(f"t{i}" for i in range(10, 40))
SPAN = [30, 50]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    path = tmp_path_factory.mktemp("steerling")
    write_tiny_steerling(path)
    return path


@pytest.fixture(scope="module")
def model(folder):
    return load_model(folder, device="cpu")


@pytest.fixture(scope="module")
def url(model):
    with served(create_app(model, defaults=PRESETS["quality"])) as base:
        yield base


def edit(url, **body):
    return httpx.post(f"{url}/v1/edits", json={"text": TEXT, "spans": [SPAN], **body}, timeout=60)


def test_the_service_steers_an_edit_as_the_engine_does(url, model):
    steered = edit(url, steer="concept 0=30").json()
    plain = edit(url).json()
    canvas = build_canvas(model.codec, TEXT, [Span(*SPAN)], model.max_length)
    expected = run(corrected(model, canvas, PRESETS["quality"].replace(steer="concept 0=30")))
    assert steered["text"] == expected.texts[0] != plain["text"]
    assert steered["text"][:30] == TEXT[:30]


@pytest.mark.parametrize("steer, says", [("sarcasm=2", "unknown concept 'sarcasm'"), ("concept 0", "NAME=WEIGHT"),
                                         ("concept 0=inf", "finite")])
def test_the_service_refuses_a_bad_steer_with_a_400_naming_it(url, steer, says):
    response = edit(url, steer=steer)
    assert response.status_code == 400
    assert response.json()["error"].startswith("steer: ") and says in response.json()["error"]


def test_the_cli_steers_and_refuses_an_unknown_concept_in_one_line(folder, tmp_path):
    doc = tmp_path / "doc.txt"
    doc.write_text(TEXT)
    args = ["infill", "--text-file", str(doc), "--model", str(folder), "--device", "cpu",
            "--span", f"{SPAN[0]}:{SPAN[1]}", "--preset", "quality"]
    out, err = io.StringIO(), io.StringIO()
    assert main([*args, "--steer", "concept 0=30"], out, err) == 0
    plain = io.StringIO()
    assert main(args, plain, io.StringIO()) == 0
    assert out.getvalue() != plain.getvalue() and out.getvalue()[:30] == TEXT[:30]
    out, err = io.StringIO(), io.StringIO()
    assert main([*args, "--steer", "sarcasm=2"], out, err) == 2
    errors = [line for line in err.getvalue().splitlines() if line.startswith("error")]  # after the load's line
    assert len(errors) == 1 and errors[0].startswith("error: steer: unknown concept 'sarcasm'")
    assert out.getvalue() == ""
