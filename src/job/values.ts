/** Field lookup and JSON helpers shared by item files and templates. */

export { canonicalJson, fieldValue } from '../protocol/key.js';

/** `an object`, `an array`, `a string`, `null`... for messages about a value seen. */
export function describeType(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  const type = typeof value;
  return type === 'object' || type === 'undefined' ? `an ${type}` : `a ${type}`;
}

/** True for a JSON object: not null, not an array. */
export function isPlainObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

/** Where a `JSON.parse` failure happened, with the parser's message alone. */
export interface JsonSyntaxProblem {
  /** The parser's message without its position or its quote of the text. */
  detail: string;
  /** 1-based line and column in the parsed text, when the position is known. */
  line?: number;
  column?: number;
}

const POSITION = /\s*(?:in JSON )?at position (\d+)(?: \(line \d+ column \d+\))?/;

/**
 * Locates a `JSON.parse` error about `text`. The parser names the position in most messages;
 * where it does not ("Unexpected token"), the position is found by parsing prefixes of the
 * text: the shortest prefix that fails other than by ending early ends at the bad character.
 */
export function jsonSyntaxProblem(err: unknown, text: string): JsonSyntaxProblem {
  const message = err instanceof Error ? err.message : String(err);
  const match = POSITION.exec(message);
  if (match) {
    const detail = (message.slice(0, match.index) + message.slice(match.index + match[0].length))
      .trim()
      .replace(/[,:]$/, '');
    return { detail, ...lineColumn(text, Math.min(Number(match[1]), text.length)) };
  }
  // The text stops before the value does: the problem is at its end.
  if (/end of JSON input/.test(message))
    return { detail: message, ...lineColumn(text, text.length) };
  // `Unexpected token 'x', ..."quote of the text" is not valid JSON`: keep the first part.
  const detail = /^(Unexpected token .+?), (?:\.\.\.)?"[\s\S]*is not valid JSON$/.exec(
    message,
  )?.[1];
  const position = firstBadOffset(text);
  return {
    detail: detail ?? message,
    ...(position !== undefined && lineColumn(text, position)),
  };
}

/** The offset of the first character that no JSON text can continue with, if any. */
function firstBadOffset(text: string): number | undefined {
  if (!failsBeforeEnd(text, text.length)) return undefined;
  // Failing before the end is monotonic in the prefix length: search the shortest such prefix.
  let lo = 1;
  let hi = text.length;
  while (lo < hi) {
    const mid = Math.floor((lo + hi) / 2);
    if (failsBeforeEnd(text, mid)) hi = mid;
    else lo = mid + 1;
  }
  return lo - 1;
}

/** Whether the first `length` characters of `text` fail to parse for a reason other than ending early. */
function failsBeforeEnd(text: string, length: number): boolean {
  try {
    JSON.parse(text.slice(0, length));
    return false;
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    if (/end of JSON input/.test(message)) return false;
    const at = POSITION.exec(message);
    return at === null || Number(at[1]) < length;
  }
}

function lineColumn(text: string, position: number): { line: number; column: number } {
  const before = text.slice(0, position);
  const line = before.split('\n').length;
  return { line, column: position - (before.lastIndexOf('\n') + 1) + 1 };
}
