// qtune dashboard: a plain ES module over the gateway's documented JSON API (docs/gateway.md).
// Pages by URL hash: #/ (overview), #/job/NAME, #/experiment/NAME, #/compare?names=A,B (the last
// and the experiment page's extras in experiment.js). The page polls the current
// page's endpoint every POLL_MS; the token (when auth is on) lives in sessionStorage only.
import uPlot from '/dashboard/uplot/uPlot.esm.js';
import { comparePage, experimentExtras } from '/dashboard/experiment.js';

const POLL_MS = 1000;
const TOKEN_KEY = 'qtune.token';
const PAGE = 20;

// --- helpers ------------------------------------------------------------------------------------

const $ = (sel, root = document) => root.querySelector(sel);

/** Creates an element: h('td', { class: 'num' }, 'text', child). */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function fmt(n, digits = 2) {
  if (n === undefined || n === null || Number.isNaN(n)) return '–';
  if (typeof n !== 'number') return String(n);
  if (Number.isInteger(n)) return n.toLocaleString('en-US');
  if (n !== 0 && Math.abs(n) < 0.01) return Number(n).toPrecision(3);
  return Number(n).toLocaleString('en-US', { maximumFractionDigits: digits });
}

function ago(ms) {
  if (!ms) return '–';
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  return s < 60
    ? `${s} s ago`
    : s < 3600
      ? `${Math.round(s / 60)} min ago`
      : `${Math.round(s / 3600)} h ago`;
}

