/**
 * How deep JSON may nest. JSON.parse reads any depth, but JSON.stringify, structured clone and
 * most other languages' parsers recurse (serde_json stops at 128), so a body nested 10,000 deep
 * crashes whoever handles it next: qtune refuses it where it enters, with this one limit.
 */
import { InputError } from './errors.js';

/**
 * Deepest nesting of arrays and objects in a message body, the envelope's own object included:
 * `{"payload": [[1]]}` is 3 deep (default for every check here).
 */
export const MAX_JSON_DEPTH = 128;

/**
 * Nesting depth of the JSON `text`, counted without parsing it (brackets inside strings do not
 * count); stops counting once it passes `stopAt` and returns that depth.
 */
export function jsonTextDepth(text: string, stopAt = MAX_JSON_DEPTH): number {
  let depth = 0;
  let max = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c /* \ */) i++;
      else if (c === 0x22 /* " */) inString = false;
    } else if (c === 0x22) {
      inString = true;
    } else if (c === 0x5b /* [ */ || c === 0x7b /* { */) {
      if (++depth > max) {
        max = depth;
        if (max > stopAt) return max;
      }
    } else if (c === 0x5d /* ] */ || c === 0x7d /* } */) {
      depth--;
    }
  }
  return max;
}

/**
 * Why `value` nests too deep, or undefined when it fits within `max` levels. Walks the value
 * without recursion, so it never overflows the stack itself; a circular value is too deep.
 */
export function jsonDepthProblem(value: unknown, max = MAX_JSON_DEPTH): string | undefined {
  const stack: [unknown, number][] = [[value, 1]];
  while (stack.length > 0) {
    const [v, depth] = stack.pop()!;
    if (v === null || typeof v !== 'object') continue;
    if (depth > max) {
      return `JSON nests deeper than ${max} levels of arrays and objects`;
    }
    for (const child of Array.isArray(v) ? v : Object.values(v)) {
      if (child !== null && typeof child === 'object') stack.push([child, depth + 1]);
    }
  }
  return undefined;
}

/** Throws an InputError (`<where>: JSON nests deeper than ...`) when `value` nests too deep. */
export function checkJsonDepth(value: unknown, where: string, max = MAX_JSON_DEPTH): void {
  const problem = jsonDepthProblem(value, max);
  if (problem !== undefined) throw new InputError(`${where}: ${problem}`);
}
