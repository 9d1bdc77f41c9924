// The editor's keyboard shortcuts: one table feeds both the keymap and the help popover.
import { redoDepth, undoDepth } from "@codemirror/commands";
import type { EditorState } from "@codemirror/state";
import type { KeyBinding } from "@codemirror/view";
import { runPhase, type Phase } from "./live";

/** Sends one of the component's events (DocumentEditor.EVENTS in Python) to the page. */
export type Emit = (event: string, data?: unknown) => void;

interface Shortcut {
	keys: string[]; // CodeMirror key names ("Mod" is Ctrl, or Cmd on a Mac)
	event: string;
	help: string;
	// Whether the key means this event now; otherwise it falls through to the editor's own binding.
	when?: (state: EditorState, phase: Phase) => boolean;
}

export const SHORTCUTS: Shortcut[] = [
	{ keys: ["Mod-s"], event: "save", help: "Save: the text as it reads now becomes a revision" },
	{ keys: ["Mod-Enter"], event: "regenerate", help: "Regenerate the selection (fill at the cursor without one)" },
	{ keys: ["Mod-Shift-Enter"], event: "regenerate_node", help: "Regenerate the syntax node (prose: sentence) around the cursor" },
	{ keys: ["Shift-Alt-ArrowRight"], event: "expand", help: "Expand the selection to the enclosing node" },
	{ keys: ["Shift-Alt-ArrowLeft"], event: "shrink", help: "Shrink the selection back toward the cursor" },
	{ keys: ["Escape"], event: "stop", help: "Stop the run", when: (_, phase) => phase === "running" },
	{ keys: ["Tab"], event: "accept", help: "Accept the shown candidate", when: (_, phase) => phase === "done" },
	{ keys: ["Escape"], event: "reject", help: "Reject the run (the document stays as it was)",
		when: (_, phase) => phase === "done" || phase === "stopped" },
	{ keys: ["Tab"], event: "accept_anyway", help: "When asked (the candidate does not parse): accept it anyway",
		when: (_, phase) => phase === "asking" },
	{ keys: ["Escape"], event: "cancel_accept", help: "When asked: do not accept it", when: (_, phase) => phase === "asking" },
	{ keys: ["Alt-]"], event: "next_candidate", help: "Next candidate", when: (_, phase) => phase === "done" },
	{ keys: ["Alt-["], event: "previous_candidate", help: "Previous candidate", when: (_, phase) => phase === "done" },
	// Accepted edits, opened files and restores are revisions: they arrive with the editor's own undo
	// history cleared, so Ctrl+Z first undoes typing (the editor's), then steps back through revisions.
	{ keys: ["Mod-z"], event: "undo_revision", help: "Undo: typing first, then the last accepted edit (one revision back)",
		when: (state) => undoDepth(state) === 0 },
	{ keys: ["Mod-Shift-z", "Mod-y"], event: "redo_revision", help: "Redo: typing first, then the revision undone",
		when: (state) => redoDepth(state) === 0 }
];

/** Keys the editor handles itself, listed in the help after the shortcuts above. */
export const EDITOR_KEYS: [string, string][] = [
	["Mod-f", "Search (and replace)"],
	["Mod-d", "Select the next occurrence too (with Mod+click and Alt+drag: several spans, one run)"],
	["Mod-Alt-z", "Undo one revision, whatever the editor's own history holds"],
	["Mod-Alt-Shift-z", "Redo one revision"],
	["Escape, then Tab", "Leave the editor (Tab indents inside it)"],
	["F1", "Show or hide this help (Esc closes it)"]
];

/** The shortcuts as CodeMirror bindings; a key whose `when` says no is left to the next keymap. */
export function shortcutKeymap(emit: Emit): KeyBinding[] {
	const bindings: KeyBinding[] = [];
	for (const shortcut of SHORTCUTS) {
		for (const key of shortcut.keys) {
			bindings.push({
				key,
				run: (view) => {
					if (shortcut.when && !shortcut.when(view.state, runPhase(view.state))) return false;
					emit(shortcut.event);
					return true;
				}
			});
		}
	}
	bindings.push({ key: "Mod-Alt-z", run: () => (emit("undo_revision"), true) });
	bindings.push({ key: "Mod-Alt-Shift-z", run: () => (emit("redo_revision"), true) });
	return bindings;
}

/** A key name as a person reads it on this platform: "Ctrl+Shift+Enter" or "⌘+Shift+Enter". */
export function keyLabel(key: string): string {
	const mac = typeof navigator !== "undefined" && /Mac|iPhone|iPad/.test(navigator.platform);
	return key
		.replace(/Mod/g, mac ? "⌘" : "Ctrl")
		.replace(/-(?=.)/g, "+")
		.replace("ArrowRight", "→")
		.replace("ArrowLeft", "←")
		.replace("Escape", "Esc")
		.replace(/\+([a-z])$/, (_, letter: string) => "+" + letter.toUpperCase());
}