function duration(s) {
  if (s === null || s === undefined) return '–';
  if (s < 60) return `${Math.round(s)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
  return `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min`;
}

function toast(text, error = false) {
  const t = $('#toast');
  t.textContent = text;
  t.className = error ? 'show error' : 'show';
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => (t.className = ''), 6000);
}

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** Calls the gateway's JSON API with the tab's token. */
async function api(path, init = {}) {
  const token = sessionStorage.getItem(TOKEN_KEY);
  const headers = { accept: 'application/json' };
  if (token) headers.authorization = `Bearer ${token}`;
  const res = await fetch(path, { ...init, headers });
  const body = await res.json().catch(() => ({}));
  if (!res.ok) {
    throw new ApiError(
      res.status,
      body.error?.code ?? 'HTTP',
      body.error?.message ?? res.statusText,
    );
  }
  return body;
}

/** An action button's click: calls `path`, shows the answer or the refusal (403 included). */
async function act(path, what) {
  try {
    const r = await api(path, { method: 'POST' });
    toast(`${what}: ${JSON.stringify(r)}`);
    return r;
  } catch (err) {
    toast(`${what} refused (${err.status ?? ''} ${err.code ?? ''}): ${err.message}`, true);
    const out = $('#action-result');
    if (out) out.textContent = `${err.status} ${err.message}`;
    return undefined;
  }
}

// --- plots --------------------------------------------------------------------------------------

const plots = new Map();
const PALETTE = [
  '#3b5bdb',
  '#e8590c',
  '#2b8a3e',
  '#c2255c',
  '#5f3dc4',
  '#0b7285',
  '#e67700',
  '#495057',
];

/** Draws (or updates) a uPlot in `el`; `series` are the y series' labels, `data` [x, ...ys]. */
function plot(el, key, { series, data, xTime = false, xLabel = '', yLabel = '', points = false }) {
  el.dataset.series = String(series.length);
  const width = Math.max(420, Math.min(900, el.parentElement.clientWidth - 20));
  const prev = plots.get(key);
  if (prev && prev.root.isConnected && prev.series.length - 1 === series.length) {
    prev.setData(data);
    return;
  }
  prev?.destroy();
  el.replaceChildren();
  const u = new uPlot(
    {
      width,
      height: 240,
      scales: { x: { time: xTime } },
      axes: [{ label: xLabel }, { label: yLabel }],
      series: [
        { label: xLabel || 'x' },
        ...series.map((label, i) => ({
          label,
          stroke: PALETTE[i % PALETTE.length],
          width: 1.5,
          spanGaps: true,
          points: { show: points },
          ...(points && i === 0 ? { width: 0, points: { show: true, size: 5 } } : {}),
        })),
      ],
    },
    data,
    el,
  );
  plots.set(key, u);
}

// --- pages --------------------------------------------------------------------------------------

let current; // { refresh(): Promise<void> }

function table(headers, rows, attrs = {}) {
  const ths = headers.map((x) => (x instanceof Node ? x : h('th', {}, x)));
  // Headers of number columns align right like their cells.
  [...(rows[0]?.children ?? [])].forEach((td, i) => {
    if (td.classList.contains('num')) ths[i]?.classList.add('num');
  });
  return h('table', attrs, h('thead', {}, h('tr', {}, ths)), h('tbody', {}, rows));
}

function overviewPage(main) {
  main.replaceChildren(
    h('h1', {}, 'Overview'),
    h(
      'section',
      {},
      h('h2', {}, 'Queues'),
      h('div', { id: 'totals-plot', class: 'plot' }),
      h('div', { id: 'queues' }),
    ),
    h('section', {}, h('h2', {}, 'Workers'), h('div', { id: 'workers' })),
    h('section', {}, h('h2', {}, 'Jobs'), h('div', { id: 'jobs' })),
    h('section', {}, h('h2', {}, 'Experiments'), h('div', { id: 'experiments' })),
  );
  return {
    async refresh() {
      const o = await api('/v1/dashboard/overview');
      plot($('#totals-plot'), 'totals', {
        series: ['open (ready + delayed + in flight)', 'dead letters'],
        data: [
          o.totals.map((p) => p.at / 1000),
          o.totals.map((p) => p.open),
          o.totals.map((p) => p.deadLettered),
        ],
        xTime: true,
        yLabel: 'messages, all queues',
      });
      $('#queues').replaceChildren(
        table(
          [
            'queue',
            'ready',
            'in flight',
            'delayed',
            'dead letters',
            'consumers',
            'net /s',
            'paused',
          ].map((x, i) => h('th', { class: i > 0 && i < 7 ? 'num' : undefined }, x)),
          o.queues.map((q) =>
            h(
              'tr',
              { 'data-queue': q.queue },
              h('td', {}, q.queue),
              h('td', { class: 'num', 'data-field': 'ready' }, fmt(q.ready)),
              h('td', { class: 'num', 'data-field': 'inFlight' }, fmt(q.inFlight)),
              h('td', { class: 'num', 'data-field': 'delayed' }, fmt(q.delayed)),
              h(
                'td',
                { class: `num ${q.deadLettered > 0 ? 'bad' : ''}`, 'data-field': 'deadLettered' },
                fmt(q.deadLettered),
              ),
              h('td', { class: 'num' }, fmt(q.consumers)),
              h(
                'td',
                { class: 'num', title: 'change of ready + delayed + in flight per second' },
                fmt(q.growth, 1),
              ),
              h('td', {}, q.paused ? 'paused' : ''),
            ),
          ),
          { id: 'queues-table' },
        ),
      );
      $('#workers').replaceChildren(
        o.workers.length === 0
          ? h('p', { class: 'muted' }, 'No worker answered.')
          : table(
              [
                'host',
                'worker',
                'queue',
                'GPU',
                'in flight',
                'done',
                'failed',
                'rate /s',
                'up since',
              ],
              o.workers
                .slice()
                .sort((a, b) =>
                  a.worker.host + a.worker.id < b.worker.host + b.worker.id ? -1 : 1,
                )
                .map((w) =>
                  h(
                    'tr',
                    { 'data-worker': w.worker.id },
                    h('td', {}, w.worker.host),
                    h('td', {}, w.worker.id),
                    h('td', {}, w.queue),
                    h('td', {}, (w.worker.gpus ?? []).map((g) => g.name).join(', ') || '–'),
                    h('td', { class: 'num' }, fmt(w.inFlight)),
                    h('td', { class: 'num' }, fmt(w.done)),
                    h('td', { class: 'num' }, fmt(w.failed)),
                    h('td', { class: 'num' }, fmt(w.rate, 1)),
                    h('td', {}, ago(w.startedAt)),
                  ),
                ),
            ),
      );
      $('#jobs').replaceChildren(
        o.jobs.length === 0
          ? h('p', { class: 'muted' }, 'No jobs in the store.')
          : table(
              ['job', 'items', 'done', 'failed', 'remaining', 'rate /s', 'ETA'],
              o.jobs.map((j) =>
                h(
                  'tr',
                  { 'data-job': j.name },
                  h('td', {}, h('a', { href: `#/job/${encodeURIComponent(j.name)}` }, j.name)),
                  h('td', { class: 'num', 'data-field': 'items' }, fmt(j.items)),
                  h('td', { class: 'num', 'data-field': 'done' }, fmt(j.done)),
                  h('td', { class: 'num', 'data-field': 'failed' }, fmt(j.failed)),
                  h('td', { class: 'num', 'data-field': 'remaining' }, fmt(j.remaining)),
                  h('td', { class: 'num' }, fmt(j.rate, 1)),
                  h('td', {}, duration(j.etaSeconds)),
                ),
              ),
            ),
      );
      $('#experiments').replaceChildren(
        o.experiments.length === 0
          ? h('p', { class: 'muted' }, 'No experiments in the store.')
          : table(
              ['experiment', 'status', 'trials', 'running', 'complete', 'pruned', 'failed', 'best'],
              o.experiments.map((e) =>
                h(
                  'tr',
                  { 'data-experiment': e.name },
                  h(
                    'td',
                    {},
                    h('a', { href: `#/experiment/${encodeURIComponent(e.name)}` }, e.name),
                  ),
                  h('td', { 'data-field': 'status' }, e.status),
                  h('td', { class: 'num', 'data-field': 'total' }, fmt(e.counts.total)),
                  h('td', { class: 'num' }, fmt(e.counts.running)),
                  h('td', { class: 'num', 'data-field': 'complete' }, fmt(e.counts.complete)),
                  h('td', { class: 'num' }, fmt(e.counts.pruned)),
                  h('td', { class: 'num' }, fmt(e.counts.failed)),
                  h('td', { class: 'num', 'data-field': 'best' }, fmt(e.best, 4)),
                ),
              ),
            ),
      );
    },
  };
}

