import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  ItemFormat,
  itemFormatOf,
  itemKey,
  iterateItems,
  iterateItemsFrom,
  readItems,
  type InputItem,
} from '../../src/job/input.js';
import { canonicalJson } from '../../src/job/values.js';
import { InputError } from '../../src/protocol/errors.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'qtune-input-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

function file(name: string, text: string | Buffer): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

async function collect(items: AsyncIterable<InputItem>): Promise<InputItem[]> {
  const out: InputItem[] = [];
  for await (const item of items) out.push(item);
  return out;
}

/** The InputError a promise rejects with. */
async function inputError(promise: Promise<unknown>): Promise<InputError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(InputError);
  return err as InputError;
}

/** Feeds `text` one byte per chunk, so every boundary (inside CRLF, inside UTF-8) is crossed. */
function byteByByte(text: string): Readable {
  const bytes = Buffer.from(text);
  return Readable.from([...bytes].map((b) => Buffer.from([b])));
}

describe('itemFormatOf', () => {
  it('picks CSV and TSV by extension, whatever the case, and JSON Lines otherwise', () => {
    expect(itemFormatOf('a/items.csv')).toBe(ItemFormat.Csv);
    expect(itemFormatOf('ITEMS.CSV')).toBe(ItemFormat.Csv);
    expect(itemFormatOf('items.tsv')).toBe(ItemFormat.Tsv);
    expect(itemFormatOf('items.jsonl')).toBe(ItemFormat.Jsonl);
    expect(itemFormatOf('items.txt')).toBe(ItemFormat.Jsonl);
    expect(itemFormatOf('-')).toBe(ItemFormat.Jsonl);
  });
});

describe('readItems: JSON Lines', () => {
  it('reads one object per line, skipping blank lines', async () => {
    const path = file('items.jsonl', '{"id":1,"name":"a"}\n\n  \n{"id":2,"tags":["x"]}\n');
    expect(await readItems(path)).toEqual([
      { id: 1, name: 'a' },
      { id: 2, tags: ['x'] },
    ]);
  });

  it('gives each item the line it is on, counting blank lines', async () => {
    const path = file('items.jsonl', '\n{"id":1}\r\n\r\n{"id":2}');
    const items = await collect(iterateItems(path));
    expect(items).toEqual([
      { line: 2, item: { id: 1 } },
      { line: 4, item: { id: 2 } },
    ]);
  });

  it('ignores a byte order mark', async () => {
    const path = file('bom.jsonl', '\uFEFF{"id":1}\n');
    expect(await readItems(path)).toEqual([{ id: 1 }]);
  });

  it('rejects invalid JSON with its line and column', async () => {
    const path = file('bad.jsonl', '{"id":1}\n\n{"id":2,}\n{"id":4}\n');
    const err = await inputError(readItems(path));
    expect(err.message).toBe(
      `"${path}" line 3 column 9: not valid JSON (Expected double-quoted property name)`,
    );
  });

  it('rejects a line cut short, pointing past its end', async () => {
    const path = file('short.jsonl', '{"id":1}\n{"id":\n');
    const err = await inputError(readItems(path));
    expect(err.message).toContain(`"${path}" line 2 column 7: not valid JSON`);
  });

  it.each([
    ['[1,2]', 'an array (write one object per line)'],
    ['"text"', 'a string'],
    ['42', 'a number'],
    ['null', 'null'],
    ['true', 'a boolean'],
  ])('rejects a line holding %s, not an object', async (line, seen) => {
    const path = file('scalar.jsonl', `{"id":1}\n${line}\n`);
    const err = await inputError(readItems(path));
    expect(err.message).toBe(`"${path}" line 2: expected a JSON object, got ${seen}`);
  });

  it.each([
    ['an empty file', ''],
    ['a file of blank lines', '\n  \n\r\n'],
  ])('rejects %s: there are no items', async (_what, text) => {
    const path = file('empty.jsonl', text);
    const err = await inputError(readItems(path));
    expect(err.message).toBe(`"${path}": no items (every line is blank)`);
  });

  it('rejects a file that does not exist, naming it', async () => {
    const path = join(dir, 'missing.jsonl');
    const err = await inputError(readItems(path));
    expect(err.message).toBe(`"${path}": no such file`);
  });

  it('reads stdin for "-"', async () => {
    const stdin = Readable.from(['{"id":1}\n{"id":', '2}\n']);
    expect(await readItems('-', { stdin })).toEqual([{ id: 1 }, { id: 2 }]);
  });

  it('finds the column of an unexpected token, which the parser does not give', async () => {
    const path = file('token.jsonl', '{"id":1}\n{"id": nope}\n');
    const err = await inputError(readItems(path));
    expect(err.message).toBe(`"${path}" line 2 column 9: not valid JSON (Unexpected token 'o')`);
  });

  it('names stdin in errors', async () => {
    const stdin = Readable.from(['{"id":1}\n{"id":2,}\n']);
    const err = await inputError(readItems('-', { stdin }));
    expect(err.message).toMatch(/^stdin line 2 column 9: not valid JSON/);
  });

  it('yields the items before a malformed line when iterating, then throws', async () => {
    const path = file('partial.jsonl', '{"id":1}\n{"id":2}\n{oops\n');
    const seen: unknown[] = [];
    const err = await inputError(
      (async () => {
        for await (const { item } of iterateItems(path)) seen.push(item);
      })(),
    );
    expect(seen).toEqual([{ id: 1 }, { id: 2 }]);
    expect(err.message).toContain('line 3');
  });
});

