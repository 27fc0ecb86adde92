import { createReadStream } from 'node:fs';
import { extname } from 'node:path';
import { createInterface } from 'node:readline';
import { Transform, pipeline, type Readable, type TransformCallback } from 'node:stream';
import { CsvError, parse, type Info, type InfoRecord } from 'csv-parse';
import { InputError } from '../protocol/errors.js';
import { keyOf } from '../protocol/key.js';
import { describeType, isPlainObject, jsonSyntaxProblem } from './values.js';

/** Formats of item files. */
export const ItemFormat = {
  /** JSON Lines: each non-blank line is a JSON object. */
  Jsonl: 'jsonl',
  /** Comma-separated values; the header row names the fields; values are strings. */
  Csv: 'csv',
  /** As CSV, with tabs between fields. */
  Tsv: 'tsv',
} as const;

export type ItemFormat = (typeof ItemFormat)[keyof typeof ItemFormat];

/** One item of a dataset and the line where it starts. */
export interface InputItem {
  /** 1-based line number in the source where the item starts. */
  line: number;
  item: Record<string, unknown>;
}

export interface ReadItemsOptions {
  /** Format of the input (default: from the extension, `.csv` and `.tsv`, else JSON Lines; stdin is JSON Lines). */
  format?: ItemFormat;
  /** What `-` reads (default: process.stdin). */
  stdin?: Readable;
}

export interface ItemStreamOptions {
  /** Format of the stream. */
  format: ItemFormat;
  /** Names the source in errors, e.g. `"items.csv"` or `stdin`. */
  name: string;
}

/** The format an item file's name implies: `.csv` CSV, `.tsv` TSV, anything else (and `-`) JSON Lines. */
export function itemFormatOf(path: string): ItemFormat {
  const ext = extname(path).toLowerCase();
  if (ext === '.csv') return ItemFormat.Csv;
  if (ext === '.tsv') return ItemFormat.Tsv;
  return ItemFormat.Jsonl;
}

/**
 * Reads every item of a JSON Lines, CSV or TSV file, or of stdin for `-`. The whole input is
 * checked before anything is returned: invalid JSON, a line that is not an object, a CSV row
 * with the wrong number of fields, or no items at all rejects it with an InputError naming the
 * source and the line (and column where known).
 */
export async function readItems(
  path: string,
  options: ReadItemsOptions = {},
): Promise<Record<string, unknown>[]> {
  const items: Record<string, unknown>[] = [];
  for await (const { item } of iterateItems(path, options)) items.push(item);
  return items;
}

/**
 * Yields the items of a file (or stdin for `-`) with their line numbers as they are read, for
 * inputs too large to hold. Throws the same InputErrors as {@link readItems}, but only when it
 * reaches the problem, so some or all of the items before it have been yielded already.
 */
export async function* iterateItems(
  path: string,
  options: ReadItemsOptions = {},
): AsyncGenerator<InputItem> {
  const name = path === '-' ? 'stdin' : `"${path}"`;
  const format = options.format ?? itemFormatOf(path);
  const fromFile = path !== '-';
  const input = fromFile ? createReadStream(path) : (options.stdin ?? process.stdin);
  try {
    yield* iterateItemsFrom(input, { format, name });
  } catch (err) {
    if (err instanceof InputError) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new InputError(`${name}: no such file`, { cause: err });
    if (code === 'EISDIR') throw new InputError(`${name}: is a directory`, { cause: err });
    throw new InputError(`${name}: cannot read (${(err as Error).message})`, { cause: err });
  } finally {
    if (fromFile) input.destroy();
  }
}

/** Yields the items of a byte stream in `options.format`; see {@link iterateItems}. */
export async function* iterateItemsFrom(
  input: Readable,
  options: ItemStreamOptions,
): AsyncGenerator<InputItem> {
  const { format, name } = options;
  const items =
    format === ItemFormat.Jsonl
      ? jsonLines(input, name)
      : csvRows(input, name, format === ItemFormat.Tsv ? '\t' : ',');
  let count = 0;
  for await (const item of items) {
    count++;
    yield item;
  }
  if (count === 0) {
    const why = format === ItemFormat.Jsonl ? 'every line is blank' : 'no row below the header';
    throw new InputError(`${name}: no items (${why})`);
  }
}

/** The idempotency key of an item (see {@link keyOf}). */
export const itemKey: (
  item: Readonly<Record<string, unknown>>,
  fields: readonly string[],
) => string = keyOf;

async function* jsonLines(input: Readable, name: string): AsyncGenerator<InputItem> {
  const rl = createInterface({ input, crlfDelay: Infinity });
  let line = 0;
  try {
    for await (const raw of rl) {
      line++;
      const text = line === 1 ? raw.replace(/^\uFEFF/, '') : raw;
      if (text.trim() === '') continue;
      let value: unknown;
      try {
        value = JSON.parse(text);
      } catch (err) {
        const problem = jsonSyntaxProblem(err, text);
        const column = problem.column !== undefined ? ` column ${problem.column}` : '';
        throw new InputError(`${name} line ${line}${column}: not valid JSON (${problem.detail})`, {
          cause: err,
        });
      }
      if (!isPlainObject(value)) {
        const hint = Array.isArray(value) ? ' (write one object per line)' : '';
        throw new InputError(
          `${name} line ${line}: expected a JSON object, got ${describeType(value)}${hint}`,
        );
      }
      yield { line, item: value };
    }
  } finally {
    rl.close();
  }
}