function stat(label, id) {
  return h('div', { class: 'stat' }, h('span', { class: 'muted' }, label), h('b', { id }, '–'));
}

function jobPage(main, name) {
  const base = `/v1/dashboard/jobs/${encodeURIComponent(name)}`;
  const paging = { after: [''], failedOnly: false };
  main.replaceChildren(
    h('h1', {}, 'Job ', h('span', { id: 'job-name' }, name)),
    h(
      'section',
      {},
      h('div', { class: 'bar' }, h('div', { id: 'progress', style: 'width:0%' })),
      h(
        'div',
        { class: 'grid', style: 'margin-top:8px' },
        stat('items', 'job-items'),
        stat('done', 'job-done'),
        stat('failed', 'job-failed'),
        stat('remaining', 'job-remaining'),
        stat('queued', 'job-queued'),
        stat('in flight', 'job-inflight'),
        stat('dead letters', 'job-dead'),
        stat('rate /s (last min)', 'job-rate'),
        stat('ETA', 'job-eta'),
        stat('cost / 1,000 items', 'job-cost'),
      ),
      h(
        'p',
        {},
        h(
          'button',
          {
            id: 'retry',
            onclick: async () => {
              await act(`${base}/retry`, 'retry failed');
            },
          },
          'Retry failed items',
        ),
        ' ',
        h('span', { id: 'action-result', class: 'bad' }),
      ),
    ),
    h(
      'section',
      {},
      h('h2', {}, 'Finished items per second'),
      h('div', { id: 'rate-plot', class: 'plot' }),
    ),
    h('section', {}, h('h2', {}, 'Workers'), h('div', { id: 'job-workers' })),
    h(
      'section',
      {},
      h('h2', {}, 'Results'),
      h(
        'p',
        {},
        h(
          'label',
          {},
          h('input', {
            type: 'checkbox',
            id: 'failed-only',
            onchange: (e) => {
              paging.failedOnly = e.target.checked;
              paging.after = [''];
              void loadResults();
            },
          }),
          ' failures only',
        ),
        ' ',
        h(
          'button',
          {
            id: 'results-prev',
            onclick: () => {
              if (paging.after.length > 1) paging.after.pop();
              void loadResults();
            },
          },
          '‹ prev',
        ),
        ' ',
        h(
          'button',
          {
            id: 'results-next',
            onclick: () => {
              if (paging.next) paging.after.push(paging.next);
              void loadResults();
            },
          },
          'next ›',
        ),
      ),
      h('div', { id: 'results' }),
    ),
    h(
      'section',
      {},
      h('h2', {}, 'Look up an item by id'),
      h(
        'form',
        {
          id: 'lookup',
          onsubmit: async (e) => {
            e.preventDefault();
            await lookup($('#item-id').value.trim());
          },
        },
        h('input', { id: 'item-id', placeholder: 'item id (its key hash)', size: 50 }),
        ' ',
        h('button', { type: 'submit' }, 'look up'),
      ),
      h('div', { id: 'item' }),
    ),
  );

  async function lookup(id) {
    if (!id) return;
    try {
      const r = await api(`${base}/items/${encodeURIComponent(id)}`);
      const res = r.result;
      $('#item').replaceChildren(
        table(
          ['', ''],
          [
            h(
              'tr',
              {},
              h('th', {}, 'payload'),
              h('td', {}, h('pre', {}, JSON.stringify(r.item?.payload ?? null, null, 2))),
            ),
            h(
              'tr',
              {},
              h('th', {}, 'state'),
              h('td', {}, res ? (res.ok ? 'done' : 'failed') : (r.item?.state ?? '–')),
            ),
            h('tr', {}, h('th', {}, 'attempts'), h('td', {}, res ? fmt(res.attempt) : '–')),
            h(
              'tr',
              {},
              h('th', {}, 'worker'),
              h(
                'td',
                {},
                res ? `${res.host} (${res.workerId})${res.gpu ? `, ${res.gpu}` : ''}` : '–',
              ),
            ),
            h(
              'tr',
              {},
              h('th', {}, res?.ok === false ? 'reason' : 'result'),
              h(
                'td',
                { id: 'item-result' },
                h(
                  'pre',
                  {},
                  res
                    ? res.ok
                      ? JSON.stringify(res.value, null, 2)
                      : `${res.errorCode}: ${res.errorMessage}`
                    : 'no result yet',
                ),
              ),
            ),
          ],
        ),
      );
    } catch (err) {
      $('#item').replaceChildren(h('p', { class: 'bad' }, err.message));
    }
  }

  async function loadResults() {
    const q = new URLSearchParams({ limit: String(PAGE) });
    const after = paging.after.at(-1);
    if (after) q.set('after', after);
    if (paging.failedOnly) q.set('ok', 'false');
    const r = await api(`${base}/results?${q}`);
    paging.next = r.next;
    $('#results').replaceChildren(
      table(
        ['id', 'outcome', 'value or reason', 'worker', 'attempt', 'ms'],
        r.rows.map((row) =>
          h(
            'tr',
            { 'data-result': row.id },
            h(
              'td',
              {},
              h(
                'a',
                {
                  href: '#',
                  onclick: (e) => {
                    e.preventDefault();
                    $('#item-id').value = row.id;
                    void lookup(row.id);
                  },
                },
                row.id.slice(0, 16),
              ),
            ),
            h('td', { class: row.ok ? 'ok' : 'bad' }, row.ok ? 'ok' : 'failed'),
            h(
              'td',
              {},
              row.ok
                ? JSON.stringify(row.value).slice(0, 120)
                : `${row.errorCode}: ${row.errorMessage}`,
            ),
            h('td', {}, row.host),
            h('td', { class: 'num' }, fmt(row.attempt)),
            h('td', { class: 'num' }, fmt(row.durationMs)),
          ),
        ),
        { id: 'results-table' },
      ),
    );
  }

  async function loadWorkers() {
    const r = await api(`${base}/workers`);
    $('#job-cost').textContent = r.cost?.perThousand != null ? fmt(r.cost.perThousand, 4) : '–';
    $('#job-workers').replaceChildren(
      table(
        ['host', 'worker', 'GPU', 'done', 'failed', 'rate /s'],
        r.workers.map((w) =>
          h(
            'tr',
            {},
            h('td', {}, w.host),
            h('td', {}, w.workerId),
            h('td', {}, w.gpu ?? '–'),
            h('td', { class: 'num' }, fmt(w.done)),
            h('td', { class: 'num' }, fmt(w.failed)),
            h('td', { class: 'num' }, fmt(w.rate, 1)),
          ),
        ),
      ),
    );
  }

  let first = true;
  let polls = 0;
  return {
    async refresh() {
      const j = await api(base);
      const set = (id, v) => ($(`#${id}`).textContent = v);
      set('job-items', fmt(j.items));
      set('job-done', fmt(j.done));
      set('job-failed', fmt(j.failed));
      set('job-remaining', fmt(j.remaining));
      set('job-queued', fmt(j.queued));
      set('job-inflight', fmt(j.inFlight));
      set('job-dead', fmt(j.deadLettered));
      set('job-rate', fmt(j.rate, 1));
      set('job-eta', duration(j.etaSeconds));

      $('#progress').style.width = `${j.items ? ((j.done + j.failed) / j.items) * 100 : 0}%`;
      const xs = j.rateSeries.map((p) => p.at / 1000);
      plot($('#rate-plot'), 'job-rate', {
        series: ['items/s'],
        data: [xs, j.rateSeries.map((p) => p.perS)],
        xTime: true,
        yLabel: 'items/s',
      });
      if (first) {
        first = false;
        await loadResults();
      }
      // Per-worker aggregates read every result row: every 5th poll.
      if (polls++ % 5 === 0) loadWorkers().catch(() => undefined);
    },
  };
}

