// qtune dashboard: the experiment page's extras and the compare page, over the documented JSON
// endpoints of src/gateway/routes/dashboard-experiment.ts. app.js hands in its helpers (`ui`):
// experimentExtras() adds a resume button, a timeline of trials per worker, slice and contour
// plots of chosen params and a trial's detail to the experiment page; comparePage() draws the
// best-so-far curves of chosen experiments (#/compare?names=a,b).
import uPlot from '/dashboard/uplot/uPlot.esm.js';

/** The extra plots are read on the first refresh and then every EVERY-th. */
const EVERY = 5;
const STATUS_COLORS = {
  complete: '#2b8a3e',
  pruned: '#e67700',
  failed: '#c4320a',
  running: '#3b5bdb',
  pending: '#868e96',
};

/** Params of an experiment: its space's, else those its plotted trials carry. */
function paramsOf(e) {
  const space = e.spec?.space;
  const names =
    space && typeof space === 'object' && Object.keys(space).length > 0
      ? Object.keys(space)
      : [...new Set(e.parallel.flatMap((t) => Object.keys(t.params)))];
  return names.sort();
}

function fmtTime(ms) {
  return ms ? new Date(ms).toLocaleString('en-GB', { hour12: false }) : '–';
}

/** A color from good (dark blue) to bad (light orange); `f` in 0..1, 1 best. */
function ramp(f) {
  const r = Math.round(250 - 220 * f);
  const g = Math.round(200 - 110 * f);
  const b = Math.round(120 + 100 * f);
  return `rgb(${r}, ${g}, ${b})`;
}

/** Sets a canvas to its parent's width (between `min` and `max` CSS px), with `height`. */
function sizeCanvas(canvas, height, min = 420, max = 1200) {
  const width = Math.max(min, Math.min(max, (canvas.parentElement?.clientWidth ?? min) - 20));
  const dpr = window.devicePixelRatio || 1;
  canvas.style.width = `${width}px`;
  canvas.style.height = `${height}px`;
  canvas.width = Math.round(width * dpr);
  canvas.height = Math.round(height * dpr);
  const ctx = canvas.getContext('2d');
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  return { ctx, width, height };
}

/**
 * Adds the extras to the experiment page built by app.js in `main`; returns { refresh(e) },
 * to call with each answer of GET /v1/dashboard/experiments/NAME.
 */