interface CsvRecord {
  record: string[];
  info: Info;
}

async function* csvRows(
  input: Readable,
  name: string,
  delimiter: string,
): AsyncGenerator<InputItem> {
  const lines = new LineTracker();
  // What the parser produced before an error, which its iterator drops when it throws.
  const parsed: { end: number; header?: readonly string[] } = { end: 0 };
  const parser = parse({
    delimiter,
    bom: true,
    info: true,
    skip_empty_lines: true,
    // Rows with another number of fields than the header are reported here, by line.
    relax_column_count: true,
    // Typed as plain rows, but with `info` each row arrives as { record, info }.
    on_record: (row: string[], context: InfoRecord) => {
      parsed.header ??= (row as unknown as CsvRecord).record;
      parsed.end = context.bytes;
      return row;
    },
  });
  // The parser's iterator reports the first error of any stage.
  pipeline(input, lines, parser, () => {});
  let header: string[] | undefined;
  let previousEnd = 0;
  try {
    for await (const { record, info } of parser as AsyncIterable<CsvRecord>) {
      const line = lines.lineAt(previousEnd);
      previousEnd = info.bytes;
      if (header === undefined) {
        header = headerNames(record, name, line);
        continue;
      }
      if (record.length !== header.length) {
        throw new InputError(
          `${name} line ${line}: ${record.length} field(s), expected ${header.length} as in the header`,
        );
      }
      yield { line, item: Object.fromEntries(header.map((field, i) => [field, record[i]])) };
    }
  } catch (err) {
    if (err instanceof CsvError) {
      const names = header ?? parsed.header?.map((n) => n.trim());
      throw csvError(err, name, lines.lineAt(parsed.end), names);
    }
    throw err;
  } finally {
    parser.destroy();
  }
}

/** Field names from the header row (trimmed); an empty or repeated name is an InputError. */
function headerNames(record: readonly string[], name: string, line: number): string[] {
  const names = record.map((n) => n.trim());
  const seen = new Map<string, number>();
  names.forEach((field, i) => {
    if (field === '') {
      throw new InputError(`${name} line ${line} column ${i + 1}: the header has an empty name`);
    }
    const first = seen.get(field);
    if (first !== undefined) {
      throw new InputError(
        `${name} line ${line} column ${i + 1}: the header repeats "${field}" (column ${first + 1})`,
      );
    }
    seen.set(field, i);
  });
  return names;
}

function csvError(
  err: CsvError,
  name: string,
  line: number,
  header: readonly string[] | undefined,
): InputError {
  const index = typeof err.index === 'number' ? err.index : undefined;
  const field = index !== undefined ? header?.[index] : undefined;
  const column =
    index !== undefined ? ` column ${index + 1}${field !== undefined ? ` ("${field}")` : ''}` : '';
  const detail: Record<string, string> = {
    CSV_QUOTE_NOT_CLOSED: 'a quoted field is not closed before the end of the input',
    CSV_INVALID_CLOSING_QUOTE:
      'a closing quote is followed by something other than a delimiter or the end of the line',
    INVALID_OPENING_QUOTE:
      'a quote inside an unquoted field (quote the whole field and double the quotes inside)',
  };
  return new InputError(`${name} line ${line}${column}: ${detail[err.code] ?? err.message}`, {
    cause: err,
  });
}

const LF = 0x0a;
const CR = 0x0d;

/**
 * Passes bytes through unchanged and answers on which line a record starting at a byte offset
 * begins: the parser reports records by their end offset, which, unlike its line count, stays
 * right for CRLF files with blank lines or quoted line breaks. A line ends with LF, CRLF or CR.
 */
class LineTracker extends Transform {
  readonly #chunks: Buffer[] = [];
  /** Absolute offset of the cursor, and its position inside #chunks[0]. */
  #offset = 0;
  #index = 0;
  /** Line breaks before the cursor. */
  #breaks = 0;
  #afterCr = false;

  override _transform(chunk: Buffer | string, _encoding: string, done: TransformCallback): void {
    const bytes = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    if (bytes.length > 0) this.#chunks.push(bytes);
    done(null, bytes);
  }

  /** The 1-based line of the first byte at or after `offset` that is not a line break. */
  lineAt(offset: number): number {
    while (this.#offset < offset && this.#step() !== undefined);
    for (;;) {
      const next = this.#peek();
      if (next !== LF && next !== CR) break;
      this.#step();
    }
    return this.#breaks + 1;
  }

  #peek(): number | undefined {
    return this.#chunks[0]?.[this.#index];
  }

  /** Moves the cursor one byte forward, counting line breaks; undefined at the end of the data seen. */
  #step(): number | undefined {
    const chunk = this.#chunks[0];
    if (chunk === undefined) return undefined;
    const byte = chunk[this.#index]!;
    if (byte === CR || (byte === LF && !this.#afterCr)) this.#breaks++;
    this.#afterCr = byte === CR;
    this.#offset++;
    this.#index++;
    if (this.#index >= chunk.length) {
      this.#chunks.shift();
      this.#index = 0;
    }
    return byte;
  }
}
