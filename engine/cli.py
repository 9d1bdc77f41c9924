"""`python -m engine infill`: regenerate spans of a document (or a JSONL batch) from the shell."""
from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

from .canvas import Constraint, Span
from .checker import checker_for, editor_checks
from .concepts import steer_for
from .correct import Checker, corrected
from .guide import default_preset
from .instruct import read_instruction, with_instruction
from .limits import DEFAULT_BUDGET
from .load import add_load_flags
from .loop import Step, run
from .model import DiffusionLM
from .pins import best_first, lay_out
from .pull import add_parser as add_pull_parser
from .scheduler import MAX_BATCH, MAX_QUEUE
from .serve.wire import InputError, check_text, make_span, pin, read_edit, read_language, read_place
from .settings import DEFAULT_PRESET, GUIDED_PRESET, PRESETS, Knob, SamplerSettings, knobs
from .template import DEFAULT_MARKER, holes


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m engine", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("infill", help="regenerate spans of a document",
                       description="Prints exactly the final document to stdout; progress goes to stderr.")
    add_model_flags(p)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--text-file", help="the document (UTF-8); - reads stdin")
    src.add_argument("--jsonl", help='many edits, one load: lines of {"text": ..., "spans": [[start, end], ...]}')
    p.add_argument("--span", action="append", default=[], metavar="START:END[:LENGTH]",
                   help="characters to regenerate (repeatable); LENGTH in tokens")
    p.add_argument("--length", type=int, help="tokens per span when a span gives none (default: keep)")
    p.add_argument("--constraint", action="append", default=[], metavar="TEXT@K",
                   help="TEXT must appear K tokens into the first span; K 'end': TEXT ends it; K 'any': "
                        "the model picks the place (repeatable)")
    p.add_argument("--ends-with", metavar="TEXT", help="the first span must end with TEXT")
    p.add_argument("--include", metavar="TEXT", help="the first span must include TEXT, where the model "
                   "finds it most likely (every place tried in one batch)")
    p.add_argument("--template", action="store_true", help="the spans are the document's holes (no --span): "
                   "each marked hole is filled, all in one run; a hole may hold N, its length in tokens")
    p.add_argument("--hole-marker", default=DEFAULT_MARKER, metavar="OPENCLOSE",
                   help="the holes' opening and closing strings as one string (default: %(default)s)")
    p.add_argument("--instruction", help="what the new text should do (\"make it a question\"): an "
                   "instruction edit, read in the model's chat template; --guidance sets how strongly "
                   "(in --jsonl a line may give its own \"instruction\")")
    p.add_argument("--show-steps", action="store_true", help="also print every step's draft")
    p.add_argument("--language", help="the document's language, for the correction rounds' checker "
                   "(python, markdown, text, ...; default: by the file's extension, else text; in "
                   "--jsonl a line may give its own)")
    add_setting_flags(p)
    s = sub.add_parser("serve", help="the engine as an HTTP service (README: Engine service)",
                       description="Serves one model or several: /v1/edits, /v1/completions (OpenAI, fill in the "
                                   "middle), /v1/models, /health, /metrics. The sampler flags set each "
                                   "request's defaults; a request may change any setting by name.")
    add_model_flags(s, several=True)
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    s.add_argument("--port", type=int, default=8000, help="port (default: %(default)s)")
    s.add_argument("--max-batch", type=int, default=MAX_BATCH, help="edits denoised together in one forward "
                   "(default: %(default)s)")
    s.add_argument("--max-queue", type=int, default=MAX_QUEUE, help="edits that may wait; past it a request "
                   "gets 503 with Retry-After (default: %(default)s)")
    s.add_argument("--tp", type=int, default=1, help="tensor-parallel ranks: run under `torchrun "
                   "--nproc-per-node N` with --tp N (README: Past one GPU; default: %(default)s)")
    s.add_argument("--tp-timeout", type=float, default=60.0, help="seconds a rank waits for the others at "
                   "a collective before every rank stops (default: %(default)s)")
    add_guard_flags(s)
    add_setting_flags(s)
    add_pull_parser(sub)
    return parser


def add_guard_flags(s: argparse.ArgumentParser) -> None:
    """Who may call the service and how much one edit may cost (README: Engine service)."""
    g = s.add_argument_group("access and limits")
    g.add_argument("--api-key", help="clients send it as `Authorization: Bearer KEY` on every /v1 route "
                   "(default: SHARPEN_API_KEY; a flag shows in ps, the file or variable does not); without any "
                   "key only this machine is served")
    g.add_argument("--api-key-file", help="a file of keys, one a line (default: SHARPEN_API_KEY_FILE)")
    g.add_argument("--allowed-host", action="append", default=[], metavar="NAME",
                   help="a Host name served besides loopback names and IP addresses (repeatable; * any)")
    g.add_argument("--allowed-origin", action="append", default=[], metavar="ORIGIN",
                   help="a web page Origin allowed to call the service (repeatable; default none)")
    g.add_argument("--open-health", action="store_true", help="/health and /metrics answer without a key")
    g.add_argument("--docs", action="store_true", help="serve /docs and /openapi.json")
    g.add_argument("--budget", type=int, default=DEFAULT_BUDGET, help="most steps x candidates x canvas tokens "
                   "one edit may cost, as the page's --budget (default: %(default)s)")
    g.add_argument("--max-seconds", type=float, default=300.0, help="an edit's wall clock, queue included: "
                   "past it its next step is its last (default: %(default)s)")