export function experimentExtras(ui, main, name) {
  const { $, h, api, act, fmt, table } = ui;
  const base = `/v1/dashboard/experiments/${encodeURIComponent(name)}`;
  const state = { polls: 0, params: [], busy: false, trial: undefined, direction: 'minimize' };

  const resume = h(
    'button',
    {
      id: 'resume',
      title: 'run its scheduler in this gateway (workers attach with qtune worker --experiment)',
      onclick: async () => {
        const r = await act(`${base}/resume`, 'resume');
        if (r) {
          $('#resume-note').textContent =
            `its scheduler runs in this gateway; trials go to queue ${r.queue}: ${r.workers}`;
          $('#action-result').textContent = '';
          void loadScheduler();
        }
      },
    },
    'Resume experiment',
  );
  $('#stop').after(' ', resume);
  $('#action-result').after(
    h('p', { class: 'muted' }, 'Scheduler: ', h('span', { id: 'scheduler-state' }, '…')),
    h('p', { id: 'resume-note', class: 'muted' }),
  );
  $('#exp-name').after(
    ' ',
    h(
      'a',
      { href: `#/compare?names=${encodeURIComponent(name)}`, class: 'small', id: 'compare-link' },
      'compare…',
    ),
  );

  const select = (id, onchange) => h('select', { id, onchange });
  const reloadPlots = () => void loadPlots();
  // An answer that arrives after the page changed is dropped: its elements are gone.
  const timelineSection = h(
    'section',
    {},
    h('h2', {}, 'Timeline of trials per worker'),
    h(
      'p',
      { class: 'muted' },
      'window: ',
      h(
        'select',
        { id: 'timeline-last', onchange: () => void loadTimeline() },
        h('option', { value: '' }, 'all trials'),
        h('option', { value: '500' }, 'last 500 trials'),
        h('option', { value: '100' }, 'last 100 trials'),
      ),
      ' ',
      ...Object.entries(STATUS_COLORS)
        .filter(([s]) => s !== 'pending')
        .map(([s, c]) => h('span', { class: 'key', style: `border-color:${c}` }, s)),
      h('span', { class: 'key retried' }, 'retried'),
      ' ',
      h('span', { id: 'timeline-summary' }),
    ),
    h('div', { class: 'canvas-box' }, h('canvas', { id: 'timeline-plot' })),
    h('p', { id: 'timeline-info', class: 'muted' }, 'Click a trial’s bar for its detail.'),
  );
  const alive = () => timelineSection.isConnected;
  $('.plots').after(
    timelineSection,
    h(
      'div',
      { class: 'plots' },
      h(
        'section',
        { class: 'plot' },
        h('h2', {}, 'Slice: value against ', select('slice-param', reloadPlots)),
        h('div', { id: 'slice-plot' }),
        h('p', { id: 'slice-info', class: 'muted' }),
      ),
      h(
        'section',
        { class: 'plot' },
        h(
          'h2',
          {},
          'Contour: mean value over ',
          select('contour-x', reloadPlots),
          ' × ',
          select('contour-y', reloadPlots),
        ),
        h('div', { class: 'canvas-box' }, h('canvas', { id: 'contour-plot' })),
        h('p', { id: 'contour-info', class: 'muted' }),
      ),
    ),
  );
  $('#trials').after(
    h(
      'div',
      { id: 'trial-detail' },
      h('p', { class: 'muted' }, 'Click a trial in the table for its detail.'),
    ),
  );
  // Rows are drawn by app.js; a click on one opens its detail.
  $('#trials').addEventListener('click', (ev) => {
    const tr = ev.target.closest('tr[data-trial]');
    if (tr) void loadTrial(Number(tr.dataset.trial));
  });

  function fillSelect(el, names, chosen) {
    el.replaceChildren(...names.map((n) => h('option', { value: n, selected: n === chosen }, n)));
  }

  async function loadPlots() {
    const p = state.params;
    if (p.length === 0) {
      $('#slice-info').textContent = 'No params.';
      return;
    }
    const sp = $('#slice-param').value || p[0];
    const q = new URLSearchParams({ param: sp });
    const tasks = [api(`${base}/slice?${q}`).then((r) => alive() && drawSlice(r))];
    if (p.length >= 2) {
      const x = $('#contour-x').value || p[0];
      let y = $('#contour-y').value || p[1];
      if (y === x) y = p.find((n) => n !== x);
      tasks.push(
        api(`${base}/contour?${new URLSearchParams({ x, y })}`).then(
          (r) => alive() && drawContour(r),
        ),
      );
    } else {
      $('#contour-info').textContent = 'A contour needs two params.';
    }
    await Promise.all(tasks);
  }

  function drawSlice(r) {
    const el = $('#slice-plot');
    const pts = r.points.slice().sort((a, b) => a.x - b.x || a.number - b.number);
    const cats = r.axis.categories;
    // Categories: their trials spread a little around their place, so they do not hide each other.
    const xs = pts.map((p, i) => (cats ? p.x + (((i * 37) % 11) - 5) / 30 : p.x));
    const order = xs.map((_, i) => i).sort((a, b) => xs[a] - xs[b]);
    const data = [order.map((i) => xs[i]), order.map((i) => pts[i].value)];
    el.dataset.series = '1';
    el.dataset.points = String(pts.length);
    el.dataset.param = r.axis.param;
    ui.plots.get('slice')?.destroy();
    el.replaceChildren();
    const width = Math.max(420, Math.min(600, el.parentElement.clientWidth - 20));
    const u = new uPlot(
      {
        width,
        height: 240,
        scales: {
          x: cats
            ? { time: false, range: [-0.5, cats.length - 0.5] }
            : { time: false, ...(r.axis.log && { distr: 3 }) },
        },
        axes: [
          cats
            ? {
                label: r.axis.param,
                splits: () => cats.map((_, i) => i),
                values: (_u, splits) => splits.map((s) => cats[s] ?? ''),
              }
            : { label: r.axis.param },
          { label: 'value' },
        ],
        series: [
          { label: r.axis.param },
          {
            label: 'value',
            stroke: '#3b5bdb',
            width: 0,
            paths: () => null,
            points: { show: true, size: 5, fill: '#3b5bdb' },
          },
        ],
        legend: { show: false },
      },
      data,
      el,
    );
    ui.plots.set('slice', u);
    $('#slice-info').textContent =
      `${fmt(r.total)} complete trials with ${r.axis.param}` +
      (r.points.length < r.total ? `, ${fmt(r.points.length)} shown` : '') +
      (r.axis.log ? ' (log scale)' : '');
  }

  function drawContour(r) {
    const canvas = $('#contour-plot');
    const { ctx, width, height } = sizeCanvas(canvas, 300, 420, 600);
    ctx.clearRect(0, 0, width, height);
    const nx = r.z[0]?.length ?? 0;
    const ny = r.z.length;
    canvas.dataset.x = r.x.param;
    canvas.dataset.y = r.y.param;
    canvas.dataset.cells = String(r.z.flat().filter((v) => v !== null).length);
    canvas.dataset.points = String(r.points.length);
    const left = 70;
    const bottom = 40;
    const top = 10;
    const right = 95;
    const pw = width - left - right;
    const ph = height - top - bottom;
    // Place of a value on an axis as a fraction of the plot (cells are equal in log space for a log axis).
    const frac = (axis, edges, v) => {
      if (!edges) return (v + 0.5) / axis.categories.length;
      const t = axis.log ? Math.log10(v) : v;
      const lo = edges[0];
      const hi = edges.at(-1);
      return hi > lo ? (t - lo) / (hi - lo) : 0.5;
    };
    const better = (v) => {
      if (r.zMin === null || r.zMax === r.zMin) return 1;
      const f = (v - r.zMin) / (r.zMax - r.zMin);
      return state.direction === 'minimize' ? 1 - f : f;
    };
    for (let yi = 0; yi < ny; yi++) {
      for (let xi = 0; xi < nx; xi++) {
        const v = r.z[yi][xi];
        ctx.fillStyle = v === null ? '#f1f3f5' : ramp(better(v));
        const x0 = left + (xi / nx) * pw;
        const y0 = top + ph - ((yi + 1) / ny) * ph;
        ctx.fillRect(x0, y0, pw / nx + 0.5, ph / ny + 0.5);
      }
    }
    ctx.fillStyle = 'rgba(29, 35, 48, 0.55)';
    for (const [x, y] of r.points) {
      const px = left + frac(r.x, r.xEdges, x) * pw;
      const py = top + ph - frac(r.y, r.yEdges, y) * ph;
      ctx.beginPath();
      ctx.arc(px, py, 1.8, 0, Math.PI * 2);
      ctx.fill();
    }
    ctx.strokeStyle = '#1d2330';
    ctx.strokeRect(left, top, pw, ph);
    ctx.fillStyle = '#1d2330';
    ctx.font = '11px system-ui, sans-serif';
    // Ticks: each category, or the ends and middle of a number axis.
    const ticks = (axis, edges) => {
      if (!edges) return axis.categories.map((c, i) => [(i + 0.5) / axis.categories.length, c]);
      const lo = edges[0];
      const hi = edges.at(-1);
      return [0, 0.5, 1].map((f) => {
        const t = lo + f * (hi - lo);
        return [f, fmt(axis.log ? 10 ** t : t, 3)];
      });
    };
    ctx.textAlign = 'center';
    for (const [f, label] of ticks(r.x, r.xEdges))
      ctx.fillText(label, left + f * pw, top + ph + 14);
    ctx.fillText(`${r.x.param}${r.x.log ? ' (log)' : ''}`, left + pw / 2, height - 6);
    ctx.textAlign = 'right';
    for (const [f, label] of ticks(r.y, r.yEdges))
      ctx.fillText(label, left - 4, top + ph - f * ph + 4);
    ctx.save();
    ctx.translate(12, top + ph / 2);
    ctx.rotate(-Math.PI / 2);
    ctx.textAlign = 'center';
    ctx.fillText(`${r.y.param}${r.y.log ? ' (log)' : ''}`, 0, 0);
    ctx.restore();
    // Color key: best at the top.
    if (r.zMin !== null) {
      const kx = width - right + 14;
      for (let i = 0; i < ph; i++) {
        ctx.fillStyle = ramp(1 - i / ph);
        ctx.fillRect(kx, top + i, 12, 1);
      }
      ctx.fillStyle = '#1d2330';
      ctx.textAlign = 'left';
      const best = state.direction === 'minimize' ? r.zMin : r.zMax;
      const worst = state.direction === 'minimize' ? r.zMax : r.zMin;
      ctx.fillText(fmt(best, 3), kx + 14, top + 8);
      ctx.fillText(fmt(worst, 3), kx + 14, top + ph);
    }
    $('#contour-info').textContent =
      `${fmt(r.total)} complete trials; each cell the mean value of its trials (grey: none), darker is better` +
      (r.points.length < r.total ? `; ${fmt(r.points.length)} trials shown as dots` : '');
  }

  /** Who schedules the experiment: this gateway, a process elsewhere, or nobody. */
  async function loadScheduler() {
    const r = await api(`${base}/scheduler`);
    if (!alive()) return;
    const el = $('#scheduler-state');
    el.dataset.hosted = String(r.hosted);
    el.dataset.attached = String(r.attached);
    el.textContent = r.hosted
      ? 'runs in this gateway (resumed here); workers attach with qtune worker --experiment SPEC'
      : r.attached > 0
        ? `attached in another process (${r.attached})`
        : r.status === 'done'
          ? 'none (the experiment is done)'
          : 'none attached: no new trials until it is resumed';
  }

  let timelineHits = [];
  async function loadTimeline() {
    const last = $('#timeline-last').value;
    const r = await api(`${base}/timeline${last ? `?last=${last}` : ''}`);
    if (alive()) drawTimeline(r);
  }

  function drawTimeline(r) {
    const canvas = $('#timeline-plot');
    const lanes = r.rows.reduce((n, row) => n + row.lanes, 0);
    const laneH = Math.max(4, Math.min(18, Math.floor(360 / Math.max(1, lanes))));
    const top = 6;
    const bottom = 24;
    const left = 150;
    const height = top + bottom + Math.max(1, lanes) * laneH + r.rows.length * 4;
    const { ctx, width } = sizeCanvas(canvas, height, 600, 1400);
    ctx.clearRect(0, 0, width, height);
    const pw = width - left - 10;
    const span = Math.max(1, r.to - r.from);
    const xOf = (t) => left + ((Math.min(Math.max(t, r.from), r.to) - r.from) / span) * pw;
    canvas.dataset.rows = String(r.rows.length);
    canvas.dataset.bars = String(r.rows.reduce((n, row) => n + row.bars.length, 0));
    canvas.dataset.trials = String(r.total);
    canvas.dataset.merged = String(r.merged);
    timelineHits = [];
    let y = top;
    ctx.font = '11px system-ui, sans-serif';
    for (const row of r.rows) {
      const rowH = row.lanes * laneH;
      ctx.fillStyle = '#1d2330';
      ctx.textAlign = 'right';
      const label = row.worker ?? 'no worker recorded';
      ctx.fillText(
        label.length > 24 ? `${label.slice(0, 23)}…` : label,
        left - 6,
        y + rowH / 2 + 4,
      );
      ctx.strokeStyle = '#e4e7ec';
      ctx.beginPath();
      ctx.moveTo(left, y + rowH + 2);
      ctx.lineTo(left + pw, y + rowH + 2);
      ctx.stroke();
      for (const b of row.bars) {
        const x0 = xOf(b.start);
        const w = Math.max(1.5, xOf(b.end) - x0);
        const by = y + (b.lane ?? 0) * laneH + 1;
        const bh = laneH - 2;
        if ('number' in b) {
          ctx.fillStyle = STATUS_COLORS[b.status] ?? '#868e96';
          ctx.fillRect(x0, by, w, bh);
          if (b.attempt > 1) {
            ctx.strokeStyle = '#1d2330';
            ctx.setLineDash([2, 2]);
            ctx.strokeRect(x0 + 0.5, by + 0.5, w - 1, bh - 1);
            ctx.setLineDash([]);
          }
        } else {
          // A span of a merged window: its trials' statuses stacked by share, retries as a tick.
          let sy = by;
          for (const s of ['complete', 'pruned', 'failed', 'running']) {
            if (!b[s]) continue;
            const sh = (b[s] / b.trials) * bh;
            ctx.fillStyle = STATUS_COLORS[s];
            ctx.fillRect(x0, sy, w, sh);
            sy += sh;
          }
          if (b.retried > 0) {
            ctx.fillStyle = '#1d2330';
            ctx.fillRect(x0, by + bh - 2, Math.max(1, w / 3), 2);
          }
        }
        timelineHits.push({ x0, x1: x0 + w, y0: by, y1: by + bh, bar: b, row });
      }
      y += rowH + 4;
    }
    ctx.fillStyle = '#667085';
    ctx.textAlign = 'left';
    ctx.fillText(fmtTime(r.from), left, height - 8);
    ctx.textAlign = 'right';
    ctx.fillText(fmtTime(r.to), left + pw, height - 8);
    $('#timeline-summary').textContent =
      `${fmt(r.total)} trials on ${fmt(r.rows.length)} row${r.rows.length === 1 ? '' : 's'}` +
      (r.merged
        ? ' (merged: each column shows the share of its trials by status; choose a shorter window for one bar per trial)'
        : '');
  }

  const hitAt = (ev) => {
    const rect = ev.target.getBoundingClientRect();
    const x = ev.clientX - rect.left;
    const y = ev.clientY - rect.top;
    return timelineHits.find((hh) => x >= hh.x0 - 1 && x <= hh.x1 + 1 && y >= hh.y0 && y <= hh.y1);
  };
  $('#timeline-plot').addEventListener('mousemove', (ev) => {
    const hit = hitAt(ev);
    const info = $('#timeline-info');
    if (!hit) return;
    const b = hit.bar;
    const who = hit.row.worker ?? 'no worker recorded';
    info.textContent =
      'number' in b
        ? `#${b.number} ${b.status} on ${who}, ${fmt((b.end - b.start) / 1000, 1)} s` +
          (b.attempt > 1 ? `, attempt ${b.attempt}` : '')
        : `${who}: ${b.trials} trials (${b.complete} complete, ${b.pruned} pruned, ${b.failed} failed, ${b.running} running, ${b.retried} retried), ${fmtTime(b.start)} – ${fmtTime(b.end)}`;
  });
  $('#timeline-plot').addEventListener('click', (ev) => {
    const hit = hitAt(ev);
    if (hit && 'number' in hit.bar) void loadTrial(hit.bar.number);
  });

  async function loadTrial(number) {
    const box = $('#trial-detail');
    let r;
    try {
      r = await api(`${base}/trials/${number}`);
    } catch (err) {
      box.replaceChildren(h('p', { class: 'bad' }, err.message));
      return;
    }
    if (!box.isConnected) return;
    state.trial = number;
    const t = r.trial;
    const row = (label, value, attrs = {}) =>
      h('tr', {}, h('th', {}, label), h('td', attrs, value ?? '–'));
    const w = t.worker;
    box.dataset.trial = String(number);
    box.replaceChildren(
      h('h2', {}, `Trial #${t.number}`),
      table(
        ['', ''],
        [
          row('status', t.status, {
            'data-field': 'status',
            class: t.status === 'failed' ? 'bad' : '',
          }),
          row('value', t.value === undefined ? '–' : String(t.value), { 'data-field': 'value' }),
          row('step', fmt(t.step)),
          ...Object.entries(t.params)
            .sort(([a], [b]) => (a < b ? -1 : 1))
            .map(([k, v]) => row(`param ${k}`, String(v), { 'data-param': k, class: 'num-left' })),
          row(
            'worker',
            w
              ? `${w.host} pid ${w.pid}${w.gpus?.length ? `, ${w.gpus.map((g) => g.name).join(', ')}` : ''}`
              : 'not recorded (known from its result)',
            { 'data-field': 'worker' },
          ),
          row(
            'attempt',
            t.attempt === undefined ? '–' : `${t.attempt}${t.attempt > 1 ? ' (retried)' : ''}`,
          ),
          row('created', fmtTime(t.createdAt)),
          row('started', fmtTime(t.startedAt)),
          row('finished', fmtTime(t.finishedAt)),
          row('duration', r.durationMs === null ? '–' : `${fmt(r.durationMs / 1000, 2)} s`, {
            'data-field': 'duration',
          }),
          row('error', t.error ?? '', { class: 'bad', 'data-field': 'error' }),
          row('metrics', t.metrics ? h('pre', {}, JSON.stringify(t.metrics, null, 2)) : '–'),
          row(
            'reports',
            `${fmt(r.reportCount)}${r.reports.length < r.reportCount ? ` (${fmt(r.reports.length)} plotted)` : ''}`,
            { 'data-field': 'reports' },
          ),
          row('logs', r.logsNote, { class: 'muted', 'data-field': 'logs' }),
        ],
        { id: 'trial-table' },
      ),
      h('div', { id: 'trial-reports-plot', class: 'plot' }),
    );
    if (r.reports.length > 0) {
      ui.plot($('#trial-reports-plot'), 'trial-reports', {
        series: [`#${t.number}`],
        data: [r.reports.map((p) => p.step), r.reports.map((p) => p.value)],
        xLabel: 'step',
        yLabel: 'reported value',
      });
    } else {
      $('#trial-reports-plot').replaceChildren(
        h('p', { class: 'muted' }, 'No intermediate reports.'),
      );
      $('#trial-reports-plot').dataset.series = '0';
    }
    box.scrollIntoView?.({ block: 'nearest' });
  }

  return {
    refresh(e) {
      // A refresh of this page that ends after the page changed must not touch the next one.
      if (!alive()) return;
      state.direction = e.direction;
      $('#resume').disabled = e.status === 'done';
      // The most important params first: the default choices of the slice and the contour.
      const all = paramsOf(e);
      const ranked = e.importance.map((r) => r.param).filter((p) => all.includes(p));
      const names = [...ranked, ...all.filter((p) => !ranked.includes(p))];
      if (names.join('\u0000') !== state.params.join('\u0000')) {
        state.params = names;
        fillSelect($('#slice-param'), names, $('#slice-param').value || names[0]);
        fillSelect($('#contour-x'), names, $('#contour-x').value || names[0]);
        fillSelect($('#contour-y'), names, $('#contour-y').value || names[1] || names[0]);
      }
      if (state.polls++ % EVERY !== 0 || state.busy) return;
      state.busy = true;
      // Not awaited: the page's own numbers and plots do not wait for these.
      Promise.all([loadScheduler(), loadTimeline(), loadPlots()])
        .catch((err) => ui.toast(`experiment plots: ${err.message}`, true))
        .finally(() => (state.busy = false));
    },
  };
}

