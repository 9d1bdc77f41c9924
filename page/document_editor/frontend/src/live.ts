// A run's span drawn in place: each denoising step replaces the span's text with its slots (masked,
// committed this step, settled, forced by a constraint, end-of-text), shaded by confidence. Only the
// span's widget is redrawn per step; the rest of the document is never touched.
import { Facet, StateEffect, StateField, type EditorState, type Extension } from "@codemirror/state";
import { Decoration, EditorView, WidgetType } from "@codemirror/view";
import { codePointToUtf16 } from "./utf16";

export type PieceKind = "masked" | "new" | "settled" | "forced" | "eos" | "kept"; // kept: text between spans
/** One slot of the span: its text, what it is at this step, the model's confidence (0..1), and its
 * canvas position for the token inspector (-1: none). */
export type Piece = [text: string, kind: PieceKind, confidence: number, position: number];

/** One step of a run's span, as page/live.py sends it (offsets in code points of the document). */
export interface Live {
	run: number; // which run: a new number places the span afresh
	state: "denoising" | "done" | "stopped";
	step: number; // 1-based
	steps: number; // steps recorded so far (the toolbar's scrubber range)
	start: number;
	end: number; // the span [start, end) of the document text the run started from
	pieces: Piece[];
	candidate: number; // 0-based
	candidates: number;
	asking?: string; // the page asks before accepting this candidate (why): Tab confirms, Esc declines
}

export type Phase = "idle" | "running" | "done" | "stopped" | "asking";

interface Shown {
	live: Live;
	from: number; // UTF-16 positions in the current document, mapped through any typing meanwhile
	to: number;
}

export const setLive = StateEffect.define<Live | null>();

type EmitFn = (event: string, data?: unknown) => void;
// How the span's widget and toolbar reach the page (set by `liveSpan`).
const emitFacet = Facet.define<EmitFn, EmitFn>({ combine: (values) => values[0] ?? (() => {}) });

// A step streamed just before Stop can arrive after the stopped (or finished) state: it is not shown.
function isLate(live: Live, shown: Shown | null): boolean {
	return !!shown && shown.live.run === live.run && live.state === "denoising" && shown.live.state !== "denoising";
}

function place(state: EditorState, live: Live, before: Shown | null): Shown {
	if (before && before.live.run === live.run) return { live, from: before.from, to: before.to };
	const text = state.doc.sliceString(0);
	const from = Math.min(codePointToUtf16(text, live.start), state.doc.length);
	return { live, from, to: Math.max(from, Math.min(codePointToUtf16(text, live.end), state.doc.length)) };
}

export const shownField = StateField.define<Shown | null>({
	create: () => null,
	update(shown, tr) {
		if (shown && tr.docChanged) {
			shown = { ...shown, from: tr.changes.mapPos(shown.from, -1), to: tr.changes.mapPos(shown.to, 1) };
		}
		for (const effect of tr.effects) {
			if (!effect.is(setLive)) continue;
			if (effect.value && isLate(effect.value, shown)) continue;
			shown = effect.value ? place(tr.state, effect.value, shown) : null;
		}
		return shown;
	},
	// Replacements that cross line breaks must come from a state field, not a view plugin.
	provide: (field) =>
		EditorView.decorations.compute([field, emitFacet], (state) => {
			const shown = state.field(field);
			if (!shown) return Decoration.none;
			const emit = state.facet(emitFacet);
			const widget = new SpanWidget(shown.live, emit);
			// The bar is a line of its own under the span's last line: it covers no text, inside the editor.
			const bar = Decoration.widget({ widget: new BarWidget(shown.live, emit), block: true, side: 1 });
			return Decoration.set(
				[
					shown.from < shown.to
						? Decoration.replace({ widget }).range(shown.from, shown.to)
						: Decoration.widget({ widget, side: 1 }).range(shown.from),
					bar.range(state.doc.lineAt(shown.to).to)
				],
				true
			);
		})
});

/** Where the shown span lies now (UTF-16), or null. */
export function shownSpan(state: EditorState): { from: number; to: number } | null {
	const shown = state.field(shownField, false);
	return shown ? { from: shown.from, to: shown.to } : null;
}

/** The shown span (UTF-16, in the current document) and the text its pieces spell now, or null. */
export function shownPreview(state: EditorState): { from: number; to: number; text: string } | null {
	const shown = state.field(shownField, false);
	return shown ? { from: shown.from, to: shown.to, text: shown.live.pieces.map((p) => p[0]).join("") } : null;
}

/** The number of the run shown, or null. */
export function shownRun(state: EditorState): number | null {
	return state.field(shownField, false)?.live.run ?? null;
}

/** What the keys mean now: nothing shown, a run streaming, a finished run, or a stopped one. */
export function runPhase(state: EditorState): Phase {
	const shown = state.field(shownField, false);
	if (!shown) return "idle";
	if (shown.live.asking) return "asking";
	return shown.live.state === "denoising" ? "running" : shown.live.state === "done" ? "done" : "stopped";
}

class SpanWidget extends WidgetType {
	constructor(
		readonly live: Live,
		readonly emit: EmitFn
	) {
		super();
	}