def add_model_flags(p: argparse.ArgumentParser, several: bool = False) -> None:
    """The load flags (`several`: --model repeatable, the first the default) and --preset."""
    add_load_flags(p, several)
    p.add_argument("--preset", choices=sorted(PRESETS),
                   help=f"start from a named preset (default, as on the page: {GUIDED_PRESET} for a model "
                        f"with a frontier guide, the bundled one; {DEFAULT_PRESET} for the others)")


def add_setting_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per SamplerSettings field, typed and described by the field; a flag left out keeps
    the preset's value (or the default)."""
    group = parser.add_argument_group("sampler settings", "each overrides the preset; optional ones take none")
    for knob in knobs():
        about = knob.help + (f"; none: {knob.none}" if knob.optional else "")
        default = "none" if knob.default is None else knob.default
        group.add_argument("--" + knob.name.replace("_", "-"), type=flag_type(knob), default=argparse.SUPPRESS,
                           metavar="|".join(knob.choices) or knob.kind.__name__.upper(),
                           help=f"{about} (default: {default})".replace("%", "%%"))


def flag_type(knob: Knob) -> Callable[[str], Any]:
    """argparse's `type` for a setting: its text as a value, or argparse's one-line usage error."""
    def parse(text: str) -> Any:
        try:
            return knob.from_text(text)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None
    return parse


def main(argv: Sequence[str] | None = None, stdout: TextIO = sys.stdout, stderr: TextIO = sys.stderr) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "pull":
        from .pull import command
        return command(args, stdout, stderr)
    if args.command == "serve":
        from .serve.command import serve
        return serve(args, functools.partial(settings_from_args, args), stderr)
    try:
        settings_from_args(args)  # every input is checked before the (slow) model load
        instruction = read_instruction(args.instruction)
        if args.jsonl:
            jsonl = open_jsonl(args.jsonl)
            model = load(args, stderr)
            return run_jsonl(model, jsonl, settings_from_args(args, model), stdout, stderr, args.language or "text")
        text = read_document(args.text_file)
        spans = pin(template_spans(args, text) if args.template else parse_spans(args.span, args.length),
                    cli_pins(args))
        model = load(args, stderr)
        check = language_checker(args.language or language_of(args.text_file), model, stderr)
        final = edit(model, text, spans, settings_from_args(args, model), stdout if args.show_steps else None, stderr,
                     check, instruction)
    except (InputError, ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=stderr)
        return 2
    stdout.write(final)
    stdout.flush()
    return 0


def settings_from_args(args: argparse.Namespace, model: DiffusionLM | None = None) -> SamplerSettings:
    """--preset (else `model`'s default preset, engine.guide.default_preset) changed by the sampler flags;
    with `model`, its steered concepts checked against the model's names (engine.concepts)."""
    base = PRESETS[args.preset or (default_preset(model) if model is not None else DEFAULT_PRESET)]
    settings = base.with_values({k.name: getattr(args, k.name) for k in knobs() if hasattr(args, k.name)})
    if model is not None:
        steer_for(model, settings)
    return settings


