// The dashboard page: renders each snapshot of /dashboard/events in place (rows are kept and only changed cells
// written, so focus, thumbnails and screen readers are not disturbed once a second), keeps the last minutes of
// history for the sparklines and the job chart, uploads dropped files and retries dead jobs. No framework, no build.
import { el, fmtBytes, fmtMs, fmtTime, fmtUptime, setText, sparkline } from './util.js';

const HISTORY = 120; // points kept per series: two minutes at one snapshot a second
const JOB_STATES = ['queued', 'active', 'retrying', 'completed', 'dead'];
const JOB_LABELS = { retrying: 'failed, retrying', dead: 'dead' };

const $ = (id) => document.getElementById(id);
const series = new Map(); // key → number[]
/** @type {Map<string, {time: number, cpuMs?: number, completed?: number}>} */
const previous = new Map();
let last; // the previous snapshot

function push(key, value) {
  const s = series.get(key) ?? [];
  if (s.length === 0) series.set(key, s);
  s.push(value);
  if (s.length > HISTORY) s.shift();
  return s;
}

/** A rate per second of a counter keyed by process (a restarted process starts over: no rate until its second point). */
function rate(key, value, time) {
  const p = previous.get(key);
  previous.set(key, { time, value });
  if (!p || value < p.value || time <= p.time) return undefined;
  return ((value - p.value) * 1000) / (time - p.time);
}

/** Keeps one row per key in `tbody`, in order; returns the row for each item. */
function rows(tbody, items, key, make) {
  const keep = new Map([...tbody.rows].map((r) => [r.dataset.key, r]));
  const out = items.map((item) => {
    const k = key(item);
    let row = keep.get(k);
    keep.delete(k);
    if (!row) {
      row = make(item);
      row.dataset.key = k;
    }
    return row;
  });
  for (const r of keep.values()) r.remove();
  out.forEach((r, i) => {
    if (tbody.rows[i] !== r) tbody.insertBefore(r, tbody.rows[i] ?? null);
  });
  return out;
}

function cells(row, n) {
  while (row.cells.length < n) row.append(el('td'));
  return [...row.cells];
}

function renderHeader(s) {
  setText($('title'), s.title);
  document.title = `${s.title} · Weft dashboard`;
  const ready = s.slots.filter((x) => x.state === 'ready').length;
  const c = s.cluster;
  let summary = c
    ? `${c.state} · ${ready} of ${s.slots.length} workers ready · supervisor pid ${c.pid}, up ${fmtUptime(c.uptimeMs)}`
    : `one process (pid ${s.slots[0]?.pid}), not supervised`;
  if (s.node) {
    const others = s.nodes?.length ?? 0;
    const lost = s.nodes?.filter((n) => n.state === 'lost').length ?? 0;
    summary += ` · node ${s.node}, ${others} other node${others === 1 ? '' : 's'}${lost ? `, ${lost} lost` : ''}`;
  }
  setText($('summary'), summary);
  const reload = $('reload');
  const r = c?.reload;
  const lr = c?.lastReload;
  reload.hidden = !r && !lr;
  if (r) setText(reload, `Rolling reload under way: ${r.replaced} of ${r.total} slots replaced.`);
  else if (lr)
    setText(
      reload,
      `Last reload ${fmtTime(Date.parse(lr.at))}: ${lr.ok ? `${lr.replaced} workers replaced` : `failed: ${lr.reason}`}.`,
    );
  const warnings = $('warnings');
  warnings.hidden = !s.warnings?.length;
  warnings.replaceChildren(...(s.warnings ?? []).map((w) => el('li', {}, w)));
}

function stateText(slot) {
  const r = slot.replacement;
  if (!r) return slot.state;
  return r.step === 'starting'
    ? `${slot.state}; ${r.why}: new worker ${r.pid ?? ''} starting`
    : `${r.why}: old worker ${r.oldPid ?? ''} draining`;
}

