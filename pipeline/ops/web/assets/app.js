// tariff dashboard: plain JavaScript, no build step, no third-party code.
//
// Every number shown comes from the ops server's JSON API, which needs
// the admin token. The token is kept in sessionStorage (gone when the tab
// closes) and sent as a bearer header; it can also be handed over once in
// the address as #...&token=..., which is removed from the address at once.
// Page state (route, filters) lives in the hash, so a view can be linked.
// Text is always set with textContent, never parsed as HTML: model names
// and reasons come from outside lists.
'use strict';

const TOKEN_KEY = 'tariff.adminToken';
const MAX_ROWS = 300;
let refreshTimer = null;
let pricesCache = null; // the last /v1/prices answer, filtered locally

// --- small helpers ---

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function route() {
  const raw = location.hash.replace(/^#/, '');
  const q = raw.indexOf('?');
  const path = (q < 0 ? raw : raw.slice(0, q)).replace(/^\/+/, '') || 'prices';
  const params = new URLSearchParams(q < 0 ? '' : raw.slice(q + 1));
  return { page: path, params };
}

function setParams(params) {
  const { page } = route();
  const qs = params.toString();
  history.replaceState(null, '', '#/' + page + (qs ? '?' + qs : ''));
}

// takeToken moves a token handed over in the address into sessionStorage
// and removes it from the address (and so from the history).
function takeToken() {
  const { params } = route();
  const t = params.get('token');
  if (t) {
    sessionStorage.setItem(TOKEN_KEY, t);
    params.delete('token');
    setParams(params);
  }
}

class AuthError extends Error {}
class ClosedError extends Error {}

async function api(path) {
  const token = sessionStorage.getItem(TOKEN_KEY) || '';
  if (!token) throw new AuthError('The dashboard needs the admin token.');
  const res = await fetch(path, { headers: { Authorization: 'Bearer ' + token }, cache: 'no-store' });
  let body = {};
  try { body = await res.json(); } catch (e) { /* not JSON: keep the status */ }
  if (res.status === 401) throw new AuthError(body.error || 'The admin token was refused.');
  if (res.status === 503) throw new ClosedError(body.error || 'The admin API is closed.');
  if (!res.ok) throw new Error(body.error || (res.status + ' ' + res.statusText));
  return body;
}

const fmtInt = (n) => Number(n).toLocaleString('en-US');
const fmtRate = (n) => (n >= 100 ? Math.round(n).toLocaleString('en-US') : Number(n).toFixed(1));

function fmtTime(s) {
  if (!s || s.startsWith('0001-01-01')) return 'the beginning (all usage)';
  const d = new Date(s);
  return d.toISOString().slice(0, 16).replace('T', ' ') + ' UTC';
}

function fmtDuration(sec) {
  const d = Math.floor(sec / 86400), h = Math.floor(sec % 86400 / 3600), m = Math.floor(sec % 3600 / 60);
  if (d) return d + 'd ' + h + 'h';
  if (h) return h + 'h ' + m + 'm';
  return m + 'm ' + Math.floor(sec % 60) + 's';
}

function price(col, v, unpricedTitle) {
  if (v === '' || v === undefined) {
    return el('td', { class: 'num none', 'data-col': col, title: unpricedTitle || 'no price: such usage is refused, never billed as zero' }, '—');
  }
  return el('td', { class: 'num', 'data-col': col }, v);
}

// --- pages ---

function tokenForm(message) {
  const input = el('input', { type: 'password', id: 'token', name: 'token', autocomplete: 'off', required: true, 'aria-label': 'Admin token' });
  const form = el('form', { class: 'card token', id: 'token-form', onsubmit: (ev) => {
    ev.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, input.value.trim());
    render();
  } },
    el('h1', { text: 'Admin token' }),
    el('p', { class: 'error', text: message }),
    el('p', { class: 'muted', text: 'Paste the token tariff was given (ops.admin_token, by default the environment variable TARIFF_ADMIN_TOKEN). It stays in this tab only.' }),
    el('div', { class: 'row' }, input, el('button', { type: 'submit' }, 'Open dashboard')));
  return form;
}

