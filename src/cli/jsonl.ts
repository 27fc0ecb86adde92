import { createReadStream } from 'node:fs';
import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';
import { InputError } from '../protocol/errors.js';

export interface JsonLine {
  /** 1-based line number in the source. */
  line: number;
  value: unknown;
}

/**
 * Reads JSON Lines from a file path or `-` (stdin). Blank lines are skipped. The whole input is
 * validated before anything is returned, so one malformed line rejects the file with its line
 * number and nothing from it is used.
 */
export async function readJsonLines(source: string): Promise<JsonLine[]> {
  const name = source === '-' ? 'stdin' : `"${source}"`;
  let input: Readable;
  if (source === '-') {
    input = process.stdin;
  } else {
    input = createReadStream(source);
  }
  const out: JsonLine[] = [];
  const rl = createInterface({ input, crlfDelay: Infinity });
  let line = 0;
  try {
    for await (const text of rl) {
      line++;
      if (text.trim() === '') continue;
      try {
        out.push({ line, value: JSON.parse(text) });
      } catch (err) {
        const detail = err instanceof Error ? err.message : String(err);
        throw new InputError(
          `${name} line ${line}: not valid JSON (${detail}); nothing was published`,
        );
      }
    }
  } catch (err) {
    if (err instanceof InputError) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new InputError(`${name}: no such file`, { cause: err });
    throw new InputError(`${name}: cannot read (${(err as Error).message})`, { cause: err });
  } finally {
    rl.close();
  }
  return out;
}