function experimentPage(main, name) {
  const base = `/v1/dashboard/experiments/${encodeURIComponent(name)}`;
  const view = { offset: 0, sort: 'number', order: 'asc' };
  main.replaceChildren(
    h(
      'h1',
      {},
      'Experiment ',
      h('span', { id: 'exp-name' }, name),
      ' ',
      h('span', { id: 'exp-status', class: 'muted' }),
    ),
    h(
      'section',
      {},
      h(
        'div',
        { class: 'grid' },
        stat('trials', 'exp-total'),
        stat('running', 'exp-running'),
        stat('complete', 'exp-complete'),
        stat('pruned', 'exp-pruned'),
        stat('failed', 'exp-failed'),
        stat('best value', 'exp-best'),
        stat('best trial', 'exp-best-trial'),
      ),
      h(
        'p',
        {},
        h(
          'button',
          {
            id: 'stop',
            onclick: async () => {
              await act(`${base}/stop`, 'stop');
            },
          },
          'Stop experiment',
        ),
        ' ',
        h('span', { id: 'action-result', class: 'bad' }),
      ),
    ),
    h(
      'div',
      { class: 'plots' },
      h(
        'section',
        { class: 'plot' },
        h('h2', {}, 'Optimization history'),
        h('div', { id: 'history-plot' }),
      ),
      h(
        'section',
        { class: 'plot' },
        h('h2', {}, 'Intermediate values (best and latest trials)'),
        h('div', { id: 'curves-plot' }),
      ),
      h(
        'section',
        { class: 'plot' },
        h('h2', {}, 'Parameter importance (main-effect share of variance)'),
        h('div', { id: 'importance' }),
      ),
      h(
        'section',
        { class: 'plot' },
        h('h2', {}, 'Parallel coordinates (params and value)'),
        h('canvas', { id: 'parallel-plot', width: 840, height: 260 }),
      ),
    ),
    h(
      'section',
      {},
      h('h2', {}, 'Trials'),
      h(
        'p',
        {},
        h(
          'button',
          {
            id: 'trials-prev',
            onclick: () => {
              view.offset = Math.max(0, view.offset - PAGE);
              void loadTrials();
            },
          },
          '‹ prev',
        ),
        ' ',
        h(
          'button',
          {
            id: 'trials-next',
            onclick: () => {
              if (view.offset + PAGE < view.total) view.offset += PAGE;
              void loadTrials();
            },
          },
          'next ›',
        ),
        ' ',
        h('span', { id: 'trials-page', class: 'muted' }),
      ),
      h('div', { id: 'trials' }),
    ),
  );
  const extras = experimentExtras(ui, main, name);

  const sortBy = (key) => () => {
    view.order = view.sort === key && view.order === 'asc' ? 'desc' : 'asc';
    view.sort = key;
    view.offset = 0;
    void loadTrials();
  };

  async function loadTrials() {
    const q = new URLSearchParams({
      offset: String(view.offset),
      limit: String(PAGE),
      sort: view.sort,
      order: view.order,
    });
    const r = await api(`${base}/trials?${q}`);
    view.total = r.total;
    $('#trials-page').textContent =
      `${r.total ? view.offset + 1 : 0}–${Math.min(view.offset + PAGE, r.total)} of ${r.total}`;
    const keys = [...new Set(r.trials.flatMap((t) => Object.keys(t.params)))].sort();
    const arrow = (k) => (view.sort === k ? (view.order === 'asc' ? ' ▲' : ' ▼') : '');
    $('#trials').replaceChildren(
      table(
        [
          h(
            'th',
            { class: 'sortable num', id: 'sort-number', onclick: sortBy('number') },
            `#${arrow('number')}`,
          ),
          h('th', {}, 'status'),
          h(
            'th',
            { class: 'sortable num', id: 'sort-value', onclick: sortBy('value') },
            `value${arrow('value')}`,
          ),
          h('th', { class: 'num' }, 'step'),
          ...keys.map((k) => h('th', { class: 'num' }, k)),
          h('th', {}, 'worker'),
          h('th', { class: 'num' }, 'seconds'),
          h('th', {}, 'error'),
        ],
        r.trials.map((t) =>
          h(
            'tr',
            { 'data-trial': t.number },
            h('td', { class: 'num' }, t.number),
            h('td', { class: t.status === 'failed' ? 'bad' : '' }, t.status),
            h(
              'td',
              { class: 'num', 'data-field': 'value' },
              t.value === undefined ? '–' : String(t.value),
            ),
            h('td', { class: 'num' }, fmt(t.step)),
            ...keys.map((k) => h('td', { class: 'num' }, fmt(t.params[k], 4))),
            h('td', {}, t.worker?.host ?? '–'),
            h(
              'td',
              { class: 'num' },
              t.finishedAt && t.startedAt ? fmt((t.finishedAt - t.startedAt) / 1000, 1) : '–',
            ),
            h('td', { class: 'bad' }, t.error ?? ''),
          ),
        ),
        { id: 'trials-table' },
      ),
    );
  }

  let first = true;
  return {
    async refresh() {
      const e = await api(base);
      const set = (id, v) => ($(`#${id}`).textContent = v);
      set('exp-status', `${e.status} · ${e.direction}`);
      set('exp-total', fmt(e.counts.total));
      set('exp-running', fmt(e.counts.running));
      set('exp-complete', fmt(e.counts.complete));
      set('exp-pruned', fmt(e.counts.pruned));
      set('exp-failed', fmt(e.counts.failed));
      set('exp-best', e.best ? String(Number(e.best.value.toPrecision(6))) : '–');
      set('exp-best-trial', e.best ? `#${e.best.number}` : '–');
      $('#stop').disabled = e.status === 'done' || e.status === 'stopped';
      plot($('#history-plot'), 'history', {
        series: ['value', 'best so far'],
        data: [
          e.history.map((p) => p.number),
          e.history.map((p) => p.value),
          e.history.map((p) => p.best),
        ],
        xLabel: 'trial',
        points: true,
      });
      // Learning curves share one x axis: the union of their steps, gaps where a trial has none.
      const steps = [...new Set(e.curves.flatMap((c) => c.points.map((p) => p[0])))].sort(
        (a, b) => a - b,
      );
      const ys = e.curves.map((c) => {
        const at = new Map(c.points.map((p) => [p[0], p[1]]));
        return steps.map((s) => (at.has(s) ? at.get(s) : null));
      });
      plot($('#curves-plot'), 'curves', {
        series: e.curves.map((c) => `#${c.number}${c.status === 'pruned' ? ' (pruned)' : ''}`),
        data: [steps, ...ys],
        xLabel: 'step',
      });
      $('#importance').replaceChildren(
        ...e.importance.map((r) =>
          h(
            'div',
            { class: 'imp', 'data-param': r.param },
            h('span', {}, r.param),
            h(
              'div',
              { class: 'bar' },
              h('div', { style: `width:${(r.importance * 100).toFixed(1)}%` }),
            ),
            h('span', { class: 'num' }, `${(r.importance * 100).toFixed(1)} %`),
          ),
        ),
      );
      parallel($('#parallel-plot'), e.parallel, e.direction);
      extras.refresh(e);
      if (first) {
        first = false;
        await loadTrials();
      }
    },
  };
}