async function pagePrices(main, params) {
  if (!pricesCache) pricesCache = await api('/v1/prices?limit=0');
  const v = pricesCache;
  if (!v.available) {
    main.append(el('div', { class: 'empty', 'data-state': 'unavailable' }, el('h1', { text: 'Prices' }), el('p', { text: v.reason })));
    return;
  }
  const provider = params.get('provider') || '';
  const q = params.get('q') || '';
  const select = el('select', { id: 'provider', 'aria-label': 'Provider' },
    el('option', { value: '' }, 'All providers (' + fmtInt(v.total) + ')'),
    v.providers.map((p) => el('option', { value: p.name, selected: p.name === provider }, p.name + ' (' + p.models + ')')));
  const search = el('input', { type: 'search', id: 'search', placeholder: 'Search models…', value: q, 'aria-label': 'Search models' });
  const tbody = el('tbody');
  const count = el('p', { class: 'muted', id: 'count' });
  const mk = v.markup;
  const table = el('table', { class: 'data', id: 'prices' },
    el('thead', {},
      el('tr', {}, el('th', { rowspan: 2 }, 'Model'), el('th', { rowspan: 2 }, 'Provider'),
        el('th', { colspan: 3, class: 'group' }, 'Provider price'), el('th', { colspan: 4, class: 'group' }, 'Charge with markup')),
      el('tr', {}, ['Input', 'Output', 'Cached input'].map((h) => el('th', { class: 'num' }, h)),
        el('th', { class: 'num' }, 'Markup'), ['Input', 'Output', 'Cached input'].map((h) => el('th', { class: 'num' }, h)))),
    tbody);

  function fill() {
    const p = select.value, s = search.value.trim().toLowerCase();
    const np = new URLSearchParams();
    if (p) np.set('provider', p);
    if (s) np.set('q', search.value.trim());
    setParams(np);
    const rows = v.models.filter((m) => (!p || m.provider === p) && (!s || m.model.toLowerCase().includes(s)));
    tbody.replaceChildren(...rows.slice(0, MAX_ROWS).map((m) => {
      const why = m.unpriced ? 'no usable price: ' + m.unpriced : undefined;
      return el('tr', { 'data-model': m.model, 'data-provider': m.provider },
        el('td', { class: 'model' }, m.model, m.mode && m.mode !== 'chat' ? el('span', { class: 'tag' }, m.mode) : null),
        el('td', {}, m.provider),
        price('input', m.input, why), price('output', m.output, why), price('cached_input', m.cached_input, why),
        el('td', { class: 'num muted', 'data-col': 'markup' }, m.markup),
        price('input_charge', m.input_charge, why), price('output_charge', m.output_charge, why),
        price('cached_input_charge', m.cached_input_charge, why));
    }));
    count.textContent = rows.length > MAX_ROWS
      ? 'Showing ' + MAX_ROWS + ' of ' + fmtInt(rows.length) + ' matching models: narrow the search to see the rest.'
      : fmtInt(rows.length) + ' of ' + fmtInt(v.total) + ' models.';
  }
  select.addEventListener('change', fill);
  search.addEventListener('input', fill);

  main.append(
    el('h1', { text: 'Token prices' }),
    el('p', { class: 'lead' }, 'USD per 1M tokens, standard tier, below any long-context threshold, as a customer joining now pays them. ',
      'Price version ', el('code', { id: 'price-version' }, v.version.id), ', in force from ', fmtTime(v.version.effective_from),
      '. Markup ', el('strong', { id: 'markup' }, mk), ' (' + v.markup_from + ').'),
    el('div', { class: 'filters' }, select, search),
    count,
    el('div', { class: 'scroll' }, table));
  fill();
}

