/** The dashboard's JSON endpoints in the gateway's OpenAPI document (see ./dashboard.ts). */

export type Json = Record<string, unknown>;

const path = (name: string): Json => ({
  name,
  in: 'path',
  required: true,
  schema: { type: 'string' },
});
const query = (name: string, schema: Json): Json => ({ name, in: 'query', schema });
export const ok = (description: string): Json => ({ description });
export const err = (description: string): Json => ({
  description,
  content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } },
});
export const common: Json = {
  '401': err('missing or invalid bearer token'),
  '403': err("the token's role may not call this operation"),
  '429': err('over the rate limit (with Retry-After)'),
};
const get = (summary: string, parameters: Json[], found = true): Json => ({
  get: {
    summary,
    tags: ['dashboard'],
    parameters,
    responses: {
      '200': ok(summary),
      ...(found && { '404': err('no such job or experiment') }),
      ...common,
    },
  },
});
const page = [query('limit', { type: 'integer', minimum: 1, maximum: 200, default: 20 })];

/** Paths of the dashboard's JSON API; every GET is open to any role, `viewer` included. */
export function dashboardOpenApiPaths(): Record<string, Json> {
  return {
    '/v1/dashboard/overview': get(
      'queues (statistics and net rate from the sampler; totals: open and dead-lettered messages of all queues over the last hour, at most 500 points), live workers, jobs with status, experiments with trial counts and best value (any role)',
      [],
      false,
    ),
    '/v1/dashboard/queues/{queue}/series': get(
      "a queue's sampled open and dead-lettered counts over the last hour, at most 500 points (any role)",
      [path('queue')],
      false,
    ),
    '/v1/dashboard/jobs/{name}': get(
      'job status (as GET /v1/jobs/{name}, without workers and cost) with rateSeries: finished items per second over time, at most 30 buckets; kept for a second or more (any role)',
      [path('name')],
    ),
    '/v1/dashboard/jobs/{name}/workers': get(
      "the job's workers (done, failed, rate, GPU) and cost, from every result row: { workers, cost? } (any role)",
      [path('name')],
    ),
    '/v1/dashboard/jobs/{name}/results': get(
      "a page of the job's result rows by id: rows and next (the after of the next page, or null) (any role)",
      [path('name'), query('after', { type: 'string' }), query('ok', { type: 'boolean' }), ...page],
    ),
    '/v1/dashboard/jobs/{name}/items/{id}': get(
      'one item by id: its payload and state, and its result row (value or failure reason, attempt, worker) (any role)',
      [path('name'), path('id')],
    ),
    '/v1/dashboard/jobs/{name}/retry': {
      post: {
        summary:
          "runs the job's failed items again, as qtune job retry-failed: { job, requeued, republished } (producer)",
        tags: ['dashboard'],
        parameters: [path('name')],
        responses: { '200': ok('retried'), '404': err('no such job'), ...common },
      },
    },
    '/v1/dashboard/experiments/{name}': get(
      'experiment with counts, best trial, history (value and best so far per finished trial, at most 500 points) and learning curves of the 10 best and 10 latest trials, importance (main-effect variance share per param) and parallel (params and value of at most 500 complete trials) (any role)',
      [path('name')],
    ),
    '/v1/dashboard/experiments/{name}/trials': get(
      'a page of trials: { total, offset, trials } (any role)',
      [
        path('name'),
        query('offset', { type: 'integer', minimum: 0, default: 0 }),
        ...page,
        query('sort', { enum: ['number', 'value'], default: 'number' }),
        query('order', { enum: ['asc', 'desc'], default: 'asc' }),
        query('status', { enum: ['pending', 'running', 'complete', 'pruned', 'failed'] }),
      ],
    ),
    '/v1/dashboard/experiments/{name}/stop': {
      post: {
        summary:
          'asks the experiment to stop, as qtune experiment stop: { experiment, status: "stopping" } (admin)',
        tags: ['dashboard'],
        parameters: [path('name')],
        responses: {
          '200': ok('stopping'),
          '404': err('no such experiment'),
          '409': err('already done or stopped'),
          ...common,
        },
      },
    },
  };
}
