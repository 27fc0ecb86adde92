/**
 * Jobs through the gateway: `POST /v1/jobs/:name/items` adds items with the same domain logic as
 * `qtune job submit` (src/job/submit.ts), so they have status, ETA, cost and export like any job.
 */
import type { Broker } from '../broker/contract.js';
import { itemsFromArray, submitJob } from '../job/submit.js';
import type { Store } from '../store/contract.js';
import type { GatewayJobs } from './context.js';

/**
 * Adds job items to `store` (opened on first use) and publishes their tasks on `broker`. Without
 * key fields, an existing job keeps its own, so re-sent items are not added twice.
 */
export function storeJobs(broker: Broker, store: () => Promise<Store>): GatewayJobs {
  return {
    async addItems(name, items, keyFields) {
      const s = await store();
      const keys = keyFields ?? (await s.jobs.getJob(name))?.keyFields;
      const r = await submitJob({
        broker,
        store: s,
        name,
        items: itemsFromArray(items),
        ...(keys !== undefined && { keyFields: keys }),
      });
      return { job: r.job.name, items: r.items, added: r.added, published: r.published };
    },
  };
}