describe('readItems: CSV and TSV', () => {
  it('names fields after the header and keeps every value a string', async () => {
    const path = file('items.csv', 'id,name,score\n1,Acme,4.5\n2,Beta,\n');
    expect(await readItems(path)).toEqual([
      { id: '1', name: 'Acme', score: '4.5' },
      { id: '2', name: 'Beta', score: '' },
    ]);
  });

  it('reads quoted fields with delimiters, doubled quotes and line breaks inside', async () => {
    const path = file(
      'quoted.csv',
      'id,text\n1,"a, b"\n2,"say ""hi"""\n3,"two\nlines"\n4,"crlf\r\ninside"\n',
    );
    expect(await readItems(path)).toEqual([
      { id: '1', text: 'a, b' },
      { id: '2', text: 'say "hi"' },
      { id: '3', text: 'two\nlines' },
      { id: '4', text: 'crlf\r\ninside' },
    ]);
  });

  it('trims header names and ignores a byte order mark', async () => {
    const path = file('header.csv', '\uFEFFid , name\n1,x\n');
    expect(await readItems(path)).toEqual([{ id: '1', name: 'x' }]);
  });

  it.each([
    ['LF', '\n'],
    ['CRLF', '\r\n'],
  ])(
    'gives each row the line it starts on, past blank lines and quoted line breaks (%s)',
    async (_name, nl) => {
      const text = `id,text${nl}1,"a${nl}b${nl}c"${nl}${nl}2,x${nl}${nl}${nl}3,"y"${nl}`;
      const lines = (await collect(iterateItems(file('lines.csv', text)))).map((i) => i.line);
      expect(lines).toEqual([2, 6, 9]);
      const chunked = await collect(
        iterateItemsFrom(byteByByte(text), { format: ItemFormat.Csv, name: 'stdin' }),
      );
      expect(chunked.map((i) => i.line)).toEqual([2, 6, 9]);
      expect(chunked[0]!.item).toEqual({ id: '1', text: `a${nl}b${nl}c` });
    },
  );

  it('keeps multi-byte characters whole across chunk boundaries', async () => {
    const items = await collect(
      iterateItemsFrom(byteByByte('név,ville\nÉlodie,Orléans\n'), {
        format: ItemFormat.Csv,
        name: 'stdin',
      }),
    );
    expect(items).toEqual([{ line: 2, item: { név: 'Élodie', ville: 'Orléans' } }]);
  });

  it.each([
    ['too few', 'a,b,c\n1,2,3\n4,5\n', 2],
    ['too many', 'a,b,c\n1,2,3\n4,5,6,7\n', 4],
  ])('rejects a row with %s fields by its line', async (_what, text, got) => {
    const path = file('count.csv', text);
    const err = await inputError(readItems(path));
    expect(err.message).toBe(`"${path}" line 3: ${got} field(s), expected 3 as in the header`);
  });

  it('counts lines right in a CRLF file when a row after a quoted line break is wrong', async () => {
    const path = file('crlf.csv', 'a,b\r\n"x\r\ny",1\r\n\r\n2\r\n');
    const err = await inputError(readItems(path));
    expect(err.message).toBe(`"${path}" line 5: 1 field(s), expected 2 as in the header`);
  });

  it('rejects a quote that is never closed, from the line of its row', async () => {
    const path = file('open.csv', 'a,b\n1,2\n3,"4\n5,6\n7,8\n');
    const err = await inputError(readItems(path));
    expect(err.message).toBe(
      `"${path}" line 3 column 2 ("b"): a quoted field is not closed before the end of the input`,
    );
  });

  it('rejects text after a closing quote, with the column', async () => {
    const path = file('close.csv', 'a,b\n1,2\n3,"4"x\n');
    const err = await inputError(readItems(path));
    expect(err.message).toMatch(
      new RegExp(`^"${path}" line 3 column 2 \\("b"\\): a closing quote`),
    );
  });

  it('rejects a quote inside an unquoted field', async () => {
    const path = file('inner.csv', 'a,b\n1,2 "inch"\n');
    const err = await inputError(readItems(path));
    expect(err.message).toMatch(/line 2 column 2 \("b"\): a quote inside an unquoted field/);
  });

  it('rejects a header that repeats a name or leaves one empty', async () => {
    const repeated = file('repeat.csv', 'id,name,id\n1,2,3\n');
    expect((await inputError(readItems(repeated))).message).toBe(
      `"${repeated}" line 1 column 3: the header repeats "id" (column 1)`,
    );
    const empty = file('blank-name.csv', 'id,,x\n1,2,3\n');
    expect((await inputError(readItems(empty))).message).toBe(
      `"${empty}" line 1 column 2: the header has an empty name`,
    );
  });

  it.each([
    ['only a header', 'id,name\n'],
    ['nothing at all', ''],
    ['blank lines', '\n\n'],
  ])('rejects a CSV file with %s: there are no items', async (_what, text) => {
    const path = file('empty.csv', text);
    const err = await inputError(readItems(path));
    expect(err.message).toBe(`"${path}": no items (no row below the header)`);
  });

  it('splits a .tsv file on tabs, not commas', async () => {
    const path = file('items.tsv', 'id\ttext\n1\ta, b\n2\t"quoted\ttab"\n');
    expect(await readItems(path)).toEqual([
      { id: '1', text: 'a, b' },
      { id: '2', text: 'quoted\ttab' },
    ]);
  });

  it('reads CSV from stdin when told the format', async () => {
    const stdin = Readable.from(['id,name\n', '1,x\n']);
    expect(await readItems('-', { stdin, format: ItemFormat.Csv })).toEqual([
      { id: '1', name: 'x' },
    ]);
  });
});

