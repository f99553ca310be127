// The idgen operator console. Everything shown is read from the HTTP API of
// the origin that served this page, with the bearer token the operator
// entered (sessionStorage only); the page hides what the token's scopes do
// not allow and the API refuses it anyway. No inline code: the page's
// Content-Security-Policy forbids it.
'use strict';

(() => {
  const TOKEN_KEY = 'idgen.token';
  const REFRESH_MS = 3000;
  const SAMPLES = 40;
  const ALL_SCOPES = ['ids:generate', 'ids:read', 'ids:commit', 'ids:compensate', 'ids:admin', 'ops:read'];

  let token = sessionStorage.getItem(TOKEN_KEY) || '';
  let scopes = new Set();
  let timer = 0;
  let lastMetrics = null; // {at, issued, generate: buckets, flush: buckets}
  // The last sample of each instance that answered /metrics, by address:
  // behind a load balancer each refresh may reach another one.
  const perInstance = new Map(); // address → {at, sample, row}
  const STALE_MS = 60000;
  const series = { rate: [], p99: [] };
  let shownID = '';

  const $ = (id) => document.getElementById(id);
  const text = (id, v) => { $(id).textContent = v; };

  // api calls path on this origin with the token; the answer's JSON (or
  // null) and status.
  async function api(method, path, body) {
    const headers = {};
    if (token) headers.Authorization = 'Bearer ' + token;
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    const r = await fetch(path, {
      method, headers, cache: 'no-store', credentials: 'omit',
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const raw = await r.text();
    let json = null;
    try { json = JSON.parse(raw); } catch (_) { /* Prometheus text, or nothing */ }
    if (r.status === 401 && token) {
      signOut('the token was refused (expired or revoked); enter another');
    }
    return { status: r.status, json, raw };
  }

  function errorText(r) {
    const e = r.json && r.json.error;
    return e ? `${r.status} ${e.code}: ${e.message}` : `HTTP ${r.status}`;
  }

  // tokenScopes reads the scope claim of a JWT's payload. It decides what
  // the page shows, never what the caller may do: the API checks the token.
  function tokenScopes(t) {
    try {
      let p = t.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
      p += '='.repeat((4 - (p.length % 4)) % 4);
      const claims = JSON.parse(atob(p));
      return { sub: String(claims.sub || ''), scopes: new Set(String(claims.scope || '').split(/\s+/).filter(Boolean)) };
    } catch (_) {
      return { sub: '', scopes: new Set() };
    }
  }

  function applyScopes() {
    for (const el of document.querySelectorAll('[data-scope]')) {
      el.hidden = !scopes.has(el.dataset.scope);
    }
  }

  function showMain() {
    $('login').hidden = true;
    $('main').hidden = false;
    $('signout').hidden = !token;
    applyScopes();
    refresh();
    clearInterval(timer);
    timer = setInterval(refresh, REFRESH_MS);
  }

  function showLogin(message) {
    clearInterval(timer);
    $('main').hidden = true;
    $('login').hidden = false;
    $('signout').hidden = true;
    text('login-error', message || '');
    text('who', '');
    setStatus('sign in', '');
  }

  function signOut(message) {
    token = '';
    sessionStorage.removeItem(TOKEN_KEY);
    showLogin(typeof message === 'string' ? message : '');
  }

  async function connect() {
    if (token) {
      const t = tokenScopes(token);
      scopes = t.scopes;
      text('who', `${t.sub || 'token'} · ${[...scopes].join(' ') || 'no scopes'}`);
      showMain();
      return;
    }
    // Without a token, an open /instances means development mode.
    const r = await api('GET', '/instances');
    if (r.status === 200) {
      scopes = new Set(ALL_SCOPES);
      text('who', 'development mode: authentication is off');
      showMain();
      return;
    }
    showLogin(r.status === 401 ? '' : `unexpected answer: ${errorText(r)}`);
  }

  function setStatus(label, cls) {
    const b = $('status');
    b.textContent = label;
    b.className = 'badge ' + cls;
  }

  async function refresh() {
    const jobs = [refreshHealth()];
    if (scopes.has('ids:read')) jobs.push(refreshInstances());
    if (scopes.has('ops:read')) jobs.push(refreshMetrics(), refreshLogs());
    await Promise.allSettled(jobs);
  }

  async function refreshHealth() {
    const r = await api('GET', '/health');
    const status = (r.json && r.json.status) || `HTTP ${r.status}`;
    setStatus(status, status === 'ok' ? 'ok' : 'bad');
    const checks = (r.json && r.json.checks) || {};
    text('health', Object.entries(checks).map(([k, v]) => `${k} ${v.status}`).join(', ') || status);
  }

  function uptime(since) {
    let s = Math.max(0, Math.floor((Date.now() - Date.parse(since)) / 1000));
    const parts = [];
    for (const [n, u] of [[86400, 'd'], [3600, 'h'], [60, 'm']]) {
      if (s >= n) { parts.push(Math.floor(s / n) + u); s %= n; }
    }
    parts.push(s + 's');
    return parts.slice(0, 2).join(' ');
  }

  async function refreshInstances() {
    const r = await api('GET', '/instances');
    const body = $('instances');
    body.replaceChildren();
    if (r.status !== 200) {
      const tr = body.insertRow();
      const td = tr.insertCell();
      td.colSpan = 5;
      td.textContent = errorText(r);
      return;
    }
    for (const m of r.json.instances || []) {
      const tr = body.insertRow();
      tr.className = 'instance';
      for (const v of [m.worker, m.shard, m.address, m.version, uptime(m.started_at)]) {
        tr.insertCell().textContent = String(v);
      }
    }
  }

  // parseMetrics reads the Prometheus text format: name → [{labels, value}].
  function parseMetrics(raw) {
    const out = new Map();
    for (const line of raw.split('\n')) {
      if (!line || line[0] === '#') continue;
      const m = line.match(/^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/);
      if (!m) continue;
      const labels = {};
      for (const l of (m[2] || '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = l[2];
      const value = m[3] === '+Inf' ? Infinity : Number(m[3]);
      if (!out.has(m[1])) out.set(m[1], []);
      out.get(m[1]).push({ labels, value });
    }
    return out;
  }

  function sum(ms, name, match) {
    let total = 0;
    let found = false;
    for (const s of ms.get(name) || []) {
      if (match && !Object.entries(match).every(([k, v]) => s.labels[k] === v)) continue;
      total += s.value;
      found = true;
    }
    return found ? total : null;
  }

  // buckets sums a histogram's cumulative buckets by upper bound.
  function buckets(ms, name, match) {
    const by = new Map();
    for (const s of ms.get(name + '_bucket') || []) {
      if (match && !Object.entries(match).every(([k, v]) => s.labels[k] === v)) continue;
      const le = s.labels.le === '+Inf' ? Infinity : Number(s.labels.le);
      by.set(le, (by.get(le) || 0) + s.value);
    }
    return [...by.entries()].sort((a, b) => a[0] - b[0]);
  }

  // quantile of the observations between two bucket snapshots, or since
  // start when there is no earlier one or nothing was observed between
  // them; interpolated within the bucket.
  function quantile(now, before, q) {
    if (before) {
      const v = quantileSince(now, before, q);
      if (v !== null) return v;
    }
    return quantileSince(now, null, q);
  }

  function quantileSince(now, before, q) {
    const prev = new Map(before || []);
    const counts = now.map(([le, c]) => [le, c - (prev.get(le) || 0)]);
    const total = counts.length ? counts[counts.length - 1][1] : 0;
    if (total <= 0) return null;
    const want = q * total;
    let lower = 0;
    let below = 0;
    for (const [le, c] of counts) {
      if (c >= want) {
        if (le === Infinity) return lower;
        return lower + (le - lower) * ((want - below) / Math.max(c - below, 1e-9));
      }
      lower = le;
      below = c;
    }
    return lower;
  }

  const ms = (sec) => (sec === null ? '–' : sec < 0.001 ? (sec * 1e6).toFixed(0) + ' µs' : (sec * 1000).toFixed(2) + ' ms');
  const num = (v) => (v === null ? '–' : Math.round(v).toLocaleString('en-US'));

  async function refreshMetrics() {
    const r = await api('GET', '/metrics');
    if (r.status !== 200) {
      text('issued', errorText(r));
      return;
    }
    const m = parseMetrics(r.raw);
    const at = Date.now();
    const info = (m.get('idgen_instance_info') || [])[0];
    const address = info ? info.labels.address : '';
    const issued = sum(m, 'idgen_ids_issued_total');
    const gen = buckets(m, 'idgen_http_request_duration_seconds', { route: '/generate' });
    const flush = buckets(m, 'idgen_registry_flush_seconds');
    // Behind a load balancer another instance may answer each time: rates
    // and windows compare samples of one instance only.
    const before = lastMetrics && lastMetrics.address === address ? lastMetrics : null;
    lastMetrics = { at, address, issued, gen, flush };
    text('answered-by', address ? `(answered by ${address})` : '(the instance that answered)');

    text('issued', num(issued));
    let rate = null;
    if (before && issued !== null && at > before.at) rate = Math.max(0, (issued - before.issued) / ((at - before.at) / 1000));
    text('rate', rate === null ? '–' : rate.toFixed(1));
    const p50 = quantile(gen, before && before.gen, 0.5);
    const p99 = quantile(gen, before && before.gen, 0.99);
    text('latency', `${ms(p50)} / ${ms(p99)}`);
    text('headroom', num(sum(m, 'idgen_range_headroom')));
    text('claims', `${num(sum(m, 'idgen_range_claims_total'))} (${num(sum(m, 'idgen_range_claim_errors_total'))})`);
    if (address) {
      const prev = perInstance.get(address);
      const since = prev ? prev.sample : null;
      const r99 = quantile(gen, since && since.gen, 0.99);
      const r50 = quantile(gen, since && since.gen, 0.5);
      let irate = null;
      if (since && issued !== null && at > since.at) irate = Math.max(0, (issued - since.issued) / ((at - since.at) / 1000));
      perInstance.set(address, {
        at, sample: { at, issued, gen },
        row: [address, num(issued), irate === null ? (prev ? prev.row[2] : '–') : irate.toFixed(1), `${ms(r50)} / ${ms(r99)}`,
          num(sum(m, 'idgen_range_headroom')), `${num(sum(m, 'idgen_range_claims_total'))} (${num(sum(m, 'idgen_range_claim_errors_total'))})`],
      });
    }
    drawInstances(at);
    if (rate !== null) push('rate', rate);
    if (p99 !== null) push('p99', p99 * 1000);
    draw('chart-rate', series.rate, 'IDs/s');
    draw('chart-p99', series.p99, 'p99 ms');

    if (info) {
      const l = info.labels;
      const acked = sum(m, 'idgen_registry_replicas_acknowledged');
      const last = acked === null ? '' : acked < 0 ? ', no durable flush yet' : `, last flush acknowledged by ${acked}`;
      const durable = Number(l.wait_replicas || 0) > 0 ? `, durable: WAIT ${l.wait_replicas}${last}` : '';
      text('reg-mode', `${l.mode}${l.engine ? ' (' + l.engine + ')' : ''}${durable}`);
    }
    text('flush', `${ms(quantile(flush, before && before.flush, 0.5))} / ${ms(quantile(flush, before && before.flush, 0.99))}`);
    const bs = sum(m, 'idgen_registry_batch_size_sum');
    const bc = sum(m, 'idgen_registry_batch_size_count');
    text('batch', bc ? (bs / bc).toFixed(1) : '–');
    text('reg-errors', `${num(sum(m, 'idgen_registry_collisions_total'))} / ${num(sum(m, 'idgen_registry_failed'))}`);

    const committed = sum(m, 'idgen_transitions_total', { state: 'committed', outcome: 'applied' });
    const compensated = sum(m, 'idgen_transitions_total', { state: 'compensated', outcome: 'applied' });
    text('saga-issued', num(issued));
    text('saga-committed', num(committed || 0));
    text('saga-compensated', num(compensated || 0));
    text('saga-pending', issued === null ? '–' : num(Math.max(0, issued - (committed || 0) - (compensated || 0))));
    const expiring = sum(m, 'idgen_ids_expiring_soon');
    text('saga-expiring', expiring === null || expiring < 0 ? '–' : expiring >= 1000 ? '≥ 1,000' : num(expiring));
    if (sum(m, 'idgen_compensate_stream_up') === 1) {
      text('stream-lag', `${num(sum(m, 'idgen_compensate_lag'))} / ${num(sum(m, 'idgen_compensate_pending'))}`);
      text('stream-dlq', num(sum(m, 'idgen_compensate_dlq_length')));
    } else {
      const why = m.has('idgen_compensate_stream_up') ? 'stream unreadable' : 'no Redis stream (embedded)';
      text('stream-lag', why);
      text('stream-dlq', why);
    }
  }

  // drawInstances lists the last sample of every instance seen in the
  // last STALE_MS, by address, with its age.
  function drawInstances(now) {
    const body = $('issuance-instances');
    body.replaceChildren();
    for (const [address, e] of [...perInstance.entries()].sort((a, b) => a[0].localeCompare(b[0]))) {
      if (now - e.at > STALE_MS) {
        perInstance.delete(address);
        continue;
      }
      const tr = body.insertRow();
      tr.className = 'issuance';
      for (const v of [...e.row, `${Math.round((now - e.at) / 1000)} s`]) tr.insertCell().textContent = String(v);
    }
  }

  function push(name, v) {
    series[name].push(v);
    if (series[name].length > SAMPLES) series[name].shift();
  }

  // draw renders values as a polyline scaled to the chart's view box.
  function draw(id, values, unit) {
    const svg = $(id);
    const ns = 'http://www.w3.org/2000/svg';
    svg.replaceChildren();
    if (values.length < 2) return;
    const max = Math.max(...values, 1e-9);
    const line = document.createElementNS(ns, 'polyline');
    line.setAttribute('points', values.map((v, i) => `${(i / (values.length - 1)) * 300},${58 - (v / max) * 54}`).join(' '));
    const label = document.createElementNS(ns, 'text');
    label.setAttribute('x', '4');
    label.setAttribute('y', '10');
    label.textContent = `max ${max.toFixed(max < 10 ? 2 : 0)} ${unit}`;
    svg.append(line, label);
  }

  async function refreshLogs() {
    const level = $('log-level').value;
    const r = await api('GET', `/logs?limit=50&level=${encodeURIComponent(level)}`);
    const list = $('logs');
    list.replaceChildren();
    if (r.status !== 200) {
      list.append(Object.assign(document.createElement('li'), { textContent: errorText(r) }));
      return;
    }
    for (const e of (r.json.entries || []).slice().reverse()) {
      const li = document.createElement('li');
      li.className = 'log ' + e.level;
      const extra = ['request_id', 'id', 'error'].filter((k) => e[k]).map((k) => `${k}=${e[k]}`).join(' ');
      li.textContent = `${(e.time || '').slice(11, 23)} ${e.level.toUpperCase()} ${e.logger ? e.logger + ': ' : ''}${e.msg}${extra ? ' · ' + extra : ''}`;
      list.append(li);
    }
  }

  async function lookup(id) {
    const r = await api('GET', '/ids/' + encodeURIComponent(id));
    if (r.status !== 200) {
      $('lookup-result').hidden = true;
      text('lookup-error', errorText(r));
      return;
    }
    shownID = r.json.id;
    text('lookup-error', '');
    const fields = $('lookup-fields');
    fields.replaceChildren();
    for (const k of ['id', 'state', 'timestamp', 'worker', 'shard', 'counter', 'issued_at', 'deadline', 'subject']) {
      if (r.json[k] === undefined || r.json[k] === null) continue;
      fields.append(Object.assign(document.createElement('dt'), { textContent: k }));
      const dd = Object.assign(document.createElement('dd'), { textContent: String(r.json[k]) });
      if (k === 'state') dd.id = 'lookup-state';
      fields.append(dd);
    }
    const hist = $('lookup-history');
    hist.replaceChildren();
    for (const h of r.json.history || []) {
      hist.append(Object.assign(document.createElement('li'), {
        textContent: `${h.state} at ${h.at}${h.actor ? ' by ' + h.actor : ''}${h.reason ? ' (' + h.reason + ')' : ''}`,
      }));
    }
    const pending = r.json.state === 'pending';
    $('commit').disabled = !pending;
    $('compensate').disabled = !pending;
    $('lookup-result').hidden = false;
  }

  async function transition(kind) {
    if (!shownID) return;
    const body = { id: shownID };
    if (kind === 'compensate') body.reason = $('reason').value || 'operator';
    const r = await api('POST', '/' + kind, body);
    text('action-result', r.status === 200 ? `${kind}: ${r.json.state}` : `${kind}: ${errorText(r)}`);
    await lookup(shownID);
  }

  document.addEventListener('DOMContentLoaded', () => {
    $('login-form').addEventListener('submit', (ev) => {
      ev.preventDefault();
      token = $('token').value.trim();
      $('token').value = '';
      if (!token) return;
      sessionStorage.setItem(TOKEN_KEY, token);
      connect();
    });
    $('signout').addEventListener('click', () => signOut(''));
    $('lookup-form').addEventListener('submit', (ev) => {
      ev.preventDefault();
      lookup($('lookup-id').value.trim());
    });
    $('commit').addEventListener('click', () => transition('commit'));
    $('compensate').addEventListener('click', () => transition('compensate'));
    $('log-level').addEventListener('change', refreshLogs);
    connect();
  });
})();
