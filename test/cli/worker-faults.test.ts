import { join } from 'node:path';
import { workerCrashSuite } from '../worker/crash-suite.js';

workerCrashSuite('the embedded broker', async ({ dir }) => {
  const url = join(dir, 'broker.db');
  return { brokerUrl: url, workerArgs: ['--broker', url, '--lease', '1s'] };
});
