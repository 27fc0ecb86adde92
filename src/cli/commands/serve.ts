import { existsSync } from 'node:fs';
import { isIP } from 'node:net';
import { Command, InvalidArgumentError, Option } from 'commander';
import type { Broker } from '../../broker/contract.js';
import { redact } from '../../protocol/redact.js';
import { checkTokens, loadTokenFile, parseTokenList, type TokenEntry } from '../../gateway/auth.js';
import {
  GATEWAY_DEFAULTS,
  createGateway,
  type GatewayJobs,
  type GatewayStatusProviders,
} from '../../gateway/gateway.js';
import { storeJobs } from '../../gateway/jobs.js';
import type { MetricsSources } from '../../gateway/metrics.js';
import { experimentBest } from '../../experiment/best.js';
import { experimentOverview, recordWithCounts } from '../../experiment/status.js';
import { InputError, NotFoundError, toError } from '../../protocol/errors.js';
import { jobStatus } from '../../job/status.js';
import type { Store } from '../../store/contract.js';
import { parseStoreUrl } from '../../store/open.js';
import { action, contextOf, type CommandContext } from '../context.js';
import { connectTimeoutOption, intAtLeast } from '../options.js';

interface ServeOptions {
  port: number;
  host: string;
  tokens?: string;
  bodyLimit: number;
  rateLimit: number;
  pullPrefetch: number;
  /** False with --no-auth. */
  auth: boolean;
  connectTimeout?: number;
}

const SIZE_UNITS: Record<string, number> = {
  '': 1,
  b: 1,
  k: 1024,
  kb: 1000,
  kib: 1024,
  m: 1024 ** 2,
  mb: 1000 ** 2,
  mib: 1024 ** 2,
  g: 1024 ** 3,
  gb: 1000 ** 3,
  gib: 1024 ** 3,
};

/** Parses `1048576`, `512KiB`, `64MiB`, `10MB`, `1GiB` into bytes; commander argument parser. */
export function parseSize(value: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([a-z]*)$/i.exec(value.trim());
  const unit = m ? SIZE_UNITS[m[2]!.toLowerCase()] : undefined;
  if (!m || unit === undefined || Number(m[1]) * unit < 1) {
    throw new InvalidArgumentError(`"${value}" is not a size (e.g. 1048576, 512KiB, 64MiB, 1GiB)`);
  }
  return Math.floor(Number(m[1]) * unit);
}

/** True for a host name or address that only this machine can reach. */
export function isLoopback(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  if (h === 'localhost' || h === '::1') return true;
  return isIP(h) === 4 && h.startsWith('127.');
}

/** Tokens from QTUNE_TOKENS and the --tokens file together. */
function loadTokens(opts: ServeOptions): TokenEntry[] {
  const tokens: TokenEntry[] = [];
  const env = process.env.QTUNE_TOKENS;
  if (env !== undefined && env.trim() !== '') tokens.push(...parseTokenList(env));
  if (opts.tokens !== undefined) tokens.push(...loadTokenFile(opts.tokens));
  checkTokens(tokens);
  return tokens;
}

/**
 * Job and experiment status read from the store, opened on first use. A SQLite store file that
 * does not exist is not created: every lookup answers "unknown" (404).
 */
function storeProviders(
  ctx: CommandContext,
  broker: Broker,
): {
  providers: GatewayStatusProviders;
  jobs: GatewayJobs;
  metrics: MetricsSources;
  /** The store for the dashboard; undefined while a SQLite file does not exist. */
  open: () => Promise<Store | undefined>;
  close: () => Promise<void>;
} {
  let opening: Promise<Store> | undefined;
  const store = async (): Promise<Store | undefined> => {
    if (!opening) {
      const target = parseStoreUrl(ctx.globals.store);
      if (target.kind === 'sqlite' && !existsSync(target.location)) return undefined;
      opening = ctx.openStore();
    }
    return opening;
  };
  return {
    providers: {
      async job(name) {
        const s = await store();
        if (!s || !(await s.jobs.getJob(name))) return undefined;
        return jobStatus(broker, s, name);
      },
      async experiment(name) {
        const s = await store();
        if (!s) return undefined;
        try {
          return recordWithCounts(await experimentOverview(s.experiments, name));
        } catch (err) {
          if (err instanceof NotFoundError) return undefined;
          throw err;
        }
      },
    },
    metrics: {
      async jobs() {
        const s = await store();
        if (!s) return [];
        return Promise.all(
          (await s.jobs.listJobs()).map(async (job) => {
            const [items, results] = await Promise.all([
              s.jobs.jobItemCounts(job.name),
              s.results.resultCounts(job.table),
            ]);
            return {
              job: job.name,
              done: results.ok,
              failed: results.failed,
              pending: Math.max(0, items.total - results.total),
            };
          }),
        );
      },
      async experiments() {
        const s = await store();
        if (!s) return [];
        return Promise.all(
          (await s.experiments.listExperiments()).map(async (exp) => {
            const { total: _total, ...trials } = await s.experiments.counts(exp.name);
            // A spec this version cannot read has no best value rather than failing the scrape.
            const best = (await experimentBest(s.experiments, exp.name).catch(() => undefined))
              ?.best?.value;
            return { experiment: exp.name, trials, ...(best !== undefined && { best }) };
          }),
        );
      },
    },
    // Adding items creates the store if needed, as `qtune job submit` does.
    jobs: storeJobs(broker, () => (opening ??= ctx.openStore())),
    open: store,
    close: async () => {
      const s = await opening?.catch(() => undefined);
      await s?.close();
    },
  };
}