	eq(other: SpanWidget): boolean {
		return other.live === this.live;
	}

	toDOM(): HTMLElement {
		const span = document.createElement("span");
		span.className = "cm-sh-span";
		span.dataset.state = this.live.state;
		span.dataset.step = String(this.live.step);
		span.dataset.candidate = String(this.live.candidate);
		for (const [text, kind, confidence, position] of this.live.pieces) {
			const piece = span.appendChild(document.createElement("span"));
			piece.className = `cm-sh-tok cm-sh-${kind}`;
			piece.style.setProperty("--p", confidence.toFixed(2));
			piece.title = kind === "masked" ? "still masked" : `the model's confidence: ${Math.round(confidence * 100)}%`;
			if (position >= 0) piece.dataset.pos = String(position);
			writeText(piece, text);
		}
		// A click on a token asks the page's token inspector about it (its confidence, step, alternatives).
		span.addEventListener("mousedown", (event) => {
			const token = (event.target as HTMLElement).closest<HTMLElement>(".cm-sh-tok[data-pos]");
			if (!token) return;
			event.preventDefault();
			span.querySelectorAll(".cm-sh-picked").forEach((t) => t.classList.remove("cm-sh-picked"));
			token.classList.add("cm-sh-picked");
			this.emit("select", { index: Number(token.dataset.pos), value: token.textContent });
		});
		return span;
	}

	// A press on a token is the inspector's (the listener above); anywhere else the editor places the cursor.
	ignoreEvent(event: Event): boolean {
		return event.type === "mousedown" && !!(event.target as HTMLElement).closest(".cm-sh-tok[data-pos]");
	}
}

/** `text` into `piece` as text nodes (model output is text, never markup), an empty `.cm-sh-nl` after each
 * line break: where the preview's next line starts, for its line number (preview_lines.ts). */
function writeText(piece: HTMLElement, text: string): void {
	text.split("\n").forEach((line, i) => {
		if (i > 0) {
			const nl = document.createElement("span");
			nl.className = "cm-sh-nl";
			piece.append("\n", nl);
		}
		piece.append(line);
	});
}

function button(label: string, title: string, onClick: () => void): HTMLButtonElement {
	const b = document.createElement("button");
	b.type = "button";
	b.textContent = label;
	b.title = title;
	b.addEventListener("mousedown", (e) => e.preventDefault()); // keep the editor's focus
	b.addEventListener("click", onClick);
	return b;
}

/** The bar beside the span: candidates, the step scrubber, accept / reject (or stop while running). */
function toolbar(live: Live, emit: (event: string, data?: unknown) => void): HTMLElement {
	const bar = document.createElement("div");
	bar.className = "cm-sh-toolbar";
	bar.dataset.state = live.state;
	if (live.state === "denoising") {
		const where = live.step ? `step ${live.step} ` : "starting… "; // no step yet: auto's trials, the queue
		bar.append(where, button("Stop", "Stop the run (Esc)", () => emit("stop")));
		return bar;
	}
	if (live.asking) {
		bar.classList.add("cm-sh-asking");
		bar.append(
			`${live.asking}. Accept anyway? `,
			button("Accept anyway", "Accept it anyway (Tab)", () => emit("accept_anyway")),
			button("Keep the candidates", "Do not accept it (Esc)", () => emit("cancel_accept"))
		);
		return bar;
	}
	if (live.state === "done" && live.candidates > 1) {
		bar.append(
			button("◀", "Previous candidate (Alt+[)", () => emit("previous_candidate")),
			` ${live.candidate + 1}/${live.candidates} `,
			button("▶", "Next candidate (Alt+])", () => emit("next_candidate"))
		);
	}
	if (live.steps > 1) {
		const scrub = document.createElement("input");
		scrub.type = "range";
		scrub.min = "1";
		scrub.max = String(live.steps);
		scrub.value = String(live.step);
		scrub.title = "Replay the steps";
		scrub.className = "cm-sh-scrub";
		scrub.addEventListener("change", () => emit("scrub", { step: Number(scrub.value) }));
		bar.append(" step ", scrub, ` ${live.step}/${live.steps} `);
	}
	if (live.state === "done") bar.append(button("Accept", "Accept this candidate (Tab)", () => emit("accept")));
	bar.append(button("Reject", "Reject the run (Esc)", () => emit("reject")));
	return bar;
}

class BarWidget extends WidgetType {
	constructor(
		readonly live: Live,
		readonly emit: EmitFn
	) {
		super();
	}

	eq(other: BarWidget): boolean {
		return other.live === this.live;
	}

	toDOM(): HTMLElement {
		return toolbar(this.live, this.emit);
	}

	// The bar's buttons and slider are its own, not a place for the editor's cursor.
	ignoreEvent(): boolean {
		return true;
	}
}

/** The span's field and its decorations (the span in place, its bar under it); `emit` sends the
 * bar's events to the page. */
export function liveSpan(emit: (event: string, data?: unknown) => void): Extension {
	return [shownField, emitFacet.of(emit)];
}
