import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import type { Consumer } from '../../../src/broker/contract.js';
import type { MemoryBroker } from '../../../src/broker/memory/index.js';
import { Requester, serveRequests } from '../../../src/patterns/request-reply.js';
import { DecodeError, ErrorCode, TaskError } from '../../../src/protocol/errors.js';
import type { TrialReport, TrialTask } from '../../../src/protocol/trial.js';
import { trialHandler, type TrialRun } from '../../../src/worker/trial/trial-handler.js';
import { execTrialRun, fillCommand, httpTrialRun } from '../../../src/worker/trial/runners.js';
import { fakeContext, memoryBroker } from '../helpers.js';

const open: {
  brokers: MemoryBroker[];
  requesters: Requester[];
  consumers: Consumer[];
  servers: Server[];
} = {
  brokers: [],
  requesters: [],
  consumers: [],
  servers: [],
};
const cleanups: (() => void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0)) c();
  for (const c of open.consumers.splice(0)) await c.cancel();
  for (const r of open.requesters.splice(0)) await r.close();
  for (const b of open.brokers.splice(0)) await b.close();
  for (const s of open.servers.splice(0)) await new Promise((r) => s.close(r));
});

function task(overrides: Partial<TrialTask> = {}): TrialTask {
  return {
    experiment: 'e',
    trial: 3,
    params: { x: 2, opt: 'adam' },
    metric: 'loss',
    reportTo: 'e.reports',
    ...overrides,
  };
}

/** A scheduler stand-in on a memory broker: records reports and answers with `decide`. */
async function scheduler(
  decide: (r: TrialReport) => string,
): Promise<{ requester: Requester; reports: TrialReport[] }> {
  const broker = memoryBroker();
  open.brokers.push(broker);
  const reports: TrialReport[] = [];
  open.consumers.push(
    await serveRequests<TrialReport>(broker, 'e.reports', (r) => {
      reports.push(r);
      return { decision: decide(r) };
    }),
  );
  const requester = await Requester.create(broker);
  open.requesters.push(requester);
  return { requester, reports };
}

