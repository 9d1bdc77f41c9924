"""HTML for the page: denoising steps as tokens, the token inspector, diffs and the revision tree.

Every string that came from a user, a file or the model goes through `html.escape` here; only
numbers and fixed class names are written raw.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape

from editor.history import Revision
from engine import MASK_GLYPH, Canvas, Step

EOS_GLYPH = "\u23ce"  # a decided end-of-text token: the span ends early there
EMPTY_VIEW = '<div class="sh-view sh-empty">Select text and press an action: every denoising step shows here.</div>'


DEMONSTRATION = "135M demo model"  # one short line in the top bar; the rest in its tooltip
DEMONSTRATION_MORE = ("The bundled model has 135M parameters: enough to watch the denoising work, too small for "
                      "edits worth keeping. python app.py --model FOLDER loads a real one (LLaDA 8B, Dream 7B, "
                      "...; README: Models).")


BLOCK_CAUSAL_MORE = ("This model's attention is block-causal: the canvas is cut into blocks of {n} tokens from the "
                     "first token it reads, and a token sees its own block and the ones before it. So an edit reads "
                     "the text before it and up to the end of its block, not the rest of the document after it.")


def title_html(label: str, demonstration: bool, attention_block: int | None = None) -> str:
    """The page's title, the model's name, for a demonstration model a plain word on what it is, and
    for a block-causal one (LLaDA 2, Steerling) what a span can see."""
    note = (f'<span class="sh-demo" id="demo-model" title="{escape(DEMONSTRATION_MORE)}">{escape(DEMONSTRATION)}'
            "</span>" if demonstration else "")
    if attention_block is not None:
        more = BLOCK_CAUSAL_MORE.format(n=attention_block)
        note += (f'<span class="sh-demo" id="block-causal" title="{escape(more)}">block-causal '
                 f"({attention_block})</span>")
    return f'<div class="sh-title"><b>Sharpen</b><span title="{escape(label)}">{escape(label)}</span>{note}</div>'


def _heat(confidence: float) -> str:
    """Background for the confidence heatmap: red (unsure) to green (sure)."""
    return f"background-color: hsla({confidence * 120:.0f}, 75%, 70%, 0.55)"


def span_pieces(step: Step, canvas: Canvas, b: int, start: int, end: int, drafts: bool = False) -> dict[int, str]:
    """Text of each decided slot of a span (slots [start, end) of P-space), cut at token edges of
    runs of decided slots (so a character split over two byte-level tokens reads whole, not as two
    U+FFFD). `drafts`: of each undecided slot's draft instead (`has_draft`), an end token as EOS_GLYPH."""
    out: dict[int, str] = {}
    run: list[int] = []
    for s in range(start, end + 1):
        if s < end and (has_draft(step, b, s) if drafts else not bool(step.masked[b, s])):
            run.append(s)
            continue
        if run:
            ids = [int(step.top_ids[b, i, 0] if drafts else step.tokens[b, i]) for i in run]
            out.update(zip(run, canvas.codec.pieces(ids)))
            out.update({i: EOS_GLYPH for i, t in zip(run, ids) if drafts and t == canvas.codec.eos_id})
            run = []
    return out


def has_draft(step: Step, b: int, s: int) -> bool:
    """Whether undecided slot `s` has a draft: the model's first choice there at this step's forward
    (engine.loop.Step.top_ids), drawn blurred until a step commits the slot."""
    return bool(step.masked[b, s]) and float(step.top_probs[b, s, 0]) > 0


def slot_kind(step: Step, canvas: Canvas, b: int, s: int) -> str:
    """What span slot `s` (P-space) of candidate `b` is at `step`: masked, new (committed this step),
    settled, forced (by a constraint); a decided end-of-text token adds " eos"."""
    if bool(step.masked[b, s]):
        return "masked"
    born = int(step.committed_at[b, s])
    kind = "new" if bool(step.committed[b, s]) else ("forced" if born < 0 else "settled")
    return kind + " eos" if int(step.tokens[b, s]) == canvas.codec.eos_id else kind


