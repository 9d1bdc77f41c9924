// Python counts code points, CodeMirror counts UTF-16 code units: the two differ after any
// character outside the Basic Multilingual Plane (an emoji, some CJK). Offsets from Python are
// converted here, once, at the edge.

/** UTF-16 offset of the code point index `index` in `text` (clamped to the text). */
export function codePointToUtf16(text: string, index: number): number {
	let units = 0;
	let points = 0;
	while (points < index && units < text.length) {
		const code = text.charCodeAt(units);
		units += code >= 0xd800 && code <= 0xdbff && units + 1 < text.length ? 2 : 1;
		points += 1;
	}
	return units;
}