/** The compare page: #/compare?names=a,b (names URI-encoded). Returns { refresh() }. */
export function comparePage(ui, main, hash) {
  const { $, h, api, fmt, table } = ui;
  const query = new URLSearchParams(hash.split('?')[1] ?? '');
  const names = (query.get('names') ?? '')
    .split(',')
    .map((n) => n.trim())
    .filter((n) => n !== '');
  const chosen = new Set(names);
  const go = () => {
    location.hash = `#/compare?names=${[...chosen].map(encodeURIComponent).join(',')}`;
  };
  main.replaceChildren(
    h('h1', {}, 'Compare experiments'),
    h(
      'section',
      {},
      h('h2', {}, 'Best so far by trial'),
      h('div', { id: 'compare-plot', class: 'plot' }),
      h('div', { id: 'compare-table' }),
    ),
    h('section', {}, h('h2', {}, 'Experiments'), h('div', { id: 'compare-choices' })),
  );
  let listed = '';
  return {
    async refresh() {
      const list = await api('/v1/dashboard/experiments');
      const key = list.experiments.map((e) => e.name).join('\u0000');
      if (key !== listed) {
        listed = key;
        $('#compare-choices').replaceChildren(
          list.experiments.length === 0
            ? h('p', { class: 'muted' }, 'No experiments in the store.')
            : h(
                'div',
                { class: 'choices' },
                list.experiments.map((e) =>
                  h(
                    'label',
                    { 'data-choice': e.name },
                    h('input', {
                      type: 'checkbox',
                      checked: chosen.has(e.name),
                      onchange: (ev) => {
                        if (ev.target.checked) chosen.add(e.name);
                        else chosen.delete(e.name);
                        go();
                      },
                    }),
                    ` ${e.name} `,
                    h(
                      'span',
                      { class: 'muted' },
                      `${e.status}, ${fmt(e.trials)} trials, ${e.direction}`,
                    ),
                  ),
                ),
              ),
        );
      }
      if (names.length === 0) {
        $('#compare-plot').replaceChildren(h('p', { class: 'muted' }, 'Choose experiments below.'));
        $('#compare-plot').dataset.series = '0';
        $('#compare-table').replaceChildren();
        return;
      }
      const r = await api(`/v1/dashboard/compare?names=${names.map(encodeURIComponent).join(',')}`);
      // One x axis: the union of trial numbers; a curve has gaps where its experiment has none.
      const xs = [...new Set(r.experiments.flatMap((e) => e.points.map((p) => p[0])))].sort(
        (a, b) => a - b,
      );
      const ys = r.experiments.map((e) => {
        const at = new Map(e.points.map((p) => [p[0], p[1]]));
        return xs.map((x) => (at.has(x) ? at.get(x) : null));
      });
      ui.plot($('#compare-plot'), `compare-${r.experiments.length}`, {
        series: r.experiments.map((e) => `${e.name} (${e.direction})`),
        data: [xs, ...ys],
        xLabel: 'trial',
        yLabel: 'best so far',
      });
      $('#compare-table').replaceChildren(
        table(
          ['experiment', 'status', 'direction', 'complete', 'best'],
          r.experiments.map((e) =>
            h(
              'tr',
              { 'data-experiment': e.name },
              h('td', {}, h('a', { href: `#/experiment/${encodeURIComponent(e.name)}` }, e.name)),
              h('td', {}, e.status),
              h('td', {}, e.direction),
              h('td', { class: 'num', 'data-field': 'complete' }, fmt(e.complete)),
              h(
                'td',
                { class: 'num', 'data-field': 'best' },
                e.best === null ? '–' : String(e.best),
              ),
            ),
          ),
          { id: 'compare-experiments' },
        ),
      );
    },
  };
}