describe('trialHandler', () => {
  it('completes with the objective value and keeps the other metrics', async () => {
    const handler = trialHandler(async (trial) => ({
      loss: (trial.params.x as number) * 2,
      acc: 0.9,
    }));
    expect(await handler(task(), fakeContext())).toEqual({
      state: 'complete',
      value: 4,
      metrics: { loss: 4, acc: 0.9 },
    });
    const bare = trialHandler(async () => 1.5);
    expect(await bare(task(), fakeContext())).toEqual({ state: 'complete', value: 1.5 });
  });

  it('gives the trial the GPU its task holds, and none on a worker without GPU slots', async () => {
    const gpu = { index: 2, name: 'NVIDIA A100-SXM4-40GB', uuid: 'GPU-0a1b2c3d-2222' };
    const seen: unknown[] = [];
    const handler = trialHandler(async (trial) => {
      seen.push(trial.gpu);
      return 1;
    });
    await handler(task(), fakeContext({ gpu }));
    await handler(task(), fakeContext());
    expect(seen).toEqual([gpu, undefined]);
  });

  it('sends reports to the scheduler and stops the trial when told to prune', async () => {
    const { requester, reports } = await scheduler((r) => (r.step >= 2 ? 'prune' : 'continue'));
    let aborted = false;
    const run: TrialRun = async (trial) => {
      trial.signal.addEventListener('abort', () => (aborted = true));
      for (let step = 1; step <= 5; step++) {
        if (await trial.report(step, { loss: 10 - step, lr: 0.1 })) return { loss: 10 - step };
      }
      return { loss: 0 };
    };
    const outcome = await trialHandler(run, { requester })(task(), fakeContext());
    expect(outcome).toEqual({ state: 'pruned', step: 2, value: 8 });
    expect(aborted).toBe(true);
    expect(reports.map((r) => [r.trial, r.step, r.value])).toEqual([
      [3, 1, 9],
      [3, 2, 8],
    ]);
    expect(reports[0]!.metrics).toEqual({ loss: 9, lr: 0.1 });
  });

  it('goes on when the scheduler does not answer in time', async () => {
    const broker = memoryBroker();
    open.brokers.push(broker);
    const requester = await Requester.create(broker);
    open.requesters.push(requester);
    await broker.declareQueue('e.reports');
    const handler = trialHandler(
      async (trial) => {
        expect(await trial.report(1, 5)).toBe(false);
        return 4;
      },
      { requester, reportTimeoutMs: 50 },
    );
    expect(await handler(task(), fakeContext())).toEqual({ state: 'complete', value: 4 });
  });

  it('fails without retry when a report or the result lacks the metric', async () => {
    const badReport = trialHandler(async (trial) => {
      await trial.report(1, { accuracy: 0.5 });
      return 1;
    });
    const err = await badReport(task(), fakeContext()).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TaskError);
    expect((err as TaskError).retry).toBe(false);
    expect((err as Error).message).toMatch(/report at step 1 has no finite "loss"/);
    const badResult = trialHandler(async () => ({ accuracy: 0.5 }));
    await expect(badResult(task(), fakeContext())).rejects.toThrow(/result has no finite "loss"/);
    const badStep = trialHandler(async (trial) => trial.report(0, 1).then(() => 1));
    await expect(badStep(task(), fakeContext())).rejects.toThrow(
      /step must be an integer ≥ 1, got 0/,
    );
  });

  it('stops a trial over its time budget with TIMEOUT, not retried', async () => {
    const handler = trialHandler(
      (trial) =>
        new Promise((_, reject) =>
          trial.signal.addEventListener('abort', () => reject(new Error('aborted'))),
        ),
    );
    const err = (await handler(task({ budget: { timeoutMs: 50 } }), fakeContext()).catch(
      (e: unknown) => e,
    )) as TaskError;
    expect(err.code).toBe(ErrorCode.Timeout);
    expect(err.retry).toBe(false);
  });

  it('rejects a payload that is not a trial task as undecodable', async () => {
    const handler = trialHandler(async () => 1);
    await expect(handler({ trial: 'x' }, fakeContext())).rejects.toBeInstanceOf(DecodeError);
  });
});