async function pageChanges(main) {
  const v = await api('/v1/price-changes?limit=10');
  main.append(el('h1', { text: 'Recent price changes' }));
  if (!v.available) {
    main.append(el('div', { class: 'empty', 'data-state': 'unavailable' }, el('p', { text: v.reason })));
    return;
  }
  main.append(el('p', { class: 'lead' }, fmtInt(v.total_versions) + ' price versions recorded; the newest first. A version is never edited: a change records a new one.'));
  for (const ver of v.versions) {
    const s = ver.summary;
    const sec = el('section', { class: 'card version', 'data-version': ver.id },
      el('h2', {}, 'Price version ', el('code', {}, ver.id), ver.in_force ? el('span', { class: 'tag ok' }, 'in force') : null),
      el('p', {}, 'In force from ', el('strong', {}, fmtTime(ver.effective_from)), '; ' + fmtInt(ver.models) + ' models. ',
        ver.previous_id ? ['Replaces ', el('code', {}, ver.previous_id), '.'] : 'The first version recorded.'));
    const ro = el('ul', { class: 'rollout' });
    for (const r of ver.rollout) {
      ro.append(el('li', { 'data-card': r.card || '', 'data-policy': r.policy },
        el('span', { class: 'tag' }, r.policy), r.pinned ? el('span', { class: 'tag' }, 'pinned') : null, ' ', r.applies_to + '.'));
    }
    sec.append(el('h3', { text: 'Rollout' }), ro);
    if (ver.previous_id) {
      sec.append(el('p', { class: 'chips' },
        el('span', { class: 'chip up' }, s.prices_up + ' up'), el('span', { class: 'chip down' }, s.prices_down + ' down'),
        el('span', { class: 'chip' }, s.prices_added + ' prices added'), el('span', { class: 'chip' }, s.prices_removed + ' removed'),
        el('span', { class: 'chip' }, s.models_added + ' models added'), el('span', { class: 'chip' }, s.models_removed + ' models removed')));
      if (ver.changes.length) {
        sec.append(el('div', { class: 'scroll short' }, el('table', { class: 'data changes' },
          el('thead', {}, el('tr', {}, ['Model', 'Provider', 'Unit', 'Per', 'Old', 'New', 'Change'].map((h, i) => el('th', { class: i >= 4 ? 'num' : '' }, h)))),
          el('tbody', {}, ver.changes.map((c) => el('tr', { 'data-model': c.model, 'data-unit': c.unit, 'data-kind': c.kind, 'data-condition': c.condition || '' },
            el('td', { class: 'model' }, c.model), el('td', {}, c.provider),
            el('td', { class: 'unit' }, c.unit, c.tier !== 'standard' ? ' (' + c.tier + ')' : '', c.condition ? el('span', { class: 'muted small' }, ' ' + c.condition) : null),
            el('td', { class: 'muted' }, c.per),
            el('td', { class: 'num', 'data-col': 'old' }, c.old || '—'), el('td', { class: 'num', 'data-col': 'new' }, c.new || '—'),
            el('td', { class: 'num ' + (c.kind === 'price_up' ? 'up' : c.kind === 'price_down' ? 'down' : ''), 'data-col': 'change' },
              c.change_percent ? (c.change_percent.startsWith('-') ? '' : '+') + c.change_percent + '%' : c.kind.replace('price_', ''))))))));
      }
      for (const [list, label] of [['models_added', 'Models added'], ['models_removed', 'Models removed']]) {
        if (ver[list].length) {
          const more = (ver.truncated && ver.truncated[list]) ? ' (and ' + ver.truncated[list] + ' more)' : '';
          sec.append(el('details', {}, el('summary', {}, label + ': ' + ver[list].length + more),
            el('p', { class: 'models' }, ver[list].join(', '))));
        }
      }
    }
    main.append(sec);
  }
}

function sparkline(points) {
  const w = 320, h = 48;
  const svg = document.createElementNS('http://www.w3.org/2000/svg', 'svg');
  svg.setAttribute('viewBox', '0 0 ' + w + ' ' + h);
  svg.setAttribute('class', 'spark');
  svg.setAttribute('role', 'img');
  svg.setAttribute('aria-label', 'messages per second, last ' + points.length + ' samples');
  if (points.length < 2) return svg;
  const top = Math.max(1, ...points);
  const d = points.map((p, i) => (i ? 'L' : 'M') + (i * w / (points.length - 1)).toFixed(1) + ' ' + (h - 2 - p / top * (h - 4)).toFixed(1)).join(' ');
  const path = document.createElementNS('http://www.w3.org/2000/svg', 'path');
  path.setAttribute('d', d);
  svg.append(path);
  return svg;
}

