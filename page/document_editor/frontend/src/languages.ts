// Syntax highlighting for the languages editor/languages.py parses, by the same names.
import type { Extension } from "@codemirror/state";
import { cpp } from "@codemirror/lang-cpp";
import { css } from "@codemirror/lang-css";
import { go } from "@codemirror/lang-go";
import { html } from "@codemirror/lang-html";
import { javascript } from "@codemirror/lang-javascript";
import { json } from "@codemirror/lang-json";
import { markdown } from "@codemirror/lang-markdown";
import { python } from "@codemirror/lang-python";
import { rust } from "@codemirror/lang-rust";

// Keep in step with editor/languages.py (tests/page/test_document_editor.py checks both lists).
const LANGUAGES: Record<string, () => Extension> = {
	python: () => python(),
	javascript: () => javascript({ jsx: true }),
	typescript: () => javascript({ typescript: true }),
	tsx: () => javascript({ typescript: true, jsx: true }),
	rust: () => rust(),
	go: () => go(),
	c: () => cpp(),
	cpp: () => cpp(),
	json: () => json(),
	html: () => html(),
	css: () => css(),
	markdown: () => markdown(),
	markdown_inline: () => markdown(),
	text: () => []
};

// Prose is edited by words and sentences: its long lines wrap softly (code keeps its lines).
const PROSE = new Set(["markdown", "markdown_inline", "text"]);

/** The highlighting of a language; an unknown name reads as plain text. */
export function languageSupport(name: string): Extension {
	return (LANGUAGES[name] ?? LANGUAGES.text)();
}

/** Whether a language's lines wrap softly; unknown names are prose. */
export function isProse(name: string): boolean {
	return PROSE.has(name) || !(name in LANGUAGES);
}
