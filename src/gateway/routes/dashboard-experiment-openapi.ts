/** The experiment page's extra endpoints in the gateway's OpenAPI document (see ./dashboard-experiment.ts). */

import { common, err, ok, type Json } from './dashboard-openapi.js';

const path = (name: string, schema: Json = { type: 'string' }): Json => ({
  name,
  in: 'path',
  required: true,
  schema,
});
const query = (name: string, schema: Json, required = false): Json => ({
  name,
  in: 'query',
  ...(required && { required: true }),
  schema,
});
const get = (summary: string, parameters: Json[], extra: Json = {}): Json => ({
  get: {
    summary,
    tags: ['dashboard'],
    parameters,
    responses: { '200': ok(summary), ...extra, ...common },
  },
});
const unknown = { '404': err('no such experiment') };
const bad = { '400': err('a query is missing or invalid (named in the message)') };

/** Paths of the experiment page's extras; every GET is open to any role, `viewer` included. */
export function dashboardExperimentOpenApiPaths(): Record<string, Json> {
  return {
    '/v1/dashboard/experiments': get(
      'every experiment: { experiments: [{ name, status, direction, trials, hosted (its scheduler runs in this gateway), updatedAt }] } (any role)',
      [],
    ),
    '/v1/dashboard/compare': get(
      'best so far by trial number of several experiments: { experiments: [{ name, status, direction, complete, best, points: [[trial, best]] (at most 500) }] } (any role)',
      [query('names', { type: 'string', description: 'at most 8 names, comma-separated' }, true)],
      { ...bad, ...unknown },
    ),
    '/v1/dashboard/experiments/{name}/timeline': get(
      'trials per worker over a window (a Gantt chart): { from, to, total, merged, rows: [{ worker ("host pid N"; null: no worker recorded), trials, lanes, bars }] }; a window of at most 500 trials has one bar per trial ({ number, status, attempt, start, end, lane }), a larger one busy spans per worker ({ start, end, trials, complete, pruned, failed, running, retried }); at most 30 rows (any role)',
      [
        path('name'),
        query('last', {
          type: 'integer',
          minimum: 1,
          description: 'the window covers the last N trials (default: all)',
        }),
        query('from', { type: 'integer', minimum: 0, description: 'window start, ms' }),
        query('to', { type: 'integer', minimum: 0, description: 'window end, ms' }),
      ],
      { ...bad, ...unknown },
    ),
    '/v1/dashboard/experiments/{name}/slice': get(
      'the objective against one param over the complete trials: { params, axis: { param, kind (number | category), log, categories?, min?, max? }, total, points: [{ number, x, value }] (at most 500, the best included) } (any role)',
      [path('name'), query('param', { type: 'string' }, true)],
      { ...bad, ...unknown },
    ),
    '/v1/dashboard/experiments/{name}/contour': get(
      'the mean objective over a grid of two params: { params, x, y (axes as for slice), xEdges?, yEdges? (number axes), z[y][x] (mean or null), n[y][x] (trials), zMin, zMax, total, points: [[x, y, value]] (at most 500) } (any role)',
      [
        path('name'),
        query('x', { type: 'string' }, true),
        query('y', { type: 'string' }, true),
        query('bins', { type: 'integer', minimum: 2, maximum: 50, default: 20 }),
      ],
      { ...bad, ...unknown },
    ),
    '/v1/dashboard/experiments/{name}/trials/{number}': get(
      'one trial: { trial (params, status, value, step, attempt, worker, times, error, metrics), durationMs, reportCount, reports: [{ step, value, at }] (at most 500), logs: null, logsNote } — the store keeps no trial logs (any role)',
      [path('name'), path('number', { type: 'integer', minimum: 0 })],
      {
        '400': err('the trial number is not an integer'),
        '404': err('no such experiment or trial'),
      },
    ),
    '/v1/dashboard/experiments/{name}/scheduler': get(
      'who schedules the experiment: { name, status, hosted (its scheduler runs in this gateway), attached (schedulers attached anywhere: consumers of its reports queue) } (any role)',
      [path('name')],
      unknown,
    ),
    '/v1/dashboard/experiments/{name}/resume': {
      post: {
        summary:
          'runs the experiment\'s scheduler in this gateway, as qtune experiment resume --workers 0: trials go to its queue for workers attached with qtune worker --experiment SPEC; closing the gateway pauses it: { experiment, status: "running", scheduler: "gateway", queue, workers } (admin)',
        tags: ['dashboard'],
        parameters: [path('name')],
        responses: {
          '200': ok('resumed'),
          '404': err('no such experiment'),
          '409': err('done, or a scheduler is already attached to it'),
          '503': err('the gateway is closing'),
          ...common,
        },
      },
    },
  };
}
