"""`python -m engine infill`: exact stdout, step display, JSONL batches and clear errors."""
import io
import json
import os
import subprocess
import sys

import pytest
import torch

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


@pytest.mark.parametrize("device, message", [
    ("bogus", "unknown device 'bogus'"),
    pytest.param("cuda", "no CUDA GPU", marks=pytest.mark.skipif(torch.cuda.is_available(), reason="has CUDA")),
])
def test_a_device_this_machine_cannot_use_is_one_clear_line(bert, doc, device, message):
    code, out, err = call("infill", "--model", bert, "--text-file", doc, "--span", "0:3", "--device", device)
    assert code == 2 and out == ""
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_a_document_with_a_nul_byte_is_refused_like_the_editor_refuses_it(bert, tmp_path):
    path = tmp_path / "binary.txt"
    path.write_bytes(b"the quick\x00brown fox")
    code, out, err = call("infill", "--model", bert, "--text-file", str(path), "--span", "0:3")
    assert code == 2 and out == "" and "NUL character at index 9" in err


def test_a_reversed_span_is_called_reversed(bert, doc, tmp_path):
    code, out, err = call("infill", "--model", bert, "--text-file", doc, "--span", "10:5")
    assert code == 2 and "span 10:5 is reversed (end before start)" in err
    path = tmp_path / "edits.jsonl"
    path.write_text(json.dumps({"text": DOC, "spans": [[10, 5]]}) + "\n")
    code, out, err = call("infill", "--model", bert, "--jsonl", str(path))
    assert code == 1 and "span 10:5 is reversed (end before start)" in json.loads(out)["error"]


@pytest.mark.parametrize("item, message", [
    ({"spans": [[True, 5]]}, "must be [start, end]"),                 # True is not the offset 1
    ({"spans": [[0, 5]], "length": True}, "length must be a whole number"),
    ({"spans": [[0, 5]], "seed": True}, "seed must be a whole number"),
    ({"spans": [[0, 5]], "temperature": "hot"}, "temperature must be a finite number"),
    ({"text": "bad \ud800 text", "spans": [[0, 3]]}, "not valid Unicode"),
    ({"text": "nul \x00 text", "spans": [[0, 3]]}, "NUL"),
    ({"spans": [[0, 5]], "constraints": ["quick@0"]}, '"constraints" must be a list of [TEXT, K]'),
])
def test_a_jsonl_line_of_the_wrong_type_gets_an_error_saying_what_is_wrong(bert, tmp_path, item, message):
    path = tmp_path / "edits.jsonl"
    path.write_text(json.dumps({"text": DOC, **item}) + "\n")
    code, out, err = call("infill", "--model", bert, "--jsonl", str(path))
    assert code == 1 and message in json.loads(out)["error"]


@pytest.mark.parametrize("flag", ["--temperature=inf", "--threshold=nan", "--entropy-bound=-inf"])
def test_a_non_finite_setting_on_the_command_line_is_refused(bert, doc, flag):
    code, out, err = call("infill", "--model", bert, "--text-file", doc, "--span", "0:3", flag)
    assert code == 2 and out == "" and "must be a finite number" in err


def test_every_sampler_setting_has_a_flag_that_reaches_the_settings():
    from engine.cli import build_parser, settings_from_args
    from engine.settings import SamplerSettings, knobs
    changed = {"steps": 7, "tokens_per_step": 2, "block_length": 3, "strategy": "entropy", "threshold": 0.5,
               "entropy_bound": 0.3, "temperature": 0.7, "seed": 11, "remask_below": 0.25, "candidates": 3,
               "candidate_temperature": 1.5, "alternatives": 2, "cache": "dual", "refresh_every": 4,
               "context_window": 32, "spacing": 3, "guide": 1.5, "guidance": 2.5, "correct_rounds": 3,
               "round_context": "carry", "scope": "off",
               "rough_margin": 1.5, "steer": "formal tone=2, sarcasm=-1"}
    assert set(changed) == {k.name for k in knobs()}  # a new field needs a line here
    argv = ["infill", "--text-file", "x"]
    for name, value in changed.items():
        argv += ["--" + name.replace("_", "-"), str(value)]
    assert settings_from_args(build_parser().parse_args(argv)) == SamplerSettings(**changed)


def test_none_unsets_a_presets_setting_and_a_missing_flag_keeps_it():
    from engine.cli import build_parser, settings_from_args
    args = build_parser().parse_args(["infill", "--text-file", "x", "--preset", "four_per_forward",
                                      "--context-window", "none"])
    settings = settings_from_args(args)
    assert settings.context_window is None and settings.cache == "dual" and settings.tokens_per_step == 4


def test_a_jsonl_constraint_is_forced_into_the_first_span(bert, tmp_path):
    path = tmp_path / "edits.jsonl"
    path.write_text(json.dumps({"text": DOC, "spans": [[4, 15, 4]], "constraints": [["fox", 2]]}) + "\n")
    code, out, err = call("infill", "--model", bert, "--jsonl", str(path))
    assert code == 0, err
    text = json.loads(out)["text"]
    assert text.startswith("the ") and text.endswith(" fox jumps over the lazy dog.\n") and text.count("fox") == 2


