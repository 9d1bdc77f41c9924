"""Sharpen's browser page (Gradio): select text, regenerate it, watch every denoising step."""
from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import gradio as gr  # noqa: E402

from engine import STRATEGIES, DiffusionLM, SamplerSettings, Span, build_canvas, infill  # noqa: E402

STATIC = Path(__file__).parent / "static"
# Reads the textarea's selection at click time (selection events race with fast mouse moves).
# Browser offsets count UTF-16 units; Python counts code points: converted in `utf16_to_index`.
READ_SELECTION = "(text, a, b, ...rest) => { const t = document.querySelector('#document textarea');" \
                 " return [text, t.selectionStart, t.selectionEnd, ...rest]; }"


def utf16_to_index(text: str, units: int) -> int:
    """Python string index of the character boundary `units` UTF-16 code units into `text`."""
    count = 0
    for i, ch in enumerate(text):
        if count >= units:
            return i
        count += 2 if ord(ch) > 0xFFFF else 1
    return len(text)


def build_demo(model: DiffusionLM) -> gr.Blocks:
    with gr.Blocks(title="Sharpen") as demo:
        gr.Markdown(f"## Sharpen\nModel: **{model.label}**. Select text in the document, then regenerate it.")
        document = gr.Textbox(label="Document", lines=14, elem_id="document", interactive=True)
        with gr.Row():
            start = gr.Number(label="start", precision=0, value=0, visible=False)
            end = gr.Number(label="end", precision=0, value=0, visible=False)
            strategy = gr.Dropdown(list(STRATEGIES), value="threshold", label="strategy")
            steps = gr.Slider(1, 128, value=32, step=1, label="steps (most forwards)")
            seed = gr.Number(value=0, precision=0, label="seed")
        with gr.Row():
            regenerate = gr.Button("Regenerate selection", variant="primary")
            stop = gr.Button("Stop")
        draft = gr.Textbox(label="Denoising (live)", lines=14, interactive=False, elem_id="draft")
        status = gr.Markdown(elem_id="status")

        def regenerate_selection(text: str, a: int, b: int, strategy: str, steps: int, seed: int):
            a, b = utf16_to_index(text, int(a or 0)), utf16_to_index(text, int(b or 0))
            if a == b:
                raise gr.Error("Select some text in the document first.")
            try:
                settings = SamplerSettings(strategy=strategy, steps=int(steps), seed=int(seed or 0))
                canvas = build_canvas(model.codec, text, [Span(a, b)], model.max_length)
            except ValueError as err:
                raise gr.Error(str(err)) from None
            for step in infill(model, canvas, settings):
                note = f"step {step.index + 1}: {int(step.masked.sum())} masked, {step.elapsed * 1000:.0f} ms"
                yield gr.update(), step.texts[0], note
            yield step.texts[0], step.texts[0], f"done in {step.forwards} forwards, {step.elapsed:.2f} s"

        event = regenerate.click(regenerate_selection, [document, start, end, strategy, steps, seed],
                                 [document, draft, status], js=READ_SELECTION)
        stop.click(None, cancels=[event])
    return demo


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", help="model folder or cached hub id (default: the bundled model)")
    parser.add_argument("--device", help="cpu or cuda")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7860)
    args = parser.parse_args()
    from engine import load_model
    model = load_model(args.model, device=args.device)
    build_demo(model).launch(server_name=args.host, server_port=args.port)


if __name__ == "__main__":
    main()