describe('execTrialRun', () => {
  it('fills placeholders, passes params in env, forwards QTUNE_REPORT lines and reads QTUNE_RESULT', async () => {
    const { requester, reports } = await scheduler(() => 'continue');
    const cmd =
      `node -e 'const p = JSON.parse(process.env.QTUNE_PARAMS);` +
      ` console.log("noise"); console.log("QTUNE_REPORT " + JSON.stringify({ step: 1, loss: p.x + Number(process.argv[1]) }));` +
      ` console.log("QTUNE_RESULT " + JSON.stringify({ loss: p.x, opt: process.argv[2], trial: process.env.QTUNE_TRIAL }))' {x} {opt}`;
    const outcome = await trialHandler(execTrialRun(cmd), { requester })(task(), fakeContext());
    expect(outcome).toEqual({
      state: 'complete',
      value: 2,
      metrics: { loss: 2, opt: 'adam', trial: '3' },
    });
    expect(reports.map((r) => [r.step, r.value])).toEqual([[1, 4]]);
  });

  it('kills the command when the trial is pruned and frees the worker at once', async () => {
    const { requester } = await scheduler(() => 'prune');
    const cmd = `node -e 'console.log("QTUNE_REPORT " + JSON.stringify({ step: 1, loss: 7 })); setTimeout(() => {}, 30000)'`;
    const t0 = Date.now();
    const outcome = await trialHandler(execTrialRun(cmd), { requester })(task(), fakeContext());
    expect(outcome).toEqual({ state: 'pruned', step: 1, value: 7 });
    expect(Date.now() - t0).toBeLessThan(10_000);
  });

  it('records a command that printed its QTUNE_RESULT as complete when the prune decision arrives after it', async () => {
    // The scheduler decides to prune only once the command has printed its result (it writes
    // the marker the command waits for), so the decision reaches a trial whose result is in.
    const dir = mkdtempSync(join(tmpdir(), 'qtune-trial-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const marker = join(dir, 'decided');
    const { requester, reports } = await scheduler(() => {
      writeFileSync(marker, 'prune');
      return 'prune';
    });
    const cmd =
      `node -e 'process.stdout.write("QTUNE_REPORT " + JSON.stringify({ step: 1, loss: 7 }) + "\\n" +` +
      ` "QTUNE_RESULT " + JSON.stringify({ loss: 0.5, acc: 0.9 }) + "\\n");` +
      ` const wait = setInterval(() => { if (require("fs").existsSync(process.argv[1])) clearInterval(wait); }, 10)' ${marker}`;
    const outcome = await trialHandler(execTrialRun(cmd), { requester })(task(), fakeContext());
    expect(reports.map((r) => [r.step, r.value])).toEqual([[1, 7]]);
    expect(outcome).toEqual({ state: 'complete', value: 0.5, metrics: { loss: 0.5, acc: 0.9 } });
  });

  it('fails without retry when the command prints no QTUNE_RESULT or a malformed QTUNE_ line', async () => {
    const none = trialHandler(execTrialRun('echo 0.5'));
    await expect(none(task(), fakeContext())).rejects.toThrow(
      /exited 0 without printing a "QTUNE_RESULT <json>" line/,
    );
    const bad = trialHandler(execTrialRun('echo "QTUNE_REPORT {oops"; echo "QTUNE_RESULT 1"'));
    const err = (await bad(task(), fakeContext()).catch((e: unknown) => e)) as TaskError;
    expect(err.message).toMatch(/QTUNE_REPORT line: not JSON: \{oops/);
    expect(err.retry).toBe(false);
    const noStep = trialHandler(
      execTrialRun('echo \'QTUNE_REPORT {"loss": 1}\'; echo "QTUNE_RESULT 1"'),
    );
    await expect(noStep(task(), fakeContext())).rejects.toThrow(/needs a "step" number/);
  });

  it('fails a command that exits non-zero with the end of its stderr, to be retried', async () => {
    const err = (await trialHandler(execTrialRun('echo "CUDA error" >&2; exit 3'))(
      task(),
      fakeContext(),
    ).catch((e: unknown) => e)) as TaskError;
    expect(err.message).toMatch(/exited with code 3: CUDA error/);
    expect(err.retry).not.toBe(false);
  });
});

describe('fillCommand', () => {
  it('shell-quotes values and leaves unknown braces alone', () => {
    expect(
      fillCommand('run {a} {b} {c} ${HOME} {unknown}', { a: 0.001, b: "it's here", c: true }),
    ).toBe(`run 0.001 'it'\\''s here' true \${HOME} {unknown}`);
  });

  it("fills an inactive parameter's placeholder with its default and leaves ${...} to the shell", () => {
    const template = 'run --m {m:-0.9} --n {n:-} --s {s:-a b} {opt} ${m} ${OUT:-/tmp}';
    expect(fillCommand(template, { opt: 'adam' })).toBe(
      "run --m 0.9 --n  --s 'a b' adam ${m} ${OUT:-/tmp}",
    );
    expect(fillCommand(template, { opt: 'sgd', m: 0.5, n: 2, s: 'x' })).toBe(
      'run --m 0.5 --n 2 --s x sgd ${m} ${OUT:-/tmp}',
    );
  });
});

describe('httpTrialRun', () => {
  it('POSTs the trial and reads the metrics from the response', async () => {
    const bodies: unknown[] = [];
    const server = createServer((req, res) => {
      let text = '';
      req.on('data', (c: Buffer) => (text += c.toString()));
      req.on('end', () => {
        const body = JSON.parse(text) as { params: { x: number } };
        bodies.push(body);
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify({ loss: body.params.x * 10 }));
      });
    });
    open.servers.push(server);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/trial`;
    const outcome = await trialHandler(httpTrialRun([url]))(
      task({ budget: { maxSteps: 9 } }),
      fakeContext(),
    );
    expect(outcome).toEqual({ state: 'complete', value: 20, metrics: { loss: 20 } });
    expect(bodies).toEqual([
      { experiment: 'e', trial: 3, params: { x: 2, opt: 'adam' }, maxSteps: 9 },
    ]);
  });
});
