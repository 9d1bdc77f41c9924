// Line numbers while a run's span is shown in place. The span's preview can hold more lines (or fewer)
// than the text it replaces, and CodeMirror numbers only the document's own lines: the preview's lines
// get numbers too, and the lines after it are numbered as the document would read with the shown
// candidate accepted (as the page counts them in "does not parse at line N").
import { RangeSet, type EditorState, type Extension } from "@codemirror/state";
import { GutterMarker, ViewPlugin, lineNumberMarkers, lineNumbers } from "@codemirror/view";
import { shownField, shownPreview } from "./live";

interface Preview {
	first: number; // the document line the span starts on
	last: number; // the document line it ends on
	breaks: number; // line breaks in the preview shown in its place
}

function preview(state: EditorState): Preview | null {
	const shown = shownPreview(state);
	if (!shown) return null;
	const first = state.doc.lineAt(shown.from).number;
	const last = state.doc.lineAt(shown.to).number;
	return { first, last, breaks: shown.text.split("\n").length - 1 };
}

/** A document line's number as shown: past the span, moved by the lines the preview adds or takes. */
function shownNumber(line: number, state: EditorState): string {
	const p = preview(state);
	return String(p && line > p.last ? line + p.breaks - (p.last - p.first) : line);
}

/** The numbers of the line block the span sits in, one per line of the preview (placed by `placeNumbers`). */
class PreviewNumbers extends GutterMarker {
	constructor(
		readonly first: number,
		readonly count: number,
		readonly shift: number // part of eq: lines after the span are renumbered when it changes
	) {
		super();
	}

	eq(other: PreviewNumbers): boolean {
		return other.first === this.first && other.count === this.count && other.shift === this.shift;
	}

	toDOM(): HTMLElement {
		const box = document.createElement("div");
		box.className = "cm-sh-linenos";
		for (let i = 0; i < this.count; i++) box.appendChild(document.createElement("div")).textContent = String(this.first + i);
		return box;
	}
}

const previewNumbers = lineNumberMarkers.compute(["doc", shownField], (state) => {
	const p = preview(state);
	if (!p) return RangeSet.empty;
	const marker = new PreviewNumbers(p.first, p.breaks + 1, p.breaks - (p.last - p.first));
	return RangeSet.of([marker.range(state.doc.line(p.first).from)]);
});

// Each number after the first goes beside the line of the preview it numbers (after a soft wrap too):
// centred on the empty mark the span's widget leaves where that line starts (live.ts, writeText).
const placeNumbers = ViewPlugin.define((view) => {
	const measure = {
		key: "sh-preview-lines",
		read: (): number[] => {
			const numbers = view.dom.querySelectorAll<HTMLElement>(".cm-sh-linenos > div");
			if (!numbers.length) return [];
			const top = numbers[0].getBoundingClientRect().top;
			const height = numbers[0].offsetHeight;
			return Array.from(view.contentDOM.querySelectorAll(".cm-sh-span .cm-sh-nl"), (nl) => {
				const r = nl.getBoundingClientRect();
				return r.top + r.height / 2 - height / 2 - top;
			});
		},
		write: (tops: number[]) => {
			const numbers = view.dom.querySelectorAll<HTMLElement>(".cm-sh-linenos > div");
			tops.forEach((y, i) => numbers[i + 1] && (numbers[i + 1].style.top = `${y}px`));
		}
	};
	view.requestMeasure(measure);
	return { update: () => view.requestMeasure(measure) };
});

/** Line numbers that count a shown preview's lines. */
export function previewLineNumbers(): Extension {
	return [lineNumbers({ formatNumber: shownNumber }), previewNumbers, placeNumbers];
}