async function pagePipeline(main) {
  const v = await api('/v1/pipeline');
  const c = v.counters;
  const tile = (id, label, value, note) => el('div', { class: 'tile', id: id }, el('div', { class: 'label' }, label), el('div', { class: 'value' }, value), note ? el('div', { class: 'muted small' }, note) : null);
  main.append(el('h1', { text: 'Pipeline health' }),
    el('p', { class: 'lead' }, 'Up ' + fmtDuration(v.uptime_seconds) + ' (since ' + fmtTime(v.started_at) + '). Rates over the last ' + Math.round(v.rates.window_seconds) + 's; totals since start. Refreshed every 5 seconds.'));
  if (!v.available) main.append(el('p', { class: 'notice', text: 'This process runs no pipeline: the counters stay at zero.' }));
  main.append(el('div', { class: 'tiles' },
    tile('t-messages', 'Messages / s', fmtRate(v.rates.messages_per_second), fmtInt(c.messages) + ' in total'),
    tile('t-rated', 'Events rated / s', fmtRate(v.rates.rated_per_second), fmtInt(c.rated) + ' in total'),
    tile('t-dead', 'Dead-lettered', fmtInt(c.dead_lettered), fmtInt(c.unpriced) + ' of them unpriced'),
    tile('t-dup', 'Duplicates ignored', fmtInt(c.duplicates)),
    tile('t-lag', 'Consumer lag', v.lag_reported ? fmtInt(v.total_lag) : 'not reported', v.lag_reported ? 'messages, ' + v.lag.length + ' partitions' : null)));
  main.append(el('section', { class: 'card' }, el('h2', { text: 'Throughput' }), sparkline(v.history.map((p) => p.messages_per_second)),
    el('p', { class: 'muted small', text: 'Messages per second, one point per 5 seconds, up to 15 minutes.' })));
  const lag = el('section', { class: 'card' }, el('h2', { text: 'Lag by partition' }));
  if (!v.lag_reported) lag.append(el('p', { class: 'muted', text: 'This process does not report consumer lag.' }));
  else if (!v.lag.length) lag.append(el('p', { class: 'muted', text: 'No partition is owned by this instance right now.' }));
  else lag.append(el('table', { class: 'data narrow', id: 'lag' }, el('thead', {}, el('tr', {}, el('th', {}, 'Partition'), el('th', { class: 'num' }, 'Lag'))),
    el('tbody', {}, v.lag.map((l) => el('tr', { 'data-partition': l.partition }, el('td', {}, String(l.partition)), el('td', { class: 'num' }, fmtInt(l.lag)))))));
  const checks = el('section', { class: 'card' }, el('h2', { text: 'Readiness' }));
  if (!v.checks.length) checks.append(el('p', { class: 'muted', text: 'Not checked yet.' }));
  checks.append(el('ul', { class: 'checks' }, v.checks.map((k) => el('li', { 'data-check': k.name, class: k.ok ? 'ok' : 'bad' },
    el('span', { class: 'tag ' + (k.ok ? 'ok' : 'bad') }, k.ok ? 'ok' : 'failing'), ' ' + k.name, k.error ? el('span', { class: 'muted' }, ': ' + k.error) : null))));
  const all = el('section', { class: 'card' }, el('h2', { text: 'Counters since start' }),
    el('table', { class: 'data narrow', id: 'counters' }, el('tbody', {}, Object.entries(c).map(([k, n]) => el('tr', { 'data-counter': k }, el('td', {}, k.replace(/_/g, ' ')), el('td', { class: 'num' }, fmtInt(n)))))));
  main.append(el('div', { class: 'grid' }, lag, checks, all));
  refreshTimer = setTimeout(render, 5000);
}