def token_html(step: Step, canvas: Canvas, b: int, s: int, heatmap: bool,
               text: str | None = None) -> str:
    """Span slot `s` (P-space) as a clickable <span> carrying its canvas position; the class says
    masked / committed now / settled / forced. A masked slot with `text` shows it as its draft."""
    c, pos = float(step.confidence[b, s]), int(step.positions[s])
    if bool(step.masked[b, s]):
        style = _heat(c) if heatmap else f"opacity: {0.25 + 0.5 * c:.2f}"
        if text is not None:  # the model's current guess, not committed: drawn blurred (sharpen.css)
            return (f'<span class="tok masked" data-draft="1" data-pos="{pos}" title="draft, not committed: '
                    f'p={c:.2f}" style="{style}">{escape(text)}</span>')
        return f'<span class="tok masked" data-pos="{pos}" style="{style}">{MASK_GLYPH}</span>'
    kind = slot_kind(step, canvas, b, s)
    if text is None:
        text = canvas.codec.token_text(int(step.tokens[b, s]))
    if kind.endswith("eos"):
        text = EOS_GLYPH
    style = _heat(c) if heatmap else f"opacity: {0.35 + 0.65 * c:.2f}"
    return (f'<span class="tok {kind}" data-pos="{pos}" title="p={c:.2f}" style="{style}">'
            f"{escape(text)}</span>")


CONTEXT_LINES = 3  # lines of text the run view shows either side of a span (the editor shows the rest)


def step_html(step: Step | None, canvas: Canvas | None, candidate: int = 0, heatmap: bool = False) -> str:
    """The spans at `step` as tokens, with a few lines of their context as plain text: the document
    itself is in the editor, and a 500-line file redrawn per step would bury the span."""
    if step is None or canvas is None:
        return EMPTY_VIEW
    b = min(candidate, step.tokens.shape[0] - 1)
    last = len(canvas.segments) - 1
    parts = [context_html(canvas.segments[0], before=True, after=False)]
    for i, (start, end) in enumerate(canvas.slot_ranges):
        parts.append('<span class="span">')
        pieces = span_pieces(step, canvas, b, start, end) | span_pieces(step, canvas, b, start, end, drafts=True)
        parts.extend(token_html(step, canvas, b, s, heatmap, pieces.get(s)) for s in range(start, end))
        parts.append("</span>")
        parts.append(context_html(canvas.segments[i + 1], before=i + 1 < last, after=True))
    mode = " heatmap" if heatmap else ""
    return f'<div class="sh-view{mode}" data-step="{step.index}" data-done="{int(step.done)}">{"".join(parts)}</div>'


def context_html(text: str, *, before: bool, after: bool) -> str:
    """Text between spans as plain text, cut to CONTEXT_LINES lines on each side that touches a
    span (`after`: it follows one, `before`: one follows it); what is cut shows as an ellipsis."""
    lines = text.split("\n")
    keep_head = CONTEXT_LINES if after else 0
    keep_tail = CONTEXT_LINES if before else 0
    if len(lines) > keep_head + keep_tail + 1:
        head = "\n".join(lines[:keep_head]) + ("\n" if keep_head else "")
        tail = ("\n" if keep_tail else "") + "\n".join(lines[len(lines) - keep_tail:])
        return (f'<span class="ctx">{escape(head)}</span><span class="ctx cut">…</span>'
                f'<span class="ctx">{escape(tail)}</span>')
    return f'<span class="ctx">{escape(text)}</span>'


def decided_count(step: Step, canvas: Canvas) -> int:
    """Span slots the sampler has decided (forced constraint tokens not counted)."""
    free = ~canvas.fixed[..., step.positions]                                  # (P,) or (B, P): a row per place
    return int((free & ~step.masked).sum())


def metrics_html(step: Step, canvas: Canvas, stopped: bool = False, checked: bool = True,
                 streamed: bool = False, waited: float | None = None) -> str:
    """The run's state, step and time so far in words; forwards, tokens per forward and tokens/s (all
    candidates counted) in its tooltip. A last step whose candidates are not yet `checked` (parsed and
    ranked) says "checking", not "done": the editor offers Accept only once they are. `streamed`: a
    hosted model's text, whose steps are the chunks it sent (`streamed_metrics_html`). `waited`: seconds
    since the person asked (auto's trials and the checks included), shown in place of the step's own clock."""
    if streamed:
        return streamed_metrics_html(step, canvas, stopped, checked)
    n = decided_count(step, canvas)
    per_forward = n / max(step.forwards, 1)
    speed = n / step.elapsed if step.elapsed > 0 else 0.0
    state = ("stopped" if stopped else "correcting" if step.round and not step.done
             else "denoising" if not step.done else "done" if checked else "checking")
    fixing = f" · correction round {step.round}" if step.round else ""
    detail = (f"{step.forwards} forwards of the model, {per_forward:.2f} tokens per forward, {speed:.1f} tokens/s "
              f"(all candidates counted); the model's own time {step.elapsed:.1f} s")
    seconds = step.elapsed if waited is None else max(waited, step.elapsed)
    return (f'<div class="sh-metrics" data-state="{state}" title="{detail}"><b>{state}</b>{fixing} · step '
            f"{step.index + 1} · {seconds:.1f} s</div>")