/**
 * Parallel coordinates on a canvas: one vertical axis per param (numbers scaled to their range,
 * categories spread evenly) and one for the value; one line per trial, the best in dark blue.
 */
function parallel(canvas, trials, direction) {
  const ctx = canvas.getContext('2d');
  const W = canvas.width;
  const H = canvas.height;
  ctx.clearRect(0, 0, W, H);
  canvas.dataset.lines = String(trials.length);
  if (trials.length === 0) return;
  const names = [...new Set(trials.flatMap((t) => Object.keys(t.params)))].sort();
  const axes = [
    ...names.map((n) => ({ name: n, get: (t) => t.params[n] })),
    { name: 'value', get: (t) => t.value },
  ];
  const scales = axes.map((a) => {
    const vs = trials.map(a.get).filter((v) => v !== undefined);
    if (vs.every((v) => typeof v === 'number')) {
      const lo = Math.min(...vs);
      const hi = Math.max(...vs);
      return (v) => (hi === lo ? 0.5 : (v - lo) / (hi - lo));
    }
    const cats = [...new Set(vs.map(String))].sort();
    return (v) => (cats.length === 1 ? 0.5 : cats.indexOf(String(v)) / (cats.length - 1));
  });
  const pad = 30;
  const x = (i) => pad + (i * (W - 2 * pad)) / Math.max(1, axes.length - 1);
  const y = (f) => H - pad - f * (H - 2 * pad);
  const values = trials.map((t) => t.value);
  const lo = Math.min(...values);
  const hi = Math.max(...values);
  // Better trials drawn last, so they stay on top.
  const goodness = (v) =>
    hi === lo ? 1 : direction === 'minimize' ? (hi - v) / (hi - lo) : (v - lo) / (hi - lo);
  const order = trials.slice().sort((a, b) => goodness(a.value) - goodness(b.value));
  for (const t of order) {
    const g = goodness(t.value);
    ctx.strokeStyle = `rgba(${Math.round(230 - 180 * g)}, ${Math.round(120 - 30 * g)}, ${Math.round(60 + 160 * g)}, ${0.25 + 0.6 * g})`;
    ctx.beginPath();
    axes.forEach((a, i) => {
      const v = a.get(t);
      const py = y(v === undefined ? 0.5 : scales[i](v));
      if (i === 0) ctx.moveTo(x(i), py);
      else ctx.lineTo(x(i), py);
    });
    ctx.stroke();
  }
  ctx.strokeStyle = '#1d2330';
  ctx.fillStyle = '#1d2330';
  ctx.font = '12px system-ui, sans-serif';
  ctx.textAlign = 'center';
  axes.forEach((a, i) => {
    ctx.beginPath();
    ctx.moveTo(x(i), pad);
    ctx.lineTo(x(i), H - pad);
    ctx.stroke();
    ctx.fillText(a.name, x(i), H - 10);
    // Category names next to their place on the axis.
    const vs = trials.map(a.get).filter((v) => v !== undefined);
    if (!vs.every((v) => typeof v === 'number')) {
      ctx.textAlign = 'left';
      for (const c of new Set(vs.map(String))) ctx.fillText(c, x(i) + 4, y(scales[i](c)) + 4);
      ctx.textAlign = 'center';
    }
  });
}

