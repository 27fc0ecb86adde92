import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  loadTemplate,
  parseTemplate,
  TemplateKind,
  type Template,
} from '../../src/job/template.js';
import { ErrorCode, InputError, TaskError } from '../../src/protocol/errors.js';

const text = (source: string, name = 'prompt.txt') =>
  parseTemplate(source, { name, kind: TemplateKind.Text });
const json = (source: string, name = 'body.json') =>
  parseTemplate(source, { name, kind: TemplateKind.Json });

/** The TaskError `render` throws for `item`. */
function renderError(template: Template, item: unknown): TaskError {
  let thrown: unknown;
  try {
    template.render(item);
  } catch (err) {
    thrown = err;
  }
  expect(thrown).toBeInstanceOf(TaskError);
  return thrown as TaskError;
}

describe('text templates', () => {
  it('fills placeholders, with or without spaces inside the braces, into a prompt', () => {
    const t = text('Describe {{name}} ({{ country }}) in {{  words  }} words.');
    expect(t.render({ name: 'Acme', country: 'FR', words: '50' })).toEqual({
      prompt: 'Describe Acme (FR) in 50 words.',
    });
  });

  it('reads nested fields with dotted paths, into arrays too', () => {
    const t = text('{{company.name}} / {{company.tags.1}}');
    expect(t.render({ company: { name: 'Acme', tags: ['a', 'b'] } })).toEqual({
      prompt: 'Acme / b',
    });
  });

  it('prefers a field whose name contains the dot over the nested path', () => {
    const t = text('{{a.b}}');
    expect(t.render({ 'a.b': 'flat', a: { b: 'nested' } })).toEqual({ prompt: 'flat' });
  });

  it('writes values that are not strings as JSON', () => {
    const t = text('n={{n}} ok={{ok}} tags={{tags}} meta={{meta}} none={{none}}');
    expect(t.render({ n: 4.5, ok: true, tags: ['x', 'y'], meta: { k: 1 }, none: null })).toEqual({
      prompt: 'n=4.5 ok=true tags=["x","y"] meta={"k":1} none=null',
    });
  });

  it('inserts string values as they are, without re-reading braces in them', () => {
    const t = text('{{a}}|{{b}}');
    expect(t.render({ a: '{{b}}', b: 'say "hi"\n' })).toEqual({ prompt: '{{b}}|say "hi"\n' });
  });

  it('lists each field once, in order of first use', () => {
    expect(text('{{b}} {{a.x}} {{ b }} {{c}}').fields).toEqual(['b', 'a.x', 'c']);
  });

  it('keeps text without placeholders, and braces that are not placeholders, as they are', () => {
    const t = text('{"json": {"example": 1}} {{}} { {x} }\n');
    expect(t.fields).toEqual([]);
    expect(t.render({})).toEqual({ prompt: '{"json": {"example": 1}} {{}} { {x} }\n' });
  });

  it('allows spaces inside a field name, for CSV headers that have them', () => {
    expect(text('{{ first name }}').render({ 'first name': 'Ada' })).toEqual({ prompt: 'Ada' });
  });

  it('fails without retry when the item lacks a field, naming the template and the field', () => {
    const err = renderError(text('Hello {{name}} from {{country}}'), { country: 'FR' });
    expect(err.retry).toBe(false);
    expect(err.code).toBe(ErrorCode.BadInput);
    expect(err.message).toBe('template "prompt.txt": item has no field "name"');
  });

  it('fails without retry when a nested step is missing or not an object', () => {
    const t = text('{{a.b.c}}');
    expect(renderError(t, { a: { b: 'text' } }).message).toContain('item has no field "a.b.c"');
    expect(renderError(t, { a: null }).retry).toBe(false);
  });

  it.each([
    ['a string', 'text'],
    ['an array', [1, 2]],
    ['null', null],
    ['a number', 3],
  ])('fails without retry when the payload is %s', (seen, payload) => {
    const err = renderError(text('{{name}}'), payload);
    expect(err.retry).toBe(false);
    expect(err.message).toBe(
      `template "prompt.txt": the payload is ${seen}, expected an object with "name"`,
    );
  });
});

