// The AIGate operator console: each page calls the admin API (/admin/*) with the session
// cookie and, for changes, the session's CSRF token from <meta name="csrf-token">.
// Data is written with textContent only, never as HTML.
'use strict';

(function () {
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const ORG_KEY = 'aigate.console.org';

  /** Calls the admin API; resolves to the JSON answer, rejects with the server's message. */
  async function api(method, path, body) {
    const init = { method, credentials: 'same-origin', headers: { Accept: 'application/json' } };
    if (method !== 'GET') {
      init.headers['X-CSRF-Token'] = csrf;
    }
    if (body !== undefined) {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(path, init);
    } catch (e) {
      throw new Error('The gateway did not answer (' + e.message + ').');
    }
    if (response.status === 401) {
      window.location.assign('/console/login');
      throw new Error('The session ended: sign in again.');
    }
    let data = null;
    try {
      data = await response.json();
    } catch (_) {
      data = null;
    }
    if (!response.ok) {
      const message = data && data.error && data.error.message;
      throw new Error(message || 'The gateway answered HTTP ' + response.status + '.');
    }
    return data;
  }

  function $(selector) {
    return document.querySelector(selector);
  }

  function show(element, text) {
    element.textContent = text || '';
  }

  function text(value) {
    return value === null || value === undefined || value === '' ? '—' : String(value);
  }

  /** Replaces a table's body with one row per item, `columns` mapping an item to cell values. */
  function fill(table, items, columns) {
    const body = table.tBodies[0];
    body.replaceChildren();
    for (const item of items) {
      const row = body.insertRow();
      for (const column of columns) {
        const value = column(item);
        const cell = row.insertCell();
        if (value instanceof Node) {
          cell.appendChild(value);
        } else {
          cell.textContent = text(value);
        }
      }
    }
    table.hidden = false;
  }

  function formValues(form) {
    const values = {};
    for (const [name, value] of new FormData(form)) {
      const trimmed = String(value).trim();
      if (trimmed !== '') {
        values[name] = trimmed;
      }
    }
    return values;
  }

  function rememberedOrg() {
    try {
      return window.localStorage.getItem(ORG_KEY) || '';
    } catch (_) {
      return '';
    }
  }

  function rememberOrg(org) {
    try {
      window.localStorage.setItem(ORG_KEY, org);
    } catch (_) {
      /* storage off: nothing to remember */
    }
  }

  // ---- keys ----------------------------------------------------------------

  function keysPage() {
    const orgInput = $('#org');
    const table = $('#keys-table');
    orgInput.value = rememberedOrg();

    async function load() {
      const org = orgInput.value.trim();
      show($('#keys-error'));
      if (!org) {
        table.hidden = true;
        return;
      }
      rememberOrg(org);
      for (const el of document.querySelectorAll('.org-name')) {
        el.textContent = org;
      }
      try {
        const list = await api('GET', '/admin/keys?org=' + encodeURIComponent(org));
        fill(table, list.data, [
          (k) => k.prefix,
          (k) => k.name,
          (k) => k.created_at,
          (k) => k.expires_at,
          (k) => k.revoked_at,
          (k) => k.rpm,
          (k) => k.tpm,
          (k) => k.models || 'every model',
          (k) => (k.revoked_at ? '' : revokeButton(k)),
        ]);
        show($('#keys-status'), list.data.length + ' key(s) of ' + org + '.');
      } catch (e) {
        table.hidden = true;
        show($('#keys-status'));
        show($('#keys-error'), e.message);
      }
    }

    function revokeButton(key) {
      const button = document.createElement('button');
      button.type = 'button';
      button.className = 'danger';
      button.textContent = 'Revoke';
      button.setAttribute('aria-label', 'Revoke key ' + key.prefix);
      button.addEventListener('click', async () => {
        if (!window.confirm('Revoke key ' + key.prefix + '? Its next calls are refused.')) {
          return;
        }
        try {
          await api('POST', '/admin/keys/' + encodeURIComponent(key.prefix) + '/revoke');
          show($('#keys-status'), 'Key ' + key.prefix + ' revoked.');
          await load();
        } catch (e) {
          show($('#keys-error'), e.message);
        }
      });
      return button;
    }

    $('#org-form').addEventListener('submit', (event) => {
      event.preventDefault();
      load();
    });

    const created = $('#created');
    const keyOutput = $('#created-key');
    function hideKey() {
      keyOutput.textContent = '';
      created.hidden = true;
      show($('#copy-status'));
    }

    $('#create-form').addEventListener('submit', async (event) => {
      event.preventDefault();
      show($('#create-error'));
      const org = orgInput.value.trim();
      if (!org) {
        show($('#create-error'), 'Enter the organisation first.');
        orgInput.focus();
        return;
      }
      const values = formValues(event.target);
      const body = { org };
      if (values.name) body.name = values.name;
      if (values.models) body.models = values.models;
      for (const field of ['expires_in_days', 'rpm', 'tpm']) {
        if (values[field] !== undefined) body[field] = Number(values[field]);
      }
      try {
        const key = await api('POST', '/admin/keys', body);
        keyOutput.textContent = key.key;
        created.hidden = false;
        event.target.reset();
        $('#copy-key').focus();
        await load();
      } catch (e) {
        show($('#create-error'), e.message);
      }
    });

    $('#copy-key').addEventListener('click', async () => {
      try {
        await navigator.clipboard.writeText(keyOutput.textContent);
        show($('#copy-status'), 'Copied.');
      } catch (_) {
        const range = document.createRange();
        range.selectNodeContents(keyOutput);
        const selection = window.getSelection();
        selection.removeAllRanges();
        selection.addRange(range);
        show($('#copy-status'), 'Selected: press Ctrl+C (⌘C) to copy.');
      }
    });
    $('#hide-key').addEventListener('click', hideKey);

    load();
  }

  // ---- plugins -------------------------------------------------------------

  function pluginsPage() {
    const table = $('#plugins-table');
    async function load() {
      try {
        const list = await api('GET', '/admin/plugins');
        fill(table, list.data, [
          (p) => p.file,
          (p) => p.name,
          (p) => p.version,
          (p) => hash(p.hash),
          (p) => p.contract_version,
          (p) => p.loaded_at,
          (p) => state(p.state),
          (p) => (p.last_error ? p.last_error + (p.last_error_at ? ' (' + p.last_error_at + ')' : '') : null),
        ]);
        show($('#plugins-error'));
        show($('#plugins-updated'), 'Updated ' + new Date().toLocaleTimeString() + '.');
      } catch (e) {
        show($('#plugins-error'), e.message);
      }
    }
    function hash(value) {
      if (!value) return null;
      const code = document.createElement('code');
      code.textContent = value.slice(0, 12) + '…';
      code.title = value;
      return code;
    }
    function state(value) {
      const badge = document.createElement('span');
      badge.className = 'badge ' + (value === 'serving' ? 'ok' : 'bad');
      badge.textContent = value;
      return badge;
    }
    load();
    window.setInterval(() => {
      if (!document.hidden) load();
    }, 3000);
  }

  // ---- prices --------------------------------------------------------------

  function pricesPage() {
    const table = $('#prices-table');
    async function load() {
      try {
        const list = await api('GET', '/admin/prices');
        fill(table, list.data, [
          (r) => r.provider,
          (r) => r.model,
          (r) => (r.org === null || r.org === undefined ? 'every org' : r.org),
          (r) => r.input_per_million,
          (r) => r.output_per_million,
          (r) => r.cached_input_per_million,
          (r) => r.reasoning_output_per_million,
          (r) => r.currency,
          (r) => r.effective_from,
        ]);
        show($('#prices-error'));
      } catch (e) {
        show($('#prices-error'), e.message);
      }
    }
    $('#price-form').addEventListener('submit', async (event) => {
      event.preventDefault();
      show($('#price-error'));
      show($('#price-status'));
      const body = formValues(event.target);
      try {
        const rule = await api('POST', '/admin/prices', body);
        show($('#price-status'), 'Rule added for ' + rule.provider + ':' + rule.model + '.');
        event.target.reset();
        await load();
      } catch (e) {
        show($('#price-error'), e.message);
      }
    });
    load();
  }

  // ---- usage ---------------------------------------------------------------

  function usagePage() {
    const form = $('#usage-form');
    const exportButton = $('#export-csv');
    let report = null;

    const day = (offset) => {
      const d = new Date();
      d.setUTCDate(d.getUTCDate() + offset);
      return d.toISOString().slice(0, 10);
    };
    form.elements.org.value = rememberedOrg();
    form.elements.from.value = day(-30);
    form.elements.to.value = day(1);

    const totalsColumns = [
      (t) => t.requests,
      (t) => t.prompt_tokens,
      (t) => t.completion_tokens,
      (t) => t.cached_tokens,
      (t) => t.reasoning_tokens,
      (t) => t.billed_cost,
      (t) => t.unpriced_requests,
    ];

    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      show($('#usage-error'));
      const values = formValues(form);
      const query = new URLSearchParams(values);
      try {
        report = await api('GET', '/admin/usage?' + query.toString());
        rememberOrg(values.org);
        fill($('#totals-table'), report.totals, [(t) => t.currency, ...totalsColumns]);
        fill($('#usage-table'), report.rows, [(r) => r.day, (r) => r.provider, (r) => r.model, (r) => r.currency, ...totalsColumns]);
        const warnings = $('#usage-warnings');
        warnings.replaceChildren();
        for (const w of report.warnings) {
          const li = document.createElement('li');
          li.textContent = w;
          warnings.appendChild(li);
        }
        exportButton.disabled = false;
      } catch (e) {
        report = null;
        exportButton.disabled = true;
        $('#totals-table').hidden = true;
        $('#usage-table').hidden = true;
        show($('#usage-error'), e.message);
      }
    });

    // A cell as CSV: quoted when needed, and text a spreadsheet would run as a formula defused.
    function csvField(value) {
      let s = value === null || value === undefined ? '' : String(value);
      if (typeof value === 'string' && /^[=+\-@\t\r]/.test(s)) s = "'" + s;
      return /[",\r\n]/.test(s) ? '"' + s.replace(/"/g, '""') + '"' : s;
    }

    exportButton.addEventListener('click', () => {
      if (!report) return;
      const header = ['day', 'provider', 'model', 'currency', 'requests', 'prompt_tokens', 'completion_tokens',
        'cached_tokens', 'reasoning_tokens', 'billed_cost', 'unpriced_requests'];
      const lines = [header.join(',')];
      for (const r of report.rows) {
        lines.push(header.map((h) => csvField(r[h])).join(','));
      }
      const blob = new Blob([lines.join('\r\n') + '\r\n'], { type: 'text/csv' });
      const link = document.createElement('a');
      link.href = URL.createObjectURL(blob);
      link.download = 'usage-' + report.org + '-' + report.from + '-' + report.to + '.csv';
      document.body.appendChild(link);
      link.click();
      link.remove();
      window.setTimeout(() => URL.revokeObjectURL(link.href), 1000);
    });

    if (form.elements.org.value) {
      form.requestSubmit();
    }
  }

  const pages = { keys: keysPage, plugins: pluginsPage, prices: pricesPage, usage: usagePage };
  const page = pages[document.body.dataset.page];
  if (page) page();
})();