def streamed_metrics_html(step: Step, canvas: Canvas, stopped: bool, checked: bool) -> str:
    """A hosted model's run in its own terms: chunks of text streamed, bytes written, no forwards,
    tokens or confidences (it shares neither with the page). The states keep the editor's names."""
    state = "stopped" if stopped else "denoising" if not step.done else "done" if checked else "checking"
    shown = {"denoising": "streaming"}.get(state, state)
    written = decided_count(step, canvas)
    detail = (f"{step.forwards} chunks of text streamed by the hosted model, {written} bytes so far (all candidates "
              "counted); it sends text, not denoising steps, so there are no forwards, confidences or "
              "correction rounds to show")
    return (f'<div class="sh-metrics" data-state="{state}" title="{detail}"><b>{shown}</b> · hosted model · '
            f"{step.forwards} chunks · {step.elapsed:.1f} s</div>")


GUIDED_NOTE = (', <span class="guided" title="the denoiser&#39;s and the base language model&#39;s '
               'next-token probabilities multiplied (the guide setting)">guided by the base model</span>')


def inspector_html(step: Step | None, canvas: Canvas | None, candidate: int, pos: int,
                   concepts: Sequence[tuple[str, float]] = (), streamed: bool = False) -> str:
    """Confidence, commit step and top alternatives of the span slot at canvas `pos` of one candidate,
    and the concepts behind its token where the model's family offers them (page/attributions.py)
    (`streamed`: a hosted model's byte, which came with no confidence or alternatives)."""
    s = None if step is None or canvas is None else step.slot(pos)
    if s is None:
        return '<div class="sh-inspector">Click a token in the result to inspect it.</div>'
    b = min(candidate, step.tokens.shape[0] - 1)
    codec = canvas.codec
    if streamed:
        byte = escape(repr(codec.token_text(int(step.tokens[b, s]))))
        return (f'<div class="sh-inspector" data-pos="{pos}"><code>{byte}</code> streamed by the hosted model in '
                f"chunk {int(step.committed_at[b, s]) + 1}: a hosted model sends text only, with no confidence "
                "or alternatives to show</div>")
    if bool(step.masked[b, s]):
        head = f"<b>{MASK_GLYPH}</b> still masked at step {step.index + 1}"
    else:
        born = int(step.committed_at[b, s])
        when = f"committed at step {born + 1}" if born >= 0 else "forced by a constraint"
        if bool(step.guided[b, s]):  # its alternatives are then the mixed distribution's
            when += GUIDED_NOTE
        head = f'<code>{escape(repr(codec.token_text(int(step.tokens[b, s]))))}</code> {when}'
    rows = "".join(
        f"<tr><td><code>{escape(repr(codec.token_text(int(t))))}</code></td><td>{float(p):.0%}</td></tr>"
        for t, p in zip(step.top_ids[b, s].tolist(), step.top_probs[b, s].tolist()) if p > 0)
    table = (f'<table><tr><th>the model\'s choices here</th><th>how likely</th></tr>{rows}</table>' if rows
             else "<p>No alternatives recorded for this slot.</p>")
    sure = float(step.confidence[b, s])
    return (f'<div class="sh-inspector" data-pos="{pos}" title="confidence {sure:.3f}">{head} · the model was '
            f"{sure:.0%} sure{table}{concepts_table(concepts)}</div>")


def concepts_table(concepts: Sequence[tuple[str, float]]) -> str:
    """The concepts that raised the token's logit most (name, contribution in logits), "" without any."""
    if not concepts:
        return ""
    rows = "".join(f"<tr><td>{escape(name)}</td><td>{value:+.2f}</td></tr>" for name, value in concepts)
    return (f'<table class="sh-concepts"><tr><th>concepts behind this token</th><th title="added to the token\'s '
            f'logit">logit</th></tr>{rows}</table>')


def diff_html(ops: Sequence[tuple[str, str]]) -> str:
    """A readable diff: [(op, text)] with op equal/insert/delete -> escaped <ins>/<del>."""
    tags = {"insert": "ins", "delete": "del"}
    parts = []
    for op, text in ops:
        tag = tags.get(op)
        parts.append(f"<{tag}>{escape(text)}</{tag}>" if tag else f"<span>{escape(text)}</span>")
    body = "".join(parts) or "<i>no differences</i>"
    return f'<div class="sh-diff">{body}</div>'