function renderSlots(s) {
  const trs = rows(
    $('slots'),
    s.slots,
    (x) => String(x.index),
    () => el('tr'),
  );
  s.slots.forEach((x, i) => {
    const tr = trs[i];
    tr.dataset.slot = String(x.index);
    tr.dataset.pid = String(x.pid ?? '');
    tr.dataset.state = x.state;
    const [slot, pid, state, up, restarts, rss, cpu, loop, elu, exit] = cells(tr, 10);
    setText(slot, String(x.index));
    setText(pid, x.pid === undefined ? '—' : String(x.pid));
    pid.className = 'pid';
    setText(state, stateText(x));
    state.className = `state state-${x.state}`;
    setText(up, x.pid === undefined ? '—' : fmtUptime(x.uptimeMs));
    setText(restarts, String(x.restarts));
    setText(rss, x.rss === undefined ? '—' : fmtBytes(x.rss));
    const pct = x.cpuMs === undefined ? undefined : rate(`cpu:${x.pid}`, x.cpuMs, s.time);
    setText(cpu, pct === undefined ? '—' : `${(pct / 10).toFixed(1)} %`);
    const lp = push(`loop:${x.index}`, x.loopP99 ?? 0);
    sparkline(loop, lp, {
      min: 10,
      label: 'event-loop delay p99',
      text: x.loopP99 === undefined ? '—' : fmtMs(x.loopP99),
    });
    const eu = push(`elu:${x.index}`, x.elu ?? 0);
    sparkline(elu, eu, {
      max: 1,
      label: 'event-loop utilization',
      text: x.elu === undefined ? '—' : `${Math.round(x.elu * 100)} %`,
    });
    setText(exit, x.error ?? x.lastExit ?? '—');
  });
}

/** The other nodes' processes (a service spanning machines), one row each, from their last heartbeat. */
function renderNodes(s) {
  const nodes = s.nodes ?? [];
  $('other-nodes').hidden = nodes.length === 0;
  const items = nodes.flatMap((n) =>
    (n.slots.length ? n.slots : [{ index: 0, state: n.state }]).map((x) => ({ n, x })),
  );
  const trs = rows(
    $('node-slots'),
    items,
    ({ n, x }) => `${n.name}\n${x.index}`,
    () => el('tr'),
  );
  items.forEach(({ n, x }, i) => {
    const tr = trs[i];
    tr.dataset.node = n.name;
    tr.dataset.slot = String(x.index);
    tr.dataset.pid = String(x.pid ?? '');
    tr.dataset.state = n.state === 'lost' ? 'lost' : x.state;
    const [node, slot, pid, state, up, restarts, rss, cpu, loop, heard] = cells(tr, 10);
    setText(node, n.name);
    setText(slot, String(x.index));
    setText(pid, x.pid === undefined ? '—' : String(x.pid));
    pid.className = 'pid';
    // A node not heard from for three of its intervals: its numbers are old, and it may be down.
    setText(state, n.state === 'lost' ? 'lost (not heard from)' : stateText(x));
    state.className = `state state-${n.state === 'lost' ? 'failed' : x.state}`;
    setText(up, x.pid === undefined || x.uptimeMs === undefined ? '—' : fmtUptime(x.uptimeMs));
    setText(restarts, x.restarts === undefined ? '—' : String(x.restarts));
    setText(rss, x.rss === undefined ? '—' : fmtBytes(x.rss));
    const pct = x.cpuMs === undefined ? undefined : rate(`cpu:${n.name}:${x.pid}`, x.cpuMs, n.at);
    setText(cpu, pct === undefined ? '—' : `${(pct / 10).toFixed(1)} %`);
    setText(loop, x.loopP99 === undefined ? '—' : fmtMs(x.loopP99));
    setText(heard, `${Math.max(0, Math.round((s.time - n.at) / 1000))} s ago`);
  });
}