/** What experiment.js draws with. */
const ui = { $, h, api, act, fmt, table, toast, plot, plots };

// --- shell --------------------------------------------------------------------------------------

function route() {
  const main = $('#main');
  $('#toast').className = '';
  const [, kind, name] = /^#\/(job|experiment)\/(.+)$/.exec(location.hash) ?? [];
  for (const p of plots.values()) p.destroy();
  plots.clear();
  if (kind === 'job') current = jobPage(main, decodeURIComponent(name));
  else if (kind === 'experiment') current = experimentPage(main, decodeURIComponent(name));
  else if (location.hash.startsWith('#/compare')) current = comparePage(ui, main, location.hash);
  else current = overviewPage(main);
  void tick();
}

let busy = false;
async function tick() {
  if (busy) return;
  busy = true;
  const page = current;
  try {
    await page.refresh();
    $('#live').textContent = `updated ${new Date().toLocaleTimeString()}`;
    $('#live').classList.remove('bad');
  } catch (err) {
    const hint = err.status === 401 ? ' — paste a token above' : '';
    $('#live').textContent = `${err.message}${hint}`;
    $('#live').classList.add('bad');
  } finally {
    busy = false;
  }
}

$('#token-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const v = $('#token').value.trim();
  if (v) sessionStorage.setItem(TOKEN_KEY, v);
  $('#token').value = '';
  route();
});
$('#forget').addEventListener('click', () => {
  sessionStorage.removeItem(TOKEN_KEY);
  route();
});
window.addEventListener('hashchange', route);
setInterval(() => void tick(), POLL_MS);
route();