def test_the_documents_language_reaches_the_correction_rounds(bert, tmp_path, monkeypatch):
    """A .py file is checked as Python (by its extension, or --language), and each correction round's
    steps say so under --show-steps; a line of --jsonl may name its own language."""
    seen = []

    def checker_for(language, model):
        seen.append(language)
        return lambda before, after, span, new_span: [new_span] if len(seen) == 1 else []
    monkeypatch.setattr("engine.cli.checker_for", checker_for)
    path = tmp_path / "doc.py"
    path.write_text(DOC, encoding="utf-8")
    code, out, err = call("infill", "--model", bert, "--text-file", str(path), "--span", "4:19", "--show-steps")
    assert code == 0, err
    assert seen == ["python"] and "(correcting, round 1)" in out and "(correcting, round 2)" in out
    lines = tmp_path / "edits.jsonl"
    lines.write_text(json.dumps({"text": DOC, "spans": [[4, 9]], "language": "markdown"}) + "\n")
    code, out, err = call("infill", "--model", bert, "--jsonl", str(lines), "--language", "python")
    assert code == 0 and seen[-1] == "markdown"


def test_an_unknown_language_is_one_clear_line(bert, doc, tmp_path):
    code, out, err = call("infill", "--model", bert, "--text-file", doc, "--span", "0:3", "--language", "klingon")
    assert code == 2 and out == "" and "--language: unknown language 'klingon'" in err
    lines = tmp_path / "edits.jsonl"
    lines.write_text(json.dumps({"text": DOC, "spans": [[0, 3]], "language": 7}) + "\n")
    code, out, err = call("infill", "--model", bert, "--jsonl", str(lines))
    assert code == 1 and '"language" must be a language name' in json.loads(out)["error"]


def test_a_span_of_a_billion_tokens_is_refused_at_once_naming_the_limit(tmp_path):
    """The CLI shares engine/limits.py: refused by arithmetic before the model loads or a slot exists."""
    doc = tmp_path / "doc.txt"
    doc.write_text("It was the best of times.\n")
    err = io.StringIO()
    assert main(["infill", "--model", "/nowhere", "--text-file", str(doc), "--span", "0:3:1000000000"],
                stdout=io.StringIO(), stderr=err) == 2
    assert "the longest span is 32,768 tokens" in err.getvalue()


def test_an_instruction_edit_runs_and_an_empty_one_is_none(bert, doc):
    base = ("infill", "--model", bert, "--text-file", doc, "--span", "10:15", "--strategy", "low_confidence")
    _, plain, _ = call(*base)
    code, out, err = call(*base, "--instruction", "make it about a cat", "--guidance", "2")
    assert code == 0, err
    assert out.startswith("the quick ") and out.endswith(" fox jumps over the lazy dog.\n") and out != plain
    assert call(*base, "--instruction", " ")[1] == plain


@pytest.mark.parametrize("argv,message", [
    (["--instruction", "x" * 1001], "error: instruction: 1,001 characters; the limit is 1,000"),
    (["--instruction", "shorter", "--guidance", "nan"], "guidance must be a finite number"),
    (["--instruction", "shorter", "--guidance", "-1"], "guidance must be a finite number from 0 to 16"),
    (["--instruction", "shorter " * 100], "the model's context is 128"),
])
def test_a_bad_instruction_or_guidance_is_one_line(bert, doc, argv, message):
    code, out, err = call("infill", "--model", bert, "--text-file", doc, "--span", "0:3", *argv)
    assert code == 2 and out == "" and message in err.splitlines()[-1] and err.count("error") == 1


def test_template_fills_every_hole_and_keeps_the_rest(bert, tmp_path):
    path = tmp_path / "letter.txt"
    path.write_text("dear ⟨⟩, the fox ⟨3⟩ over the dog.\n", encoding="utf-8")
    code, out, err = call("infill", "--model", bert, "--text-file", str(path), "--template", "--seed", "1")
    assert code == 0, err
    assert out.startswith("dear ") and ", the fox " in out and out.endswith(" over the dog.\n")
    assert "⟨" not in out and "⟩" not in out


def test_pinned_words_from_the_flags(bert, doc):
    code, out, err = call("infill", "--model", bert, "--text-file", doc, "--span", "4:19:6",
                          "--ends-with", "fox", "--constraint", "red@0", "--seed", "2")
    assert code == 0, err
    assert out.startswith("the red") and out.endswith("fox jumps over the lazy dog.\n")


@pytest.mark.parametrize("argv, message", [
    (["--template"], "--template: the text has no holes"),
    (["--template", "--span", "0:3"], "--template: give no --span"),
    (["--span", "0:3", "--constraint", "x@middle"], "--constraint 'x@middle': expected TEXT@K"),
    (["--span", "0:3", "--include", ""], "--include needs some text"),
    (["--span", "0:3:2", "--ends-with", "jumps over the lazy"], "does not fit in a span of 2 tokens"),
    (["--span", "0:10", "--span", "5:12"], "overlaps the span before it"),
])
def test_bad_pins_and_templates_are_one_line(bert, doc, argv, message):
    code, out, err = call("infill", "--model", bert, "--text-file", doc, *argv)
    last = err.splitlines()[-1]  # some are found once the model has loaded (the span's length in tokens)
    assert code == 2 and out == "" and last.startswith("error: ") and message in last and "Traceback" not in err
