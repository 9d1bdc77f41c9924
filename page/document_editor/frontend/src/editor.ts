// The CodeMirror view behind the component: its extensions, and the few ways the page changes it.
import { closeBrackets, closeBracketsKeymap } from "@codemirror/autocomplete";
import { defaultKeymap, history, historyKeymap, indentWithTab } from "@codemirror/commands";
import {
	bracketMatching,
	defaultHighlightStyle,
	foldGutter,
	foldKeymap,
	indentOnInput,
	syntaxHighlighting
} from "@codemirror/language";
import { highlightSelectionMatches, search, searchKeymap } from "@codemirror/search";
import { Annotation, Compartment, EditorSelection, EditorState, Prec, type Extension } from "@codemirror/state";
import {
	EditorView,
	crosshairCursor,
	drawSelection,
	highlightActiveLine,
	highlightActiveLineGutter,
	highlightSpecialChars,
	keymap,
	rectangularSelection
} from "@codemirror/view";
import { isProse, languageSupport } from "./languages";
import { liveSpan, setLive, shownRun, shownSpan, type Live } from "./live";
import { previewLineNumbers } from "./preview_lines";
import { shortcutKeymap, type Emit } from "./shortcuts";

/** The component's value: the text and the selection [anchor, head] in UTF-16 code units; `ranges`
 * lists every selection [from, to] (several: Ctrl/Cmd+click, Ctrl/Cmd+D, Alt+drag), one run's spans. */
export interface Value {
	text: string;
	selection: [number, number] | null; // null from Python: leave the selection where it is
	ranges?: [number, number][];
}

export interface Options {
	value: Value;
	language: string;
	editable: boolean;
	emit: Emit;
	onChange: (value: Value) => void; // every edit and selection move, to keep the component's value current
	onTyped: () => void; // the person edited the text (not the page): a draft to keep
	onHelp: () => void;
}

const SPAN_MARGIN = 48; // px kept between the span and the editor's edge when it is scrolled into view

export class DocumentView {
	readonly view: EditorView;
	private readonly language = new Compartment();
	private readonly wrap = new Compartment();
	private readonly undo = new Compartment();
	private readonly editable = new Compartment();

	constructor(parent: HTMLElement, options: Options) {
		const { emit, onChange, onTyped, onHelp } = options;
		this.view = new EditorView({
			parent,
			state: EditorState.create({
				doc: options.value.text,
				selection: clampSelection(options.value.selection, options.value.text.length),
				extensions: [
					Prec.highest(keymap.of([...shortcutKeymap(emit), { key: "F1", run: () => (onHelp(), true) }])),
					previewLineNumbers(),
					highlightActiveLineGutter(),
					highlightSpecialChars(),
					foldGutter(),
					drawSelection(),
					// Several selections are several spans of one run: Ctrl/Cmd+click adds one, Ctrl/Cmd+D
					// the next occurrence (searchKeymap), Alt+drag a rectangle.
					EditorState.allowMultipleSelections.of(true),
					rectangularSelection(),
					crosshairCursor(),
					indentOnInput(),
					bracketMatching(),
					closeBrackets(),
					highlightActiveLine(),
					highlightSelectionMatches(),
					search({ top: true }),
					syntaxHighlighting(defaultHighlightStyle, { fallback: true }),
					this.undo.of(history()),
					this.language.of(languageSupport(options.language)),
					this.wrap.of(proseLayout(options.language)),
					this.editable.of(editableState(options.editable)),
					keymap.of([
						...closeBracketsKeymap,
						...defaultKeymap,
						...searchKeymap,
						...historyKeymap,
						...foldKeymap,
						indentWithTab
					]),
					liveSpan(emit),
					EditorView.updateListener.of((update) => {
						if (update.docChanged || update.selectionSet) onChange(this.value());
						if (update.docChanged && update.transactions.some((tr) => !tr.annotation(fromPage))) onTyped();
					})
				]
			})
		});
	}

