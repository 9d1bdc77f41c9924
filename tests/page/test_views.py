"""The run view's HTML: the span as tokens, a few lines of its context, not the whole document."""
import torch

from engine import Span, TextCodec, build_canvas, infill, run
from page.views import CONTEXT_LINES, step_html
from tests.tiny import ScriptedModel, byte_bpe_tokenizer


def test_run_view_shows_the_span_with_a_few_lines_of_context_not_the_whole_file():
    codec = TextCodec.from_tokenizer(byte_bpe_tokenizer(bos=True))
    model = ScriptedModel(codec, torch.randint(10, 300, (16384,), generator=torch.Generator().manual_seed(0)),
                          torch.linspace(0.3, 0.9, 16384))
    lines = [f"line {i:03d} of the file" for i in range(500)]
    text = "\n".join(lines)
    start = text.index("line 250")
    canvas = build_canvas(codec, text, [Span(start, start + len("line 250"))], 16384)
    html = step_html(run(infill(model, canvas, model_settings())), canvas)
    # the span's own line and the lines either side of it (CONTEXT_LINES counts the span's line)
    assert all(f"line {i}" in html for i in (248, 249, 251, 252))
    assert "line 247" not in html and "line 253" not in html                  # not the rest
    assert "line 000" not in html and "line 499" not in html
    assert html.count("…") == 2 and len(html) < 20 * len(lines[0]) * 2 * CONTEXT_LINES + 5_000


def model_settings():
    from engine import PRESETS
    return PRESETS["quality"]


def test_a_demonstration_model_is_labelled_as_one_and_says_how_to_load_a_real_one():
    from engine.families.bundled import DefaultModel
    from page.views import title_html

    assert DefaultModel.demonstration  # the bundled model, without loading it
    shown = title_html("SmolLM2-135M diffusion (adapted)", DefaultModel.demonstration)
    assert "135M demo model" in shown and "--model FOLDER" in shown
    real = title_html("LLaDA-8B <local>", False)
    assert "demonstration" not in real and "LLaDA-8B &lt;local&gt;" in real


def scripted_run():
    """A 3-slot span of a short text denoised by the scripted model: its canvas and every step."""
    codec = TextCodec.from_tokenizer(byte_bpe_tokenizer(bos=True))
    model = ScriptedModel(codec, torch.randint(10, 300, (64,), generator=torch.Generator().manual_seed(0)),
                          torch.linspace(0.3, 0.9, 64))
    canvas = build_canvas(codec, "abc def ghi jkl", [Span(4, 11)])
    return canvas, list(infill(model, canvas, model_settings()))


def test_the_metrics_say_correcting_while_a_correction_round_runs():
    import dataclasses

    from page.views import metrics_html
    canvas, steps = scripted_run()
    undecided = dataclasses.replace(steps[0], round=1)
    assert not undecided.done  # the first step of a 3-slot span, one committed at a time
    html = metrics_html(undecided, canvas)
    assert 'data-state="correcting"' in html and "correction round 1" in html
    assert 'data-state="denoising"' in metrics_html(steps[0], canvas)
    assert 'data-state="done"' in metrics_html(dataclasses.replace(steps[-1], round=1), canvas)


def test_a_hosted_models_run_is_worded_as_chunks_of_text_not_forwards():
    from page.views import inspector_html, metrics_html
    canvas, steps = scripted_run()
    for step in (steps[0], steps[-1]):
        html = metrics_html(step, canvas, streamed=True)
        assert "hosted model" in html and "chunks" in html and "forwards of the model" not in html
        assert "tokens/s" not in html and 'data-state="' in html  # the editor's states keep their names
    assert "streaming" in metrics_html(steps[0], canvas, streamed=True)
    spot = int(steps[-1].positions[0])
    said = inspector_html(steps[-1], canvas, 0, spot, streamed=True)
    assert "streamed by the hosted model" in said and "sure" not in said
    assert "sure" in inspector_html(steps[-1], canvas, 0, spot)  # a local model's run says how sure it was


def test_an_undecided_slot_shows_its_draft_blurred_and_a_slot_never_read_shows_the_mask():
    """The loop records each undecided slot's current first choice (its draft): the run view and the
    editor's pieces draw it in place of the mask, marked as a draft; before any forward, the mask."""
    import dataclasses
    from types import SimpleNamespace

    from engine import MASK_GLYPH
    from page.live import slot_pieces
    canvas, steps = scripted_run()
    step = steps[0]
    masked = step.masked[0].nonzero().squeeze(-1).tolist()
    assert masked and (step.top_probs[0, masked, 0] > 0).all()
    drafts = canvas.codec.pieces(step.top_ids[0, masked, 0].tolist())
    pieces = slot_pieces(SimpleNamespace(canvas=canvas), step, 0, 0)
    assert [p[0] for p in pieces if p[1] == "draft"] == drafts
    assert not any(p[1] == "masked" for p in pieces)
    html = step_html(step, canvas)
    assert html.count('data-draft="1"') == len(masked) and MASK_GLYPH not in html
    unread = dataclasses.replace(step, top_probs=torch.zeros_like(step.top_probs))
    assert 'data-draft' not in step_html(unread, canvas) and MASK_GLYPH in step_html(unread, canvas)
    assert [p[1] for p in slot_pieces(SimpleNamespace(canvas=canvas), unread, 0, 0)].count("masked") == len(masked)