async function pageCustomers(main, params) {
  main.append(el('h1', { text: 'Customers' }));
  const q = params.get('q') || '';
  const v = await api('/v1/customers?limit=200' + (q ? '&q=' + encodeURIComponent(q) : ''));
  if (!v.available) {
    main.append(el('div', { class: 'empty', id: 'customers-empty', 'data-state': 'unavailable' },
      el('h2', { text: 'Balances are not available yet' }),
      el('p', { text: v.reason.charAt(0).toUpperCase() + v.reason.slice(1) + '.' }),
      el('p', { class: 'muted', text: 'This page shows each customer\'s balance, plan and pause state once the balance stage runs. Nothing is shown until then: no figures are estimated.' })));
    return;
  }
  const search = el('input', { type: 'search', id: 'search', placeholder: 'Search customers…', value: q, 'aria-label': 'Search customers' });
  search.addEventListener('change', () => { const np = new URLSearchParams(); if (search.value.trim()) np.set('q', search.value.trim()); setParams(np); render(); });
  main.append(el('div', { class: 'filters' }, search));
  if (!v.customers.length) {
    main.append(el('p', { class: 'empty', text: q ? 'No customer matches.' : 'No customers yet.' }));
    return;
  }
  main.append(el('div', { class: 'scroll' }, el('table', { class: 'data', id: 'customers' },
    el('thead', {}, el('tr', {}, ['Customer', 'Plan', 'Balance', 'Credit limit', 'State', 'Updated'].map((h, i) => el('th', { class: i === 2 || i === 3 ? 'num' : '' }, h)))),
    el('tbody', {}, v.customers.map((c) => el('tr', { 'data-customer': c.id, class: c.paused ? 'paused' : '' },
      el('td', {}, c.id), el('td', {}, c.plan), el('td', { class: 'num', 'data-col': 'balance' }, c.balance + ' ' + c.currency),
      el('td', { class: 'num' }, c.credit_limit ? c.credit_limit + ' ' + c.currency : '—'),
      el('td', { 'data-col': 'state' }, c.paused ? el('span', { class: 'tag bad', title: c.pause_reason || '' }, 'paused') : el('span', { class: 'tag ok' }, 'active'), c.paused && c.pause_reason ? ' ' + c.pause_reason : ''),
      el('td', { class: 'muted' }, fmtTime(c.updated_at))))))));
  if (v.next) main.append(el('p', { class: 'muted', text: 'More customers: narrow the search.' }));
}

const pages = { prices: pagePrices, changes: pageChanges, pipeline: pagePipeline, customers: pageCustomers };

async function render() {
  clearTimeout(refreshTimer);
  takeToken();
  const { page, params } = route();
  const main = document.getElementById('main');
  document.querySelectorAll('#nav a').forEach((a) => a.toggleAttribute('aria-current', a.dataset.page === page));
  document.getElementById('signout').hidden = !sessionStorage.getItem(TOKEN_KEY);
  const fn = pages[page];
  const body = el('div', { id: 'page-' + page, class: 'page' });
  try {
    if (!fn) throw new Error('No page "' + page + '".');
    await fn(body, params);
    document.body.dataset.state = 'ready';
  } catch (e) {
    body.replaceChildren();
    if (e instanceof AuthError) {
      sessionStorage.removeItem(TOKEN_KEY);
      body.append(tokenForm(e.message));
    } else if (e instanceof ClosedError) {
      body.append(el('div', { class: 'empty', 'data-state': 'closed' }, el('h1', { text: 'The dashboard is closed' }), el('p', { text: e.message })));
    } else {
      body.append(el('p', { class: 'error', role: 'alert', text: 'Could not load this page: ' + e.message }));
      if (page === 'pipeline') refreshTimer = setTimeout(render, 5000);
    }
    document.body.dataset.state = 'error';
  }
  if (route().page === page) main.replaceChildren(body);
  document.title = 'tariff · ' + (document.querySelector('#nav a[aria-current]')?.textContent || 'dashboard');
}

window.addEventListener('hashchange', () => { if (route().page !== 'prices') pricesCache = null; render(); });
document.addEventListener('DOMContentLoaded', () => {
  document.getElementById('signout').addEventListener('click', () => { sessionStorage.removeItem(TOKEN_KEY); pricesCache = null; render(); });
  render();
});