	value(): Value {
		const selection = this.view.state.selection;
		const { anchor, head } = selection.main;
		const ranges = selection.ranges.map((r): [number, number] => [r.from, r.to]);
		return { text: this.view.state.doc.toString(), selection: [anchor, head], ranges };
	}

	/** A value from the page. A new text is a revision (an accepted edit, an opened file, a restore): it
	 * is applied as the smallest change, so the view keeps its place, and the editor's own undo history
	 * starts over (Ctrl+Z then steps back through revisions). */
	setValue(value: Value): void {
		const state = this.view.state;
		const text = value.text ?? "";
		const current = state.doc.toString();
		const selection = value.selection ? clampSelection(value.selection, text.length) : undefined;
		if (text === current) {
			const main = state.selection.main;
			if (selection && (selection.main.anchor !== main.anchor || selection.main.head !== main.head)) {
				this.view.dispatch({ selection, scrollIntoView: true });
			}
			return;
		}
		const change = smallestChange(current, text);
		this.view.dispatch({
			changes: change,
			selection: selection ?? clampSelection([state.selection.main.anchor, state.selection.main.head], text.length),
			annotations: fromPage.of(true),
			// The page placed the cursor (the top of a document opened, the end of an accepted edit): in sight.
			scrollIntoView: !!selection
		});
		this.view.dispatch({ effects: this.undo.reconfigure([]) });
		this.view.dispatch({ effects: this.undo.reconfigure(history()) });
	}

	setLanguage(name: string): void {
		this.view.dispatch({
			effects: [
				this.language.reconfigure(languageSupport(name)),
				this.wrap.reconfigure(proseLayout(name))
			]
		});
	}

	setEditable(editable: boolean): void {
		this.view.dispatch({ effects: this.editable.reconfigure(editableState(editable)) });
	}

	/** Show one step of a run's span in place (null: none) and keep the span in sight. A run that
	 * starts takes the keyboard's focus, however it was started (a button, a key), so Tab and Esc act
	 * on it. */
	setLive(live: Live | null): void {
		const before = shownRun(this.view.state);
		this.view.dispatch({ effects: setLive.of(live) });
		if (live && live.run !== before && !this.view.hasFocus) this.view.focus();
		const span = shownSpan(this.view.state);
		if (!span) return;
		this.view.dispatch({
			effects: EditorView.scrollIntoView(EditorSelection.range(span.from, span.to), {
				y: "nearest",
				yMargin: SPAN_MARGIN
			})
		});
	}

	destroy(): void {
		this.view.destroy();
	}
}

// Marks the changes the page made (a revision shown), so they are not taken for typing.
const fromPage = Annotation.define<boolean>();

// Prose wraps softly in a proportional font at a readable measure; code keeps its lines, monospace.
function proseLayout(name: string): Extension {
	return isProse(name) ? [EditorView.lineWrapping, EditorView.contentAttributes.of({ class: "sh-prose" })] : [];
}

function editableState(editable: boolean) {
	return [EditorState.readOnly.of(!editable), EditorView.editable.of(editable)];
}

function clampSelection(selection: [number, number] | null, length: number): EditorSelection {
	const [anchor, head] = selection ?? [0, 0];
	return EditorSelection.single(Math.min(Math.max(anchor, 0), length), Math.min(Math.max(head, 0), length));
}

/** The change from `a` to `b` that keeps their common prefix and suffix. */
function smallestChange(a: string, b: string): { from: number; to: number; insert: string } {
	let start = 0;
	const shortest = Math.min(a.length, b.length);
	while (start < shortest && a.charCodeAt(start) === b.charCodeAt(start)) start++;
	let end = 0;
	while (end < shortest - start && a.charCodeAt(a.length - 1 - end) === b.charCodeAt(b.length - 1 - end)) end++;
	return { from: start, to: a.length - end, insert: b.slice(start, b.length - end) };
}
