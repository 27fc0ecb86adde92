import { Writable } from 'node:stream';
import { pino, type Logger } from 'pino';

export type LogFormat = 'json' | 'text';

const LEVELS: Record<number, string> = {
  10: 'trace',
  20: 'debug',
  30: 'info',
  40: 'warn',
  50: 'error',
  60: 'fatal',
};

/**
 * Creates the CLI logger on stderr: JSON lines (one object per line, pino format) with
 * `--log-format json`, short human lines otherwise.
 */
export function createLogger(format: LogFormat, level = 'info'): Logger {
  if (format === 'json') return pino({ level, base: { pid: process.pid } }, pino.destination(2));
  const human = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString('utf8').split('\n')) {
        if (line === '') continue;
        try {
          const {
            level: lvl,
            msg,
            time: _t,
            pid: _p,
            hostname: _h,
            ...rest
          } = JSON.parse(line) as {
            level: number;
            msg?: string;
            [k: string]: unknown;
          };
          const extra = Object.entries(rest)
            .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
            .join(' ');
          process.stderr.write(`${LEVELS[lvl] ?? lvl} ${msg ?? ''}${extra ? ' ' + extra : ''}\n`);
        } catch {
          process.stderr.write(line + '\n');
        }
      }
      done();
    },
  });
  return pino({ level, base: undefined, timestamp: false }, human);
}