def read_document(path: str) -> str:
    try:
        raw = sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
    except OSError as err:
        raise InputError(f"cannot read {path}: {err.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise InputError(f"{path} is not UTF-8 text (byte {err.start})") from None
    if not text:
        raise InputError(f"{path} is empty: there is no document to edit")
    check_text(text)
    return text


def parse_spans(specs: list[str], length: int | None) -> list[Span]:
    if not specs:
        raise InputError("give at least one --span START:END (or --template)")
    spans = []
    for spec in specs:
        parts = spec.split(":")
        if len(parts) not in (2, 3) or not all(p.strip().lstrip("-").isdigit() for p in parts):
            raise InputError(f"--span {spec!r}: expected START:END or START:END:LENGTH (whole numbers)")
        start, end = int(parts[0]), int(parts[1])
        spans.append(make_span(start, end, int(parts[2]) if len(parts) == 3 else length))
    return spans


def template_spans(args: argparse.Namespace, text: str) -> list[Span]:
    """--template: the document's holes are the spans."""
    if args.span:
        raise InputError("--template: give no --span (the holes are the spans)")
    if args.length is not None and args.length < 1:
        raise InputError(f"--length must be a whole number >= 1, got {args.length}")
    try:
        return holes(text, args.hole_marker, args.length)
    except ValueError as err:
        words = str(err).replace('"template"', "--template").replace('"hole_marker"', "--hole-marker")
        raise InputError(words) from None


def cli_pins(args: argparse.Namespace) -> list[tuple[int, Constraint]]:
    """--constraint TEXT@K (K a token offset, end or any), --ends-with and --include, for the first span."""
    out = []
    for spec in args.constraint:
        body, sep, at = spec.rpartition("@")
        place = read_place(int(at) if at.isdigit() else at)
        if not sep or not body or place is None:
            raise InputError(f"--constraint {spec!r}: expected TEXT@K, K a token offset, end or any")
        out.append((0, Constraint(body, *place)))
    for flag, value, anchor in (("--ends-with", args.ends_with, "end"), ("--include", args.include, "anywhere")):
        if value is not None and not value:
            raise InputError(f"{flag} needs some text")
        if value:
            out.append((0, Constraint(value, 0, anchor)))
    return out


def open_jsonl(path: str) -> list[str]:
    try:
        return Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as err:
        raise InputError(f"cannot read {path}: {err.strerror}") from None
    except UnicodeDecodeError:
        raise InputError(f"{path} is not UTF-8 text") from None


def load(args: argparse.Namespace, stderr: TextIO) -> DiffusionLM:
    from .load import load_model
    t0 = time.perf_counter()
    model = load_model(args.model, device=args.device, dtype=args.dtype, compile=args.compile,
                       quantize=args.quantize)
    print(f"loaded {model.label} in {time.perf_counter() - t0:.1f} s; memory: {model.memory}", file=stderr)
    return model


def language_of(path: str) -> str:
    """The language of a document by its file name (editor.languages), "text" without the editor."""
    checks = editor_checks()
    return checks.language_for(path) if checks is not None and path != "-" else "text"


def language_checker(language: str, model: DiffusionLM, stderr: TextIO) -> Checker | None:
    """The correction rounds' checker; InputError for a language the editor does not know, None
    (and a note) without the editor."""
    try:
        check = checker_for(language, model)
    except ValueError as err:
        raise InputError(f"--language: {err}") from None
    if check is None:
        print("note: the editor package is not installed: edits are not corrected", file=stderr)
    return check


def edit(model: DiffusionLM, text: str, spans: list[Span], settings: SamplerSettings,
         show: TextIO | None, stderr: TextIO, checker: Checker | None = None,
         instruction: str | None = None) -> str:
    canvas, settings = lay_out(model.codec, text, spans, settings, model.max_length)
    canvas = with_instruction(canvas, instruction, model.max_length)
    last: Step | None = None
    for last in corrected(model, canvas, settings, checker):
        if show is not None:
            fixing = f" (correcting, round {last.round})" if last.round else ""
            print(f"--- step {last.index + 1}{fixing}: committed {int(last.committed[0].sum())}, "
                  f"still masked {int(last.masked[0].sum())}", file=show)
            print(last.texts[0], file=show)
    assert last is not None
    tokens = int((last.committed_at[0] >= 0).sum())
    print(f"{last.forwards} forwards, {tokens / last.forwards:.2f} tokens/forward, "
          f"{last.elapsed * 1000:.0f} ms", file=stderr)
    if show is not None:
        print("--- final", file=show)
    return best_first(last).texts[0]


def run_jsonl(model: DiffusionLM, lines: list[str], settings: SamplerSettings,
              stdout: TextIO, stderr: TextIO, language: str = "text") -> int:
    """One output line per non-blank input line; a bad line gets {"error": ...} and the rest go on.
    Exit status 1 when any line failed, else 0."""
    failed = 0
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            result = jsonl_edit(model, json.loads(line), settings, language)
        except (ValueError, TypeError, KeyError) as err:
            failed += 1
            result = {"error": f"line {number}: {err}"}
        stdout.write(json.dumps(result, ensure_ascii=False) + "\n")
        stdout.flush()
    if failed:
        print(f"{failed} line(s) failed", file=stderr)
    return 1 if failed else 0


def jsonl_edit(model: DiffusionLM, item: Any, settings: SamplerSettings, language: str = "text") -> dict:
    text, spans, settings = read_edit(item, settings)
    canvas, settings = lay_out(model.codec, text, spans, settings, model.max_length)
    canvas = with_instruction(canvas, item.get("instruction"), model.max_length)
    step = best_first(run(corrected(model, canvas, settings, checker_for(read_language(item) or language, model))))
    return {"text": step.texts[0], "forwards": step.forwards, "ms": round(step.elapsed * 1000, 1)}
