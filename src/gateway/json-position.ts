/**
 * Where a JSON text goes wrong. `JSON.parse` does the parsing; this scanner runs only after it
 * failed, to name the position (V8's messages do not always carry one).
 */

/** The first syntax error of a JSON text. */
export interface JsonSyntaxError {
  /** Index in the string (UTF-16 code units) of the offending character, or its length at the end. */
  index: number;
  /** What was expected or found, e.g. `unexpected "}"`. */
  reason: string;
}

const WS = new Set([0x20, 0x09, 0x0a, 0x0d]);

function describe(text: string, i: number): string {
  if (i >= text.length) return 'unexpected end of input';
  return `unexpected ${JSON.stringify(text[i])}`;
}

/**
 * Scans `text` as one JSON value and returns its first syntax error, or undefined when it is
 * valid. An explicit stack, so deeply nested input cannot overflow the call stack.
 */
export function findJsonError(text: string): JsonSyntaxError | undefined {
  const n = text.length;
  let i = 0;
  const fail = (reason?: string): JsonSyntaxError => ({
    index: i,
    reason: reason ?? describe(text, i),
  });
  const skipWs = () => {
    while (i < n && WS.has(text.charCodeAt(i))) i++;
  };
  /** Scans a string starting at its opening quote; false on error (i at the fault). */
  const scanString = (): boolean => {
    i++;
    while (i < n) {
      const c = text.charCodeAt(i);
      if (c === 0x22) {
        i++;
        return true;
      }
      if (c < 0x20) return false;
      if (c === 0x5c) {
        const e = text[i + 1];
        if (e === 'u') {
          if (!/^[0-9a-fA-F]{4}$/.test(text.slice(i + 2, i + 6))) {
            i += 2;
            return false;
          }
          i += 6;
          continue;
        }
        if (e === undefined || !'"\\/bfnrt'.includes(e)) {
          i++;
          return false;
        }
        i += 2;
        continue;
      }
      i++;
    }
    return false;
  };
  const scanNumber = (): boolean => {
    const m = /^-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?/.exec(text.slice(i, i + 400));
    if (!m || m[0] === '' || m[0] === '-') return false;
    i += m[0].length;
    return true;
  };
  /** Containers open above the current value: '[' or '{'. */
  const stack: string[] = [];
  skipWs();
  for (;;) {
    // Expect a value.
    skipWs();
    const c = text[i];
    if (c === '{') {
      i++;
      skipWs();
      if (text[i] === '}') {
        i++;
      } else {
        if (text[i] !== '"') return fail(`${describe(text, i)}, expected a property name`);
        if (!scanString()) return fail();
        skipWs();
        if (text[i] !== ':') return fail(`${describe(text, i)}, expected ":"`);
        i++;
        stack.push('{');
        continue;
      }
    } else if (c === '[') {
      i++;
      skipWs();
      if (text[i] === ']') {
        i++;
      } else {
        stack.push('[');
        continue;
      }
    } else if (c === '"') {
      if (!scanString()) return fail(i >= n ? 'unterminated string' : undefined);
    } else if (c === '-' || (c !== undefined && c >= '0' && c <= '9')) {
      if (!scanNumber()) return fail(`invalid number`);
    } else if (text.startsWith('true', i)) {
      i += 4;
    } else if (text.startsWith('false', i)) {
      i += 5;
    } else if (text.startsWith('null', i)) {
      i += 4;
    } else {
      return fail(`${describe(text, i)}, expected a value`);
    }
    // After a value: close containers or go on to the next element.
    for (;;) {
      skipWs();
      const top = stack[stack.length - 1];
      if (top === undefined) {
        if (i < n) return fail(`${describe(text, i)} after the end of the value`);
        return undefined;
      }
      const d = text[i];
      if (d === ',') {
        i++;
        if (top === '{') {
          skipWs();
          if (text[i] !== '"') return fail(`${describe(text, i)}, expected a property name`);
          if (!scanString()) return fail();
          skipWs();
          if (text[i] !== ':') return fail(`${describe(text, i)}, expected ":"`);
          i++;
        }
        break;
      }
      if ((top === '[' && d === ']') || (top === '{' && d === '}')) {
        i++;
        stack.pop();
        continue;
      }
      return fail(`${describe(text, i)}, expected "," or "${top === '[' ? ']' : '}'}"`);
    }
  }
}

/** 1-based line and column of `index` in `text`. */
export function lineColumn(text: string, index: number): { line: number; column: number } {
  let line = 1;
  let lineStart = 0;
  for (let k = text.indexOf('\n'); k !== -1 && k < index; k = text.indexOf('\n', k + 1)) {
    line++;
    lineStart = k + 1;
  }
  return { line, column: index - lineStart + 1 };
}

/**
 * Describes the syntax error of `text` (which JSON.parse rejected): `byte B (line L, column C):
 * reason`. Falls back to `fallback` (V8's message) if the scanner finds the text valid.
 */
export function jsonErrorPosition(text: string, fallback: string): string {
  const err = findJsonError(text);
  if (!err) return fallback;
  const byte = Buffer.byteLength(text.slice(0, err.index), 'utf8');
  const { line, column } = lineColumn(text, err.index);
  return `byte ${byte} (line ${line}, column ${column}): ${err.reason}`;
}

/** Deepest nesting of arrays and objects a request body may have (the body's own level counts). */
export const MAX_JSON_DEPTH = 128;

/**
 * Index of the bracket that takes valid JSON `text` deeper than `max` levels of arrays and
 * objects, or -1 when it stays within them. Runs after JSON.parse accepted the text, so strings
 * are well formed.
 */
export function jsonTooDeep(text: string, max = MAX_JSON_DEPTH): number {
  let depth = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22) {
      // Skip the string, honouring backslash escapes.
      for (i++; i < text.length; i++) {
        const d = text.charCodeAt(i);
        if (d === 0x5c) i++;
        else if (d === 0x22) break;
      }
    } else if (c === 0x5b || c === 0x7b) {
      if (++depth > max) return i;
    } else if (c === 0x5d || c === 0x7d) {
      depth--;
    }
  }
  return -1;
}

/** Byte offset, line and column of `index` in `text`, as error messages show a position. */
export function positionOf(text: string, index: number): string {
  const byte = Buffer.byteLength(text.slice(0, index), 'utf8');
  const { line, column } = lineColumn(text, index);
  return `byte ${byte} (line ${line}, column ${column})`;
}

/** Offset of the first byte of `bytes` that is not valid UTF-8 (a rough check), or -1. */
export function invalidUtf8At(bytes: Uint8Array): number {
  for (let i = 0; i < bytes.length;) {
    const c = bytes[i]!;
    const more =
      c < 0x80
        ? 0
        : c >= 0xc2 && c <= 0xdf
          ? 1
          : c >= 0xe0 && c <= 0xef
            ? 2
            : c >= 0xf0 && c <= 0xf4
              ? 3
              : -1;
    if (more < 0) return i;
    for (let k = 1; k <= more; k++) {
      if (i + k >= bytes.length || (bytes[i + k]! & 0xc0) !== 0x80) return i;
    }
    i += more + 1;
  }
  return -1;
}
