import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseBrokerUrl } from '../../src/broker/open.js';
import { InputError } from '../../src/protocol/errors.js';
import {
  parseNetworkUrl,
  splitTargetUrl,
  targetPath,
  unknownScheme,
} from '../../src/protocol/target-url.js';
import { parseStoreUrl } from '../../src/store/open.js';

const cwd = resolve('/tmp/qtune-target-url');
const home = { QTUNE_HOME: join(cwd, 'home') };

function withHome<T>(fn: () => T): T {
  const before = process.env.QTUNE_HOME;
  process.env.QTUNE_HOME = home.QTUNE_HOME;
  try {
    return fn();
  } finally {
    if (before === undefined) delete process.env.QTUNE_HOME;
    else process.env.QTUNE_HOME = before;
  }
}

describe('splitTargetUrl', () => {
  it('splits at the scheme, in lower case, and trims', () => {
    expect(splitTargetUrl('  AMQP://h/v ')).toEqual({
      raw: 'AMQP://h/v',
      scheme: 'amqp',
      rest: '//h/v',
    });
  });

  it('reads an empty URL, a plain path and a Windows drive letter as no scheme', () => {
    expect(splitTargetUrl(undefined)).toEqual({ raw: '', scheme: undefined, rest: '' });
    expect(splitTargetUrl('data/q.db').scheme).toBeUndefined();
    expect(splitTargetUrl('C:\\data\\q.db').scheme).toBeUndefined();
  });

  it('resolves file paths against cwd, and names the default file in the project folder when none is given', () => {
    withHome(() => {
      expect(targetPath(splitTargetUrl('sqlite:x.db'), cwd, 'd.db')).toBe(join(cwd, 'x.db'));
      expect(targetPath(splitTargetUrl('file:///abs/x.db'), cwd, 'd.db')).toBe('/abs/x.db');
      expect(targetPath(splitTargetUrl('rel/x.db'), cwd, 'd.db')).toBe(join(cwd, 'rel/x.db'));
      expect(targetPath(splitTargetUrl(''), cwd, 'd.db')).toBe(join(home.QTUNE_HOME, 'd.db'));
      expect(targetPath(splitTargetUrl('sqlite:'), cwd, 'd.db')).toBe(
        join(home.QTUNE_HOME, 'd.db'),
      );
    });
  });

  it('names an unknown scheme with the URL redacted', () => {
    const err = unknownScheme('store URL', splitTargetUrl('redis://u:secret@h'), 'sqlite:PATH');
    expect(err).toBeInstanceOf(InputError);
    expect(err.message).toBe(
      'store URL "redis://u:***@h": unknown scheme "redis:" (expected sqlite:PATH)',
    );
  });
});

describe('parseNetworkUrl', () => {
  const amqp = { what: 'broker URL', schemes: ['amqp', 'amqps'], expected: 'amqp://' };

  it('returns the parsed URL when its scheme is accepted', () => {
    const url = parseNetworkUrl('amqps://u:p@rabbit:5671/vh', amqp);
    expect([url.protocol, url.hostname, url.port, url.pathname]).toEqual([
      'amqps:',
      'rabbit',
      '5671',
      '/vh',
    ]);
  });

  it('rejects a URL that does not parse, or has another scheme, without showing its password', () => {
    expect(() => parseNetworkUrl('amqp://u:secret@', amqp)).toThrow(InputError);
    expect(() => parseNetworkUrl('amqp://u:secret@', amqp)).toThrow(
      'broker URL "amqp://u:***@" is not a valid URL',
    );
    expect(() => parseNetworkUrl('http://u:secret@h', amqp)).toThrow(
      'broker URL "http://u:***@h": expected amqp://',
    );
  });
});

describe('broker and store URLs', () => {
  it('parses broker URLs', () => {
    withHome(() => {
      expect(parseBrokerUrl(undefined, cwd)).toEqual({
        kind: 'embedded',
        location: join(home.QTUNE_HOME, 'broker.db'),
      });
      expect(parseBrokerUrl('embedded:q.db', cwd)).toEqual({
        kind: 'embedded',
        location: join(cwd, 'q.db'),
      });
      expect(parseBrokerUrl('memory:', cwd)).toEqual({ kind: 'memory', location: 'default' });
      expect(parseBrokerUrl('memory://bus', cwd)).toEqual({ kind: 'memory', location: 'bus' });
      expect(parseBrokerUrl('amqp://h', cwd)).toEqual({ kind: 'amqp', location: 'amqp://h' });
      expect(parseBrokerUrl('https://gw', cwd)).toEqual({
        kind: 'gateway',
        location: 'https://gw',
      });
    });
    expect(() => parseBrokerUrl('kafka://u:pw@h', cwd)).toThrow(
      /^broker URL "kafka:\/\/u:\*\*\*@h": unknown scheme "kafka:"/,
    );
  });

  it('parses store URLs', () => {
    withHome(() => {
      expect(parseStoreUrl('', cwd)).toEqual({
        kind: 'sqlite',
        location: join(home.QTUNE_HOME, 'store.db'),
      });
      expect(parseStoreUrl('sqlite://s.db', cwd)).toEqual({
        kind: 'sqlite',
        location: join(cwd, 's.db'),
      });
      expect(parseStoreUrl('s.db', cwd)).toEqual({ kind: 'sqlite', location: join(cwd, 's.db') });
      expect(parseStoreUrl('postgresql://u:p@db/q', cwd)).toEqual({
        kind: 'postgres',
        location: 'postgresql://u:p@db/q',
      });
    });
    expect(() => parseStoreUrl('mysql://u:pw@h', cwd)).toThrow(
      /^store URL "mysql:\/\/u:\*\*\*@h": unknown scheme "mysql:"/,
    );
  });
});