def candidates_html(rows: Sequence[tuple[int, str, str, Sequence[tuple[str, str]]]], shown: int) -> str:
    """Every candidate beside the original, best first: (candidate, its note in words, the figures
    behind the note for its tooltip, diff ops of the span's original text -> its new text) as an
    inline diff (old struck through, new inserted); `shown` is the candidate the editor shows."""
    tags = {"insert": "ins", "delete": "del"}
    items = []
    for b, note, detail, ops in rows:
        pieces = ((op, escape(text).replace("\n", EOS_GLYPH)) for op, text in ops)  # a line break shows, in line
        body = "".join(f"<{tags[op]}>{text}</{tags[op]}>" if op in tags else f"<span>{text}</span>"
                       for op, text in pieces) or "<i>unchanged</i>"
        mark = " shown" if b == shown else ""
        items.append(f'<li class="sh-candidate{mark}" data-candidate="{b}"><b>{b + 1}</b> '
                     f'<span class="sh-diff">{body}</span> <small title="{escape(detail)}">{escape(note)}</small></li>')
    return f'<ul class="sh-candidates">{"".join(items)}</ul>'



def revision_labels(revisions: Sequence[Revision]) -> dict[int, str]:
    """One line per revision of one document (oldest first), by id: its number in the document, what
    made it (an undo or a redo named by the revision it undid or redid), its label and time."""
    number = {r.id: i + 1 for i, r in enumerate(revisions)}
    by_id = {r.id: r for r in revisions}

    def state_of(rid: int | None) -> int | None:  # the revision an undo or a redo brought back
        while rid in by_id and by_id[rid].step is not None:
            rid = by_id[rid].source_id
        return rid

    def made(rev: Revision) -> str:
        if rev.step == "undo":
            return f"undo of #{number.get(state_of(rev.parent_id) or 0, '?')}"
        if rev.step == "redo":
            return f"redo of #{number.get(rev.source_id or 0, '?')}"
        if rev.author == "restored":
            return f"restored #{number.get(rev.source_id or 0, '?')}"
        return rev.author

    return {r.id: f"#{number[r.id]} {made(r)}{f' [{r.label}]' if r.label else ''} {r.created_at.strftime('%H:%M:%S')}"
            for r in revisions}


def history_html(revisions: Sequence[Revision], tree: Mapping[int, list[int]],
                 current: int | None = None) -> str:
    """The revision tree (`History.tree`: id -> children), the revision the document is on marked.
    A revision's first child not kept as a branch continues its line; its other children (and any
    kept with "Accept as branch", even an only child) start branches, drawn right under it,
    indented, each marked with the revision it forks from."""
    if not revisions:
        return '<div class="sh-history">No revisions yet: open a file or accept an edit.</div>'
    by_id = {r.id: r for r in revisions}
    labels = revision_labels(revisions)
    rows: list[str] = []
    for root in (r.id for r in revisions if r.parent_id is None):
        _draw_line(root, 0, by_id, tree, current, rows, labels)
    return f'<ul class="sh-history">{"".join(rows)}</ul>'


def _draw_line(rid: int | None, depth: int, by_id: Mapping[int, Revision], tree: Mapping[int, list[int]],
               current: int | None, rows: list[str], labels: Mapping[int, str]) -> None:
    """One line of revisions from `rid` (a root, or a branch's first revision at `depth`) on."""
    fork = depth > 0
    while rid is not None:
        rev = by_id[rid]
        classes = "rev" + (" current" if rid == current else "") + (" fork" if fork else "") + \
            (" in-branch" if depth else "")
        parent = labels.get(rev.parent_id or 0, "").split(" ")[0]
        mark = f'<span class="sh-fork">↳ branch from {parent}</span> ' if fork else ""
        rows.append(f'<li class="{classes}" style="margin-left: {depth * 1.5:.1f}em" data-rev="{rid}">'
                    f"{mark}{escape(labels[rid])}</li>")
        kids = [k for k in tree.get(rid, []) if k in by_id]
        line = [k for k in kids if not by_id[k].branch][:1]
        for branch in (k for k in kids if k not in line):
            _draw_line(branch, depth + 1, by_id, tree, current, rows, labels)
        rid, fork = (line[0] if line else None), False
