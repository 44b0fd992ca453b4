/**
 * Showing text that volchain did not write — names read from image headers, another program's stderr — on a
 * terminal or in a one-line message. Such text may hold newlines (one error becomes two lines, a snapshot tree
 * gains a fake branch), escape sequences (which a terminal executes), or bidirectional controls (which show
 * text in another order than it is stored). Pure functions, no imports: every layer may use them.
 */

/**
 * Characters never shown raw: C0 controls, DEL, C1 controls (U+009B is a one-byte CSI on some terminals), the
 * soft hyphen, line and paragraph separators, zero-width and bidirectional formatting characters, and BOM.
 */
// eslint-disable-next-line no-control-regex
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u00ad\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff\ufff9-\ufffb]/gu;

const SHORT_ESCAPES: Record<string, string> = { '\n': '\\n', '\r': '\\r', '\t': '\\t' };

function escapeChar(c: string): string {
  return SHORT_ESCAPES[c] ?? `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`;
}

/**
 * `text` with every unsafe character written as an escape (`\n`, `\u001b`, …), so it stays on one line and
 * the terminal shows it as it is. Backslashes are kept as they are: this keeps messages readable, at the price
 * that a literal `\n` and an escaped newline look the same (quoteForeign tells them apart).
 */
export function escapeUnsafe(text: string): string {
  return text.replace(UNSAFE, escapeChar);
}

/** How many characters of a foreign name a message shows by default. */
export const FOREIGN_TEXT_MAX = 64;

/**
 * A name read from a file (or any other untrusted text), quoted for a message or a listing: JSON string syntax
 * (so quotes, backslashes and controls are escaped and the quotes show where it starts and ends) plus escapes
 * for the characters JSON leaves raw (C1, bidi, separators). At most `maxChars` characters of it are shown;
 * a longer one ends with `…` and its full length, so a header field of 1000 bytes cannot flood a message.
 */
export function quoteForeign(text: string, maxChars: number = FOREIGN_TEXT_MAX): string {
  const chars = Array.from(text); // by code point: a cut never splits a surrogate pair
  const shown = chars.length > maxChars ? chars.slice(0, maxChars).join('') : text;
  const quoted = JSON.stringify(shown).replace(UNSAFE, escapeChar);
  return chars.length > maxChars ? `${quoted}… (${chars.length} characters)` : quoted;
}