export function serveCommand(): Command {
  return new Command('serve')
    .description(
      'HTTP gateway next to the broker: producers POST tasks, port-less workers pull them (qtune worker --gateway)',
    )
    .addOption(
      new Option('--port <n>', 'TCP port (0: any free port)')
        .argParser(intAtLeast(0))
        .default(8080),
    )
    .option('--host <host>', 'address to listen on', '127.0.0.1')
    .option(
      '--tokens <file>',
      'YAML or JSON file: tokens: [{ name, role, token | sha256, rateLimit? }] (adds to QTUNE_TOKENS)',
    )
    .addOption(
      new Option('--body-limit <size>', 'largest request body, e.g. 64MiB')
        .argParser(parseSize)
        .default(GATEWAY_DEFAULTS.bodyLimit, '64MiB'),
    )
    .addOption(
      new Option('--rate-limit <n>', 'requests per second per token (a token may set its own)')
        .argParser(intAtLeast(1))
        .default(GATEWAY_DEFAULTS.rateLimit),
    )
    .addOption(
      new Option('--pull-prefetch <n>', 'deliveries held per queue for pulling workers')
        .argParser(intAtLeast(1))
        .default(GATEWAY_DEFAULTS.pullPrefetch),
    )
    .option('--no-auth', 'accept requests without a token (only on a loopback --host)')
    .addOption(connectTimeoutOption())
    .addHelpText(
      'after',
      '\nTokens: QTUNE_TOKENS="name:role:token,..." and/or --tokens FILE; roles producer, worker, viewer (read-only: the dashboard), admin.\n' +
        'SIGTERM or SIGINT: stop accepting, finish requests in flight, hand back held deliveries, exit 0.\n' +
        'Exit codes: 0 stopped cleanly, 2 bad input (no tokens, --no-auth off loopback), 3 broker unavailable.',
    )
    .action(
      action(async (opts: ServeOptions, cmd: Command) => {
        const ctx = contextOf(cmd);
        const tokens = loadTokens(opts);
        if (!opts.auth && !isLoopback(opts.host)) {
          throw new InputError(
            `--no-auth is allowed only on a loopback host (127.0.0.1, ::1, localhost), not "${opts.host}"`,
          );
        }
        if (opts.auth && tokens.length === 0) {
          throw new InputError(
            'no tokens: set QTUNE_TOKENS="name:role:token,..." or --tokens FILE (or --no-auth on a loopback host)',
          );
        }
        const broker: Broker = await ctx.openBrokerWaiting(
          opts.connectTimeout === undefined ? {} : { timeoutMs: opts.connectTimeout },
        );
        const store = storeProviders(ctx, broker);
        const app = createGateway({
          broker,
          auth: { tokens, disabled: !opts.auth },
          bodyLimit: opts.bodyLimit,
          rateLimit: opts.rateLimit,
          pullPrefetch: opts.pullPrefetch,
          logger: ctx.logger,
          status: store.providers,
          jobs: store.jobs,
          metrics: store.metrics,
          dashboard: { store: store.open },
        });
        ctx.logger.debug(
          {
            broker: redact(ctx.globals.broker ?? 'embedded default'),
            tokens: tokens.length,
            auth: opts.auth,
            bodyLimit: opts.bodyLimit,
            rateLimit: opts.rateLimit,
            pullPrefetch: opts.pullPrefetch,
          },
          'gateway starting',
        );
        try {
          // The one line naming the address (one per interface on 0.0.0.0 or ::).
          await app.listen({
            host: opts.host,
            port: opts.port,
            listenTextResolver: (address) => `gateway listening on ${address}`,
          });
        } catch (err) {
          await app.close().catch(() => undefined);
          await broker.close();
          throw new InputError(
            `cannot listen on ${opts.host}:${opts.port}: ${toError(err).message}`,
            { cause: err },
          );
        }
        const signal = await new Promise<NodeJS.Signals>((resolve) => {
          const stop = (s: NodeJS.Signals) => {
            process.off('SIGTERM', stop);
            process.off('SIGINT', stop);
            // A second signal exits at once; the broker's leases bring held deliveries back.
            const force = () => process.exit(130);
            process.once('SIGTERM', force);
            process.once('SIGINT', force);
            resolve(s);
          };
          process.on('SIGTERM', stop);
          process.on('SIGINT', stop);
        });
        ctx.logger.info({ signal }, 'gateway stopping: finishing requests in flight');
        // Stops accepting, ends long polls, waits for requests in flight, releases leases.
        await app.close();
        await store.close();
        await broker.close();
        ctx.logger.info('gateway stopped');
      }),
    );
}