function renderPools(s) {
  let total = 0;
  const trs = rows(
    $('pools'),
    s.pools,
    (p) => `${p.slot}:${p.name}`,
    () => el('tr'),
  );
  s.pools.forEach((p, i) => {
    const [slot, name, threads, queued, tps, wait, run, failed, crashes, timeouts] = cells(trs[i], 10);
    const r = rate(`pool:${p.pid}:${p.name}`, p.completed + p.failed, s.time);
    total += r ?? 0;
    setText(slot, String(p.slot));
    setText(name, p.name);
    setText(threads, `${p.busy} / ${p.idle}`);
    setText(queued, String(p.queued));
    setText(tps, r === undefined ? '—' : r.toFixed(1));
    setText(wait, fmtMs(p.waitP99));
    setText(run, fmtMs(p.runP99));
    setText(failed, String(p.failed));
    setText(crashes, String(p.crashed));
    setText(timeouts, String(p.timedOut));
  });
  setText(
    $('pools-summary'),
    s.pools.length ? `${total.toFixed(1)} tasks/s across ${s.pools.length} pools` : 'No pool reported.',
  );
}

function renderJobs(s) {
  const j = s.jobs;
  $('jobs').hidden = !j;
  if (!j) return;
  const list = $('job-counts');
  for (const state of [...JOB_STATES, ...Object.keys(j.counts).filter((k) => !JOB_STATES.includes(k))]) {
    const n = j.counts[state] ?? 0;
    let li = list.querySelector(`[data-state="${state}"]`);
    if (!li) {
      li = el('li', { 'data-state': state }, el('span', { class: 'label' }, JOB_LABELS[state] ?? state));
      li.append(el('strong', { class: 'count' }), el('span', { class: 'chart' }));
      list.append(li);
    }
    setText(li.querySelector('.count'), String(n));
    sparkline(li.querySelector('.chart'), push(`jobs:${state}`, n), {
      min: 1,
      label: `${state} jobs`,
      width: 120,
    });
  }
  const done = rate('jobs:done', j.counts.completed ?? 0, s.time);
  const tp = push('jobs:throughput', done ?? 0);
  const avg = tp.slice(-10).reduce((a, b) => a + b, 0) / Math.min(10, tp.length);
  setText($('throughput'), `Throughput: ${avg.toFixed(2)} jobs completed/s (last 10 s)`);
  const auth = j.retry?.auth;
  const trs = rows(
    $('failures'),
    j.failures,
    (f) => String(f.id),
    (f) => failureRow(f, j.retry),
  );
  j.failures.forEach((f, i) => {
    const tr = trs[i];
    tr.dataset.job = String(f.id);
    tr.dataset.at = String(f.at);
    const [, file, error, attempts, at] = [...tr.cells];
    setText(file, `${f.label} (${f.kind})`);
    setText(error, `${f.code ? `${f.code}: ` : ''}${f.error}`);
    setText(attempts, String(f.attempts));
    setText(at, fmtTime(f.at));
  });
  $('no-failures').hidden = j.failures.length > 0;
  if (auth) $('token-form').hidden = false;
}

function renderWebhooks(s) {
  const w = s.webhooks;
  $('webhooks').hidden = !w;
  if (!w) return;
  const list = $('webhook-counts');
  for (const state of [...JOB_STATES, ...Object.keys(w.counts).filter((k) => !JOB_STATES.includes(k))]) {
    let li = list.querySelector(`[data-state="${state}"]`);
    if (!li) {
      const label = state === 'completed' ? 'delivered' : (JOB_LABELS[state] ?? state);
      li = el(
        'li',
        { 'data-state': state },
        el('span', { class: 'label' }, label),
        el('strong', { class: 'count' }),
      );
      list.append(li);
    }
    setText(li.querySelector('.count'), String(w.counts[state] ?? 0));
  }
  const trs = rows(
    $('webhook-failures'),
    w.failures,
    (f) => String(f.id),
    () => el('tr', {}, el('td'), el('td'), el('td', { class: 'error' }), el('td'), el('td'), el('td')),
  );
  w.failures.forEach((f, i) => {
    const tr = trs[i];
    tr.dataset.job = String(f.id);
    const [id, event, error, attempts, state, at] = [...tr.cells];
    setText(id, `#${f.id}`);
    setText(event, f.label);
    setText(error, `${f.code ? `${f.code}: ` : ''}${f.error}`);
    setText(attempts, String(f.attempts));
    setText(state, f.state);
    state.className = `state state-${f.state}`;
    setText(at, fmtTime(f.at));
  });
  $('no-webhook-failures').hidden = w.failures.length > 0;
}

