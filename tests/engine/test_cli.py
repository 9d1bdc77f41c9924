"""`python -m engine infill`: exact stdout, step display, JSONL batches and clear errors."""
import io
import json
import os
import subprocess
import sys

import pytest

from engine.cli import main
from tests.tiny import save_tiny_bert

DOC = "the quick brown fox jumps over the lazy dog.\n"


@pytest.fixture(scope="module")
def bert(tmp_path_factory):
    return str(save_tiny_bert(tmp_path_factory.mktemp("bert")))


@pytest.fixture
def doc(tmp_path):
    path = tmp_path / "doc.txt"
    path.write_text(DOC, encoding="utf-8")
    return str(path)


def call(*argv):
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def test_prints_exactly_the_final_document(bert, doc):
    code, out, err = call("infill", "--model", bert, "--text-file", doc, "--span", "10:15", "--seed", "3")
    assert code == 0, err
    assert out.startswith("the quick ") and out.endswith(" fox jumps over the lazy dog.\n")
    assert "forwards" in err and "forwards" not in out


def test_show_steps_prints_each_step_then_the_final_text(bert, doc):
    code, out, err = call("infill", "--model", bert, "--text-file", doc, "--span", "4:19",
                          "--strategy", "low_confidence", "--show-steps")
    assert code == 0, err
    assert out.count("--- step ") >= 2 and "--- final\n" in out
    assert out.endswith(" jumps over the lazy dog.\n")


def test_jsonl_runs_many_edits_and_isolates_bad_lines(bert, tmp_path):
    lines = [json.dumps({"text": DOC, "spans": [[4, 9]], "seed": 1}),
             json.dumps({"text": DOC, "spans": [[4, 999]]}),
             "this is not json",
             json.dumps({"text": DOC, "spans": [[0, 3], [20, 25]], "length": 3, "strategy": "entropy"}),
             json.dumps({"text": DOC, "spans": [[0, 3]], "strategy": "nonsense"})]
    path = tmp_path / "edits.jsonl"
    path.write_text("\n".join(lines) + "\n")
    code, out, err = call("infill", "--model", bert, "--jsonl", str(path))
    results = [json.loads(line) for line in out.splitlines()]
    assert len(results) == 5 and code == 1
    assert results[0]["text"].startswith("the ") and results[0]["forwards"] >= 1 and "ms" in results[0]
    assert "outside the document" in results[1]["error"]
    assert "line 3" in results[2]["error"]
    assert results[3]["text"].endswith(" over the lazy dog.\n")
    assert "unknown strategy" in results[4]["error"]


@pytest.mark.parametrize("argv,message", [
    (["--span", "5:500"], "outside the document"),
    (["--span", "abc"], "expected START:END"),
    (["--span", "0:4", "--strategy", "greedy"], "unknown strategy"),
    (["--span", "0:4", "--length", "400"], "context is 128"),
])
def test_bad_input_exits_nonzero_with_a_clear_message(bert, doc, argv, message):
    code, out, err = call("infill", "--model", bert, "--text-file", doc, *argv)
    assert code == 2 and out == "" and message in err


def test_empty_document_and_missing_model_are_clear_errors(bert, tmp_path, doc):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    code, out, err = call("infill", "--model", bert, "--text-file", str(empty), "--span", "0:0")
    assert code == 2 and "empty" in err
    code, out, err = call("infill", "--model", str(tmp_path / "nope"), "--text-file", doc, "--span", "0:3")
    assert code == 2 and "never downloads" in err


def test_module_entry_point_runs_in_a_fresh_process(bert, doc):
    env = dict(os.environ, PYTHONPATH=os.getcwd(), HF_HUB_OFFLINE="1")
    proc = subprocess.run([sys.executable, "-m", "engine", "infill", "--model", bert, "--text-file", doc,
                           "--span", "10:15"], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("the quick ") and proc.stdout.endswith(" lazy dog.\n")
