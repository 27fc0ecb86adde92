import { describe, expect, it } from 'vitest';
import { redact } from '../../src/protocol/index.js';

describe('redact', () => {
  it('hides a plain password and keeps the user, host and path', () => {
    expect(redact('amqp://qtune:s3cret@rabbit:5672/ml')).toBe('amqp://qtune:***@rabbit:5672/ml');
    expect(redact('postgres://app:pw@db/qtune')).toBe('postgres://app:***@db/qtune');
  });

  it('hides a password that contains "@"', () => {
    const out = redact('amqp://qtune:p@ss@word@rabbit:5672/');
    expect(out).toBe('amqp://qtune:***@rabbit:5672/');
    expect(out).not.toContain('ss@word');
  });

  it('hides a password that contains "/" (not a valid URL)', () => {
    const out = redact('amqp://qtune:pa/ss:w?rd@rabbit/ml');
    expect(out).toBe('amqp://qtune:***@rabbit/ml');
  });

  it('hides a password inside a query parameter URL', () => {
    const out = redact('amqp://u:outer@rabbit/ml?management=http://admin:inner@rabbit:15672');
    expect(out).toBe('amqp://u:***@rabbit/ml?management=http://admin:***@rabbit:15672');
    expect(redact('amqp://rabbit/?management=http://admin:in@ner@rabbit:15672')).toBe(
      'amqp://rabbit/?management=http://admin:***@rabbit:15672',
    );
  });

  it('hides the credentials of a gateway URL', () => {
    expect(redact('https://alice:t0ken-xyz@gw.example:8080/v1')).toBe(
      'https://alice:***@gw.example:8080/v1',
    );
  });

  it('hides secret query parameters', () => {
    expect(redact('http://gw:8080/?token=abcdef&x=1')).toBe('http://gw:8080/?token=***&x=1');
    expect(redact('amqp://h/?password=p%40ss')).toBe('amqp://h/?password=***');
  });

  it('finds URLs inside free text and leaves other text alone', () => {
    expect(
      redact('broker URL "amqp://u:p@/x@h" is not a valid URL; see amqp://v:q@h2 (retrying)'),
    ).toBe('broker URL "amqp://u:***@h" is not a valid URL; see amqp://v:***@h2 (retrying)');
    expect(redact('queue "a@b:c" is empty')).toBe('queue "a@b:c" is empty');
    expect(redact('amqp://guest@rabbit/')).toBe('amqp://guest@rabbit/');
    expect(redact('/var/lib/qtune/broker.db')).toBe('/var/lib/qtune/broker.db');
  });
});