describe('JSON templates', () => {
  it('replaces a string that is one placeholder with the raw value, keeping its type', () => {
    const t = json(
      '{"model": "m", "max_tokens": "{{n}}", "stop": "{{ stop }}", "meta": "{{meta}}", "x": "{{none}}"}',
    );
    expect(t.render({ n: 64, stop: ['\n'], meta: { k: [1, 2] }, none: null })).toEqual({
      model: 'm',
      max_tokens: 64,
      stop: ['\n'],
      meta: { k: [1, 2] },
      x: null,
    });
  });

  it('fills other strings as text, at any depth, and leaves keys and other values alone', () => {
    const t = json(
      '{"messages": [{"role": "user", "content": "About {{name}}: {{n}}"}], "{{name}}": 1, "temperature": 0.2, "stream": false, "tags": [null, "{{name}}!"]}',
    );
    expect(t.render({ name: 'Acme', n: 3 })).toEqual({
      messages: [{ role: 'user', content: 'About Acme: 3' }],
      '{{name}}': 1,
      temperature: 0.2,
      stream: false,
      tags: [null, 'Acme!'],
    });
    expect(t.fields).toEqual(['name', 'n']);
  });

  it('renders a template that is a single placeholder to the value itself', () => {
    expect(json('"{{doc}}"').render({ doc: { a: 1 } })).toEqual({ a: 1 });
  });

  it('keeps a "__proto__" key as a plain key', () => {
    const out = json('{"__proto__": {"polluted": "{{v}}"}}').render({ v: 1 }) as object;
    expect(Object.keys(out)).toEqual(['__proto__']);
    expect((out as { polluted?: unknown }).polluted).toBeUndefined();
    expect(({} as { polluted?: unknown }).polluted).toBeUndefined();
  });

  it('builds a fresh value on every render', () => {
    const t = json('{"list": ["{{a}}"], "fixed": {"k": 1}}');
    const first = t.render({ a: 1 }) as { list: unknown[]; fixed: { k: number } };
    first.list.push('changed');
    first.fixed.k = 2;
    expect(t.render({ a: 1 })).toEqual({ list: [1], fixed: { k: 1 } });
  });

  it('fails without retry when the item lacks a field', () => {
    const err = renderError(json('{"p": "{{q}}"}', 't.json'), { other: 1 });
    expect(err.retry).toBe(false);
    expect(err.message).toBe('template "t.json": item has no field "q"');
  });

  it('rejects JSON that does not parse with its line and column', () => {
    expect(() => json('{\n  "a": 1,\n  "b": ,\n}')).toThrow(InputError);
    expect(() => json('{\n  "a": 1,\n  "b": ,\n}')).toThrow(
      /^template "body.json": not valid JSON at line 3 column 8 \(Unexpected token/,
    );
  });

  it('rejects an empty JSON template', () => {
    expect(() => json('')).toThrow('template "body.json": not valid JSON');
  });
});

describe('loadTemplate', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'qtune-template-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('reads a .json file as a JSON template', async () => {
    const path = join(dir, 'body.JSON');
    writeFileSync(path, '{"prompt": "Hi {{name}}", "n": "{{n}}"}\n');
    const t = await loadTemplate(path);
    expect(t.kind).toBe(TemplateKind.Json);
    expect(t.name).toBe(path);
    expect(t.render({ name: 'Ada', n: 2 })).toEqual({ prompt: 'Hi Ada', n: 2 });
  });

  it('reads any other file as text, keeping its last line break and dropping a byte order mark', async () => {
    const path = join(dir, 'prompt.txt');
    writeFileSync(path, '\uFEFFHi {{name}}\n');
    const t = await loadTemplate(path);
    expect(t.kind).toBe(TemplateKind.Text);
    expect(t.render({ name: 'Ada' })).toEqual({ prompt: 'Hi Ada\n' });
  });

  it('names the file in a JSON syntax error', async () => {
    const path = join(dir, 'broken.json');
    writeFileSync(path, '{"a": }');
    await expect(loadTemplate(path)).rejects.toThrow(
      `template "${path}": not valid JSON at line 1 column 7`,
    );
  });

  it('rejects a file that does not exist', async () => {
    const path = join(dir, 'missing.txt');
    await expect(loadTemplate(path)).rejects.toThrow(InputError);
    await expect(loadTemplate(path)).rejects.toThrow(`template "${path}": no such file`);
  });
});