function failureRow(f, retry) {
  const button = el('button', { type: 'button', 'aria-label': `Retry job ${f.id} (${f.label})` }, 'Retry');
  button.disabled = !retry;
  button.addEventListener('click', () => retryJob(f.id, retry, button));
  const error = el('td', { class: 'error' });
  return el('tr', {}, el('td', {}, `#${f.id}`), el('td'), error, el('td'), el('td'), el('td', {}, button));
}

function authHeaders() {
  const token = $('token').value.trim();
  return token ? { authorization: `Bearer ${token}` } : {};
}

async function retryJob(id, retry, button) {
  const status = $('jobs-status');
  button.disabled = true;
  setText(status, `Retrying job ${id}…`);
  try {
    const res = await fetch(retry.path.replace(':id', String(id)), {
      method: 'POST',
      headers: authHeaders(),
    });
    const body = await res.json().catch(() => ({}));
    setText(
      status,
      res.status === 202
        ? `Job ${id} is queued again.`
        : `Job ${id} was not retried: ${body.error?.message ?? res.statusText} (${res.status}).`,
    );
  } catch (err) {
    setText(status, `Job ${id} was not retried: ${err.message}`);
  } finally {
    button.disabled = false;
  }
}

function renderFiles(s) {
  const f = s.files;
  $('files').hidden = !f;
  if (!f) return;
  $('drop').hidden = !f.upload;
  const backends = $('backends');
  backends.hidden = !f.backends?.length;
  backends.replaceChildren(
    ...(f.backends ?? []).map((b) =>
      el(
        'span',
        { class: `backend state-${b.up ? 'ready' : 'failed'}`, 'data-backend': b.name },
        `${b.name} ${b.up ? 'up' : b.state}`,
      ),
    ),
  );
  if (f.upload?.auth) $('token-form').hidden = false;
  const trs = rows(
    $('recent'),
    f.recent,
    (x) => x.id,
    (x) => fileRow(x),
  );
  f.recent.forEach((x, i) => {
    const tr = trs[i];
    tr.dataset.file = x.id;
    tr.dataset.state = x.state;
    const [thumb, , type, size, state, took] = [...tr.cells];
    if (x.thumbnail && !thumb.firstChild) {
      thumb.append(el('img', { src: x.thumbnail, alt: `thumbnail of ${x.name}`, width: '48', height: '48' }));
    }
    setText(type, x.type);
    setText(size, fmtBytes(x.size));
    setText(state, x.state);
    state.className = `state state-${x.state}`;
    setText(took, x.processMs === undefined ? '—' : fmtMs(x.processMs));
  });
  // What each tenant stores, against its quota.
  const tenants = f.tenants ?? [];
  $('tenants').hidden = tenants.length === 0;
  const tenantRows = rows(
    $('tenant-rows'),
    tenants,
    (t) => t.name ?? '',
    () => el('tr', {}, el('td'), el('td'), el('td'), el('td'), el('td')),
  );
  tenants.forEach((t, i) => {
    const tr = tenantRows[i];
    tr.dataset.tenant = t.name ?? '';
    const [name, files, bytes, quota, used] = [...tr.cells];
    setText(name, t.name ?? '(none)');
    setText(files, String(t.files));
    setText(bytes, fmtBytes(t.bytes));
    setText(quota, t.quota === undefined ? '—' : fmtBytes(t.quota));
    setText(used, t.quota ? `${((100 * t.bytes) / t.quota).toFixed(1)}%` : '—');
  });
  // An upload made from this page follows its file until it is processed.
  const byId = new Map(f.recent.map((x) => [x.id, x]));
  for (const li of $('uploads').children) {
    const x = byId.get(li.dataset.file);
    if (x)
      setText(
        li.querySelector('.note'),
        x.processMs === undefined ? x.state : `${x.state} in ${fmtMs(x.processMs)}`,
      );
  }
}

