// hasched's console: one page over the REST API, with the API's own rules.
//
// Everything shown comes from the same endpoints the CLI uses, and every
// write goes through the same API (its auth, its same-origin check, its
// audit log): the console has no back door. Job and app names are user
// input, so the DOM is built with textContent only, never from markup, and
// the page's Content-Security-Policy refuses any inline script besides.
'use strict';

(() => {
  // The login token lives in sessionStorage: it goes with the tab, and
  // unlike a cookie the browser never attaches it to a request by itself.
  const TOKEN_KEY = 'hasched.accessToken';
  const REFRESH_MS = 5000;
  const REQUEST_TIMEOUT_MS = 15000;
  // Rows shown per table, and so per-row requests made per refresh.
  const MAX_ROWS = 100;
  const HISTORY_LIMIT = 20;
  // What a log view keeps of a large log: its end.
  const MAX_LOG_CHARS = 1 << 20;

  const $ = (id) => document.getElementById(id);
  const enc = encodeURIComponent;

  class APIError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  // api makes one request with the token, bounded in time, and returns the
  // response's text; a non-2xx answer is an APIError carrying the API's
  // own message.
  async function api(method, path, body, { login = false } = {}) {
    // X-Requested-With keeps the API from answering a 401 with a Basic
    // challenge, which would open the browser's own password dialog.
    const headers = { 'Accept': 'application/json', 'X-Requested-With': 'XMLHttpRequest' };
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (token && !login) headers['accessToken'] = token;
    const init = { method, headers, cache: 'no-store', credentials: 'omit', redirect: 'error' };
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(), REQUEST_TIMEOUT_MS);
    init.signal = ctl.signal;
    try {
      const res = await fetch(path, init);
      const text = await res.text();
      if (res.ok) return text;
      let msg = text;
      try { msg = JSON.parse(text).error || text; } catch (_) { /* not JSON: keep the text */ }
      if (res.status === 401 && !login) needLogin(token ? 'Your session has ended: log in again.' : 'Log in to go on.');
      throw new APIError(res.status, msg);
    } catch (e) {
      if (e instanceof APIError) throw e;
      throw new APIError(0, e.name === 'AbortError' ? 'the request timed out' : 'the server cannot be reached');
    } finally {
      clearTimeout(timer);
    }
  }

  const getJSON = async (path) => JSON.parse(await api('GET', path));

  // el makes an element with text children only.
  function el(tag, text, className) {
    const e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (className) e.className = className;
    return e;
  }

  function button(label, onClick, className) {
    const b = el('button', label, className);
    b.type = 'button';
    b.addEventListener('click', onClick);
    return b;
  }

  // row makes a table row of cells: strings and numbers become text,
  // nodes are appended as they are.
  function row(cells) {
    const tr = document.createElement('tr');
    for (const c of cells) {
      const td = document.createElement('td');
      if (c instanceof Node) td.append(c); else td.textContent = c === undefined || c === null ? '' : String(c);
      tr.append(td);
    }
    return tr;
  }

  // fill replaces a table's body: one row per item (at most MAX_ROWS), or
  // a single row saying the table is empty, or why it could not be read.
  function fill(tableId, items, toRow, empty) {
    const table = $(tableId);
    const tbody = table.tBodies[0];
    const cols = table.tHead.rows[0].cells.length;
    const note = (text, cls) => {
      const td = el('td', text, cls);
      td.colSpan = cols;
      const tr = document.createElement('tr');
      tr.append(td);
      return tr;
    };
    const rows = [];
    if (items instanceof Error) {
      rows.push(note('Could not load: ' + items.message, 'error'));
    } else if (items.length === 0) {
      rows.push(note(empty, 'muted'));
    } else {
      for (const it of items.slice(0, MAX_ROWS)) rows.push(toRow(it));
      if (items.length > MAX_ROWS) rows.push(note(`… and ${items.length - MAX_ROWS} more (the CLI lists them all)`, 'muted'));
    }
    tbody.replaceChildren(...rows);
  }

  // when shows a time in the browser's zone, year first as the CLI does,
  // with how far off it is; Go's zero time means "never".
  function when(iso) {
    if (!iso || iso.startsWith('0001-01-01')) return '—';
    const d = new Date(iso);
    if (isNaN(d)) return iso;
    const p2 = (n) => String(n).padStart(2, '0');
    const local = `${d.getFullYear()}-${p2(d.getMonth() + 1)}-${p2(d.getDate())} ${p2(d.getHours())}:${p2(d.getMinutes())}:${p2(d.getSeconds())}`;
    const secs = Math.round((d - Date.now()) / 1000);
    const abs = Math.abs(secs);
    const span = abs < 60 ? `${abs}s` : abs < 3600 ? `${Math.round(abs / 60)}m` : abs < 86400 ? `${Math.round(abs / 3600)}h` : `${Math.round(abs / 86400)}d`;
    return `${local} (${secs >= 0 ? 'in ' + span : span + ' ago'})`;
  }

  function notice(text, ok) {
    const n = $('notice');
    n.textContent = text;
    n.className = ok ? 'ok' : 'error';
    n.hidden = false;
  }

  // confirmThen asks in the page (a <dialog>, not window.confirm) before a
  // write, then makes it and reports its result.
  function confirmThen(question, method, path, body) {
    const dlg = $('confirm');
    $('confirm-text').textContent = question;
    dlg.onclose = async () => {
      if (dlg.returnValue !== 'yes') return;
      try {
        const res = JSON.parse(await api(method, path, body));
        notice(res.message || 'done', true);
      } catch (e) {
        notice(`${question.replace(/\?$/, '')} failed: ${e.status ? e.status + ' ' : ''}${e.message}`, false);
      }
      refresh();
    };
    dlg.returnValue = '';
    dlg.showModal();
  }

  // Login.

  function needLogin(why) {
    $('main').hidden = true;
    $('logout').hidden = true;
    sessionStorage.removeItem(TOKEN_KEY);
    $('login').hidden = false;
    $('summary').textContent = why;
    $('login-user').focus();
  }

  async function login(ev) {
    ev.preventDefault();
    const err = $('login-error');
    err.hidden = true;
    try {
      const res = JSON.parse(await api('POST', '/api/login',
        { username: $('login-user').value, password: $('login-password').value }, { login: true }));
      sessionStorage.setItem(TOKEN_KEY, res.accessToken);
      $('login-password').value = '';
      $('login').hidden = true;
      $('logout').hidden = false;
      refresh();
    } catch (e) {
      err.textContent = e.status === 401 ? 'Wrong user or password.' : `Login failed: ${e.message}`;
      err.hidden = false;
    }
  }

  function logout() {
    sessionStorage.removeItem(TOKEN_KEY);
    location.reload();
  }

  // Sections.

  function showStatus(st) {
    const dl = $('status');
    const items = [
      ['This process', st.self],
      ['Leader', st.leader ? 'this process' : (st.leaderAddress || 'none elected')],
      ['Term', st.term || '—'],
      ['Leading since', st.leader ? when(st.leaderSince) : '—'],
      ['Coordinator', st.coordinator],
      ['Executor', st.executor],
    ];
    for (const [k, v] of Object.entries(st.executorInfo || {})) items.push([`Executor ${k}`, v]);
    dl.replaceChildren(...items.flatMap(([k, v]) => [el('dt', k), el('dd', v)]));
    $('summary').textContent = `${st.self} · ${st.leader ? 'leader, term ' + st.term : 'standby; leader ' + (st.leaderAddress || 'none')} · ${st.executor}`;
  }

  // schedules reads each shown job's next fire time and disable flag, a
  // few requests at a time.
  async function schedules(jobs) {
    const out = new Map();
    const queue = jobs.slice(0, MAX_ROWS);
    const worker = async () => {
      for (let j = queue.shift(); j; j = queue.shift()) {
        try { out.set(j.jobName, await getJSON(`/api/job/${enc(j.jobName)}/schedule`)); } catch (e) { out.set(j.jobName, e); }
      }
    };
    await Promise.all(Array.from({ length: 6 }, worker));
    return out;
  }

  function jobRow(j, sched) {
    const actions = el('span', null, 'actions');
    const name = j.jobName;
    if (j.jobExecutionType !== 'DAEMON') {
      actions.append(button('Trigger', () => confirmThen(`Trigger job "${name}" now?`, 'POST', '/api/job/trigger', { jobName: name }), 'trigger'));
    }
    let state = '?';
    let next = '—';
    if (sched instanceof Error) {
      state = next = 'error: ' + sched.message;
    } else if (sched) {
      state = sched.disabled ? 'disabled' : 'enabled';
      next = sched.nextFireTimes.length ? when(sched.nextFireTimes[0]) : 'never';
      actions.append(sched.disabled
        ? button('Enable', () => confirmThen(`Enable job "${name}"?`, 'POST', `/api/job/${enc(name)}/enable`), 'enable')
        : button('Disable', () => confirmThen(`Disable job "${name}"?`, 'POST', `/api/job/${enc(name)}/disable`), 'disable'));
    }
    actions.append(button('History', () => { selectedJob = name; refresh(); }, 'history'));
    const tr = row([name, j.appName, j.jobExecutionType, `${j.cron || '—'} ${j.timeZone || ''}`.trim(), next, state, actions]);
    tr.dataset.job = name;
    tr.cells[4].className = 'next-fire';
    if (state === 'disabled') tr.className = 'disabled';
    return tr;
  }

  function logButtons(taskId) {
    const span = el('span', null, 'actions');
    for (const stream of ['stdout', 'stderr']) span.append(button(stream, () => showLog(taskId, stream), stream));
    return span;
  }

  async function showLog(taskId, stream) {
    $('log').hidden = false;
    $('log-title').textContent = `${taskId} (${stream})`;
    const pre = $('log-text');
    pre.textContent = 'loading…';
    try {
      let text = await api('GET', `/api/tasks/${enc(taskId)}/log?stream=${stream}`);
      if (text.length > MAX_LOG_CHARS) text = '… (earlier output cut)\n' + text.slice(-MAX_LOG_CHARS);
      pre.textContent = text || '(empty)';
    } catch (e) {
      pre.textContent = e.status === 404 ? `Log not available: ${e.message}` : `Could not load the log: ${e.message}`;
    }
    $('log').scrollIntoView({ block: 'nearest' });
  }

  // selectedJob is the job whose run history is shown.
  let selectedJob = null;

  async function showHistory() {
    const section = $('history');
    if (!selectedJob) { section.hidden = true; return; }
    section.hidden = false;
    $('history-job').textContent = selectedJob;
    const note = $('history-note');
    note.hidden = true;
    $('runs').hidden = false;
    let runs;
    try {
      runs = await getJSON(`/api/job/${enc(selectedJob)}/executions?limit=${HISTORY_LIMIT}`);
    } catch (e) {
      if (e.status !== 404) {
        runs = e;
      } else {
        // A hasched without run history (or a job that is gone).
        note.textContent = `History not available: ${e.message}`;
        note.hidden = false;
        $('runs').hidden = true;
        return;
      }
    }
    fill('runs', runs, (x) => {
      const tr = row([x.taskId, x.shardingItem, x.attempt, when(x.fireTime), when(x.startTime), when(x.completeTime),
        x.host, x.state, x.exitCode, x.outcome || x.message, logButtons(x.taskId)]);
      tr.dataset.task = x.taskId;
      return tr;
    }, 'No runs recorded yet.');
  }

  // load runs one section's request and hands its result, or the error,
  // to show: one section failing leaves the others standing.
  async function load(path, show) {
    let v;
    try { v = await getJSON(path); } catch (e) { v = e; }
    await show(v);
  }

  let refreshing = null;
  let refreshAgain = false;

  // refresh reloads every section. A call during a refresh (after a
  // write, say) runs one more once it ends, as the one under way may have
  // read too early.
  function refresh() {
    if (refreshing) {
      refreshAgain = true;
      return refreshing;
    }
    refreshing = refreshAll().finally(() => {
      refreshing = null;
      if (refreshAgain) {
        refreshAgain = false;
        refresh();
      }
    });
    return refreshing;
  }

  async function refreshAll() {
    // The status first: a 401 here means a login is needed before
    // anything else is worth asking.
    try {
      showStatus(await getJSON('/api/leader'));
    } catch (e) {
      if (e.status === 401) return;
      $('summary').textContent = 'Cannot read the status: ' + e.message;
    }
    $('main').hidden = false;
    $('login').hidden = true;
    $('logout').hidden = !sessionStorage.getItem(TOKEN_KEY);
    await Promise.all([
      load('/api/job/jobs', async (jobs) => {
        if (jobs instanceof Error) return fill('jobs', jobs);
        const sched = await schedules(jobs);
        fill('jobs', jobs, (j) => jobRow(j, sched.get(j.jobName)), 'No jobs registered.');
      }),
      load('/api/app/list', async (apps) => {
        const flags = new Map();
        if (!(apps instanceof Error)) {
          await Promise.all(apps.slice(0, MAX_ROWS).map(async (a) => {
            try { flags.set(a.appName, await getJSON(`/api/app/${enc(a.appName)}/disable`)); } catch (_) { /* shown as unknown */ }
          }));
        }
        fill('apps', apps, (a) => {
          const name = a.appName;
          const disabled = flags.get(name);
          const actions = el('span', null, 'actions');
          if (disabled !== undefined) {
            actions.append(disabled
              ? button('Enable', () => confirmThen(`Enable app "${name}"?`, 'POST', `/api/app/${enc(name)}/enable`), 'enable')
              : button('Disable', () => confirmThen(`Disable app "${name}" and all its jobs?`, 'POST', `/api/app/${enc(name)}/disable`), 'disable'));
          }
          const tr = row([name, a.cpuCount, a.memoryMB, a.bootstrapScript, disabled === undefined ? '?' : disabled ? 'disabled' : 'enabled', actions]);
          if (disabled) tr.className = 'disabled';
          return tr;
        }, 'No apps registered.');
      }),
      load('/api/job/tasks/running', (ts) => fill('running', ts, (x) => {
        const tr = row([x.taskId, x.jobName, x.shardingItem, x.attempt, when(x.fireTime), x.host, x.state, logButtons(x.taskId)]);
        tr.dataset.job = x.jobName;
        return tr;
      }, 'No task is running.')),
      load('/api/job/tasks/ready', (rs) => fill('ready', rs, (x) =>
        row([x.jobName, x.times, when((x.fireTimes || [])[0])]), 'Nothing waits to be launched.')),
      load('/api/job/tasks/failover', (ts) => fill('failover', ts, (x) =>
        row([x.taskId, x.jobName, x.shardingItem, x.attempt, when(x.fireTime), when(x.notBefore), x.message]), 'No task waits for failover.')),
      load('/api/workers', (ws) => fill('workers', ws, (w) =>
        row([w.name + (w.draining ? ' (draining)' : ''), w.api, `${w.usedCpus} / ${w.cpus}`, `${w.usedMemoryMB} / ${w.memoryMB}`, (w.tasks || []).length]),
      'No workers (the executor runs tasks elsewhere).')),
      load('/api/quarantine', (qs) => fill('quarantine', qs, (q) =>
        row([q.kind, q.name, q.error, when(q.seenAt)]), 'No stored configuration is quarantined.')),
      showHistory(),
    ]);
  }

  // Auto-refresh waits for one refresh to end before timing the next, and
  // skips a hidden tab.
  function tick() {
    const again = () => setTimeout(tick, REFRESH_MS);
    if ($('auto').checked && document.visibilityState === 'visible' && $('login').hidden) {
      refresh().finally(again);
    } else {
      again();
    }
  }

  document.addEventListener('DOMContentLoaded', () => {
    $('login').addEventListener('submit', login);
    $('logout').addEventListener('click', logout);
    $('refresh').addEventListener('click', () => refresh());
    $('log-close').addEventListener('click', () => { $('log').hidden = true; });
    refresh().finally(() => setTimeout(tick, REFRESH_MS));
  });
})();
