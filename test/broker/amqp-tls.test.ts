import { execFileSync } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { AmqpBroker } from '../../src/broker/amqp/index.js';
import { waitFor } from '../support/wait.js';
import { BrokerError, ErrorCode } from '../../src/protocol/errors.js';
import { freePort, startRabbit, type RabbitNode } from '../support/rabbitmq.mjs';

// A RabbitMQ node with a TLS listener that requires a client certificate, and a throwaway CA
// that signed the server's and the client's certificates (openssl from the base system).
let node: RabbitNode | undefined;
let certs: string;
let url = '';

function openssl(...args: string[]): void {
  execFileSync('openssl', args, { cwd: certs, stdio: 'pipe' });
}

/** A key and a certificate for `cn`, signed by the test CA, with `ext` as its extensions. */
function issue(name: string, cn: string, ext: string): void {
  writeFileSync(join(certs, `${name}.ext`), ext);
  openssl(
    'req',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-keyout',
    `${name}.key`,
    '-out',
    `${name}.csr`,
    '-subj',
    `/CN=${cn}`,
  );
  openssl(
    'x509',
    '-req',
    '-in',
    `${name}.csr`,
    '-CA',
    'ca.pem',
    '-CAkey',
    'ca.key',
    '-CAcreateserial',
    '-out',
    `${name}.pem`,
    '-days',
    '2',
    '-extfile',
    `${name}.ext`,
  );
}

beforeAll(async () => {
  certs = mkdtempSync(join(tmpdir(), 'qtune-tls-'));
  chmodSync(certs, 0o755);
  openssl(
    'req',
    '-x509',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-keyout',
    'ca.key',
    '-out',
    'ca.pem',
    '-days',
    '2',
    '-subj',
    '/CN=qtune test CA',
  );
  issue('server', '127.0.0.1', 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n');
  issue('client', 'qtune-client', 'extendedKeyUsage=clientAuth\n');
  // The node may run as another user: let it read the files.
  execFileSync('chmod', ['-R', 'a+r', certs]);
  const tlsPort = await freePort();
  node = await startRabbit({
    config: [
      `listeners.ssl.default = 127.0.0.1:${tlsPort}`,
      `ssl_options.cacertfile = ${join(certs, 'ca.pem')}`,
      `ssl_options.certfile = ${join(certs, 'server.pem')}`,
      `ssl_options.keyfile = ${join(certs, 'server.key')}`,
      'ssl_options.verify = verify_peer',
      'ssl_options.fail_if_no_peer_cert = true',
    ],
  });
  url = `amqps://guest:guest@127.0.0.1:${tlsPort}`;
}, 120_000);

afterAll(async () => {
  await node?.stop();
  rmSync(certs, { recursive: true, force: true });
}, 120_000);

const ENV = ['QTUNE_AMQP_CA', 'QTUNE_AMQP_CERT', 'QTUNE_AMQP_KEY'] as const;
afterEach(() => {
  for (const k of ENV) delete process.env[k];
});

function useFiles(files: Partial<Record<(typeof ENV)[number], string>>): void {
  for (const [k, f] of Object.entries(files)) process.env[k] = join(certs, f);
}

describe('AMQP broker over TLS (amqps://)', () => {
  it('connects with the CA, client certificate and key named in QTUNE_AMQP_*, and carries tasks', async () => {
    useFiles({
      QTUNE_AMQP_CA: 'ca.pem',
      QTUNE_AMQP_CERT: 'client.pem',
      QTUNE_AMQP_KEY: 'client.key',
    });
    const broker = await AmqpBroker.open(url);
    try {
      const queue = `tls-${Date.now()}`;
      await broker.declareQueue(queue);
      const got: string[] = [];
      await broker.consume(queue, async (d) => {
        got.push(d.body.toString());
        await d.ack();
      });
      await broker.publish(queue, [{ body: 'one' }, { body: 'two' }]);
      await waitFor(() => got.length === 2, 10_000, 'both messages over TLS');
      expect(got.sort()).toEqual(['one', 'two']);
    } finally {
      await broker.close();
    }
  });

  it('is refused without a client certificate, with an error that says where', async () => {
    useFiles({ QTUNE_AMQP_CA: 'ca.pem' });
    const err = await AmqpBroker.open(url).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BrokerError);
    expect((err as BrokerError).code).toBe(ErrorCode.BrokerUnavailable);
    expect((err as Error).message).toContain('cannot connect to RabbitMQ at amqps://');
    expect((err as Error).message).not.toContain('guest:guest');
  });

  it('does not trust a server whose CA it was not given', async () => {
    useFiles({ QTUNE_AMQP_CERT: 'client.pem', QTUNE_AMQP_KEY: 'client.key' });
    const err = await AmqpBroker.open(url).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BrokerError);
    expect((err as Error).message).toMatch(/self[- ]signed|unable to (get|verify)/i);
  });

  it('names the variable and the file when a certificate file cannot be read', async () => {
    process.env.QTUNE_AMQP_CA = join(certs, 'missing.pem');
    await expect(AmqpBroker.open(url)).rejects.toThrow(
      /QTUNE_AMQP_CA: cannot read ".*missing\.pem"/,
    );
  });
});