function fileRow(x) {
  const link = el('a', { href: x.url }, x.name);
  return el(
    'tr',
    {},
    el('td', { class: 'thumb' }),
    el('td', {}, link),
    el('td'),
    el('td'),
    el('td'),
    el('td'),
  );
}

function renderEvents(s) {
  if (!s.events) return;
  $('activity').hidden = false;
  const list = $('events');
  for (const e of s.events) {
    const li = el('li', { 'data-type': e.type }, el('time', {}, fmtTime(e.at)), ` ${e.text}`);
    list.prepend(li);
  }
  while (list.children.length > 30) list.lastElementChild.remove();
}

function render(s) {
  renderHeader(s);
  renderSlots(s);
  renderNodes(s);
  renderPools(s);
  renderJobs(s);
  renderWebhooks(s);
  renderFiles(s);
  renderEvents(s);
  setText($('updated'), `Updated ${fmtTime(s.time)}; once a second over server-sent events.`);
  last = s;
}

function connection(state, text) {
  const c = $('connection');
  c.dataset.state = state;
  setText(c, text);
}

function connect() {
  const source = new EventSource('/dashboard/events');
  source.addEventListener('snapshot', (e) => render(JSON.parse(e.data)));
  source.addEventListener('problem', (e) =>
    connection('problem', `Snapshot failed: ${JSON.parse(e.data).message}`),
  );
  source.addEventListener('open', () => connection('live', 'Live'));
  source.addEventListener('error', () => {
    if (source.readyState !== EventSource.CLOSED) return connection('connecting', 'Reconnecting…');
    // The browser gives up on an answer that is not a stream (a 503 while a process drains): try again ourselves.
    connection('connecting', 'Disconnected; reconnecting…');
    setTimeout(connect, 2000);
  });
}

function upload(file) {
  const target = last?.files?.upload;
  if (!target) return;
  const progress = el('progress', { max: '100', value: '0' });
  const note = el('span', { class: 'note' }, 'uploading…');
  const li = el('li', {}, el('span', { class: 'name' }, file.name), progress, note);
  progress.setAttribute('aria-label', `upload of ${file.name}`);
  const list = $('uploads');
  list.prepend(li);
  while (list.children.length > 20) list.lastElementChild.remove();
  const xhr = new XMLHttpRequest();
  xhr.open('POST', `${target.path}?name=${encodeURIComponent(file.name)}`);
  for (const [k, v] of Object.entries(authHeaders())) xhr.setRequestHeader(k, v);
  xhr.upload.addEventListener('progress', (e) => {
    if (e.lengthComputable) progress.value = Math.round((e.loaded / e.total) * 100);
  });
  xhr.addEventListener('load', () => {
    let body = {};
    try {
      body = JSON.parse(xhr.responseText);
    } catch {}
    progress.value = 100;
    li.dataset.status = String(xhr.status);
    if (xhr.status === 201) {
      li.dataset.file = body.id;
      setText(note, `stored (${fmtBytes(body.size)}, ${body.type}); processing…`);
    } else setText(note, `failed: ${body.error?.message ?? xhr.statusText} (${xhr.status})`);
  });
  xhr.addEventListener('error', () => setText(note, 'failed: the connection was lost'));
  xhr.send(file);
}

function setUpUploads() {
  const drop = $('drop');
  const input = $('file-input');
  input.addEventListener('change', () => {
    for (const f of input.files) upload(f);
    input.value = '';
  });
  for (const type of ['dragenter', 'dragover']) {
    drop.addEventListener(type, (e) => {
      e.preventDefault();
      drop.classList.add('over');
    });
  }
  drop.addEventListener('dragleave', () => drop.classList.remove('over'));
  drop.addEventListener('drop', (e) => {
    e.preventDefault();
    drop.classList.remove('over');
    for (const f of e.dataTransfer?.files ?? []) upload(f);
  });
}

function setUpToken() {
  const token = $('token');
  token.value = sessionStorage.getItem('weft-token') ?? '';
  token.addEventListener('input', () => sessionStorage.setItem('weft-token', token.value));
  $('token-form').addEventListener('submit', (e) => e.preventDefault());
}

setUpToken();
setUpUploads();
connect();