describe('itemKey', () => {
  const sha = (text: string) => createHash('sha256').update(text).digest('hex').slice(0, 32);

  it('hashes the key fields values in order as canonical JSON', () => {
    const key = itemKey({ id: 'acme', country: 'fr', size: 3 }, ['id', 'country']);
    expect(key).toBe(sha('["acme","fr"]'));
    expect(key).toMatch(/^[0-9a-f]{32}$/);
  });

  it('depends on the order of the key fields and on their values only', () => {
    const item = { id: 'acme', country: 'fr', size: 3 };
    const key = itemKey(item, ['id', 'country']);
    expect(itemKey(item, ['country', 'id'])).not.toBe(key);
    expect(itemKey({ ...item, size: 4 }, ['id', 'country'])).toBe(key);
    expect(itemKey({ ...item, country: 'de' }, ['id', 'country'])).not.toBe(key);
  });

  it('keeps types apart: the number 1 and the string "1" differ', () => {
    expect(itemKey({ id: 1 }, ['id'])).not.toBe(itemKey({ id: '1' }, ['id']));
  });

  it('hashes the whole item, keys sorted at every depth, when no field is given', () => {
    const a = { b: { y: [1, { q: 1, p: 2 }], x: null }, a: 'z' };
    const b = { a: 'z', b: { x: null, y: [1, { p: 2, q: 1 }] } };
    expect(itemKey(a, [])).toBe(itemKey(b, []));
    expect(itemKey(a, [])).toBe(sha('{"a":"z","b":{"x":null,"y":[1,{"p":2,"q":1}]}}'));
    expect(itemKey({ ...a, a: 'w' }, [])).not.toBe(itemKey(a, []));
  });

  it('is stable when a key field holds an object', () => {
    expect(itemKey({ id: { b: 1, a: 2 } }, ['id'])).toBe(itemKey({ id: { a: 2, b: 1 } }, ['id']));
  });

  it('reads a dotted key field from a nested object', () => {
    expect(itemKey({ company: { id: 7 } }, ['company.id'])).toBe(sha('[7]'));
  });

  it('throws an InputError naming a missing key field', () => {
    expect(() => itemKey({ id: 1 }, ['id', 'name'])).toThrow(InputError);
    expect(() => itemKey({ id: 1 }, ['id', 'name'])).toThrow('item has no key field "name"');
  });
});

describe('canonicalJson', () => {
  it('sorts integer-like keys as text, which plain JSON.stringify cannot', () => {
    expect(canonicalJson({ b: 1, 10: 2, 9: 3 })).toBe('{"10":2,"9":3,"b":1}');
  });

  it('leaves out undefined members and writes undefined array slots as null', () => {
    expect(canonicalJson({ a: undefined, b: [undefined, 1] })).toBe('{"b":[null,1]}');
  });
});
