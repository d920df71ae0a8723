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

  /** A button for a table row: its text, style, accessible name and action. */
  function rowButton(text, className, label, onClick) {
    const button = document.createElement('button');
    button.type = 'button';
    button.className = className;
    button.textContent = text;
    button.setAttribute('aria-label', label);
    button.addEventListener('click', onClick);
    return button;
  }

  /** A badge: `tone` is `ok`, `bad` or `muted`. */
  function badge(text, tone) {
    const element = document.createElement('span');
    element.className = 'badge ' + tone;
    element.textContent = text;
    return element;
  }

  /** An exact decimal amount without the trailing zeros past the cents ("1.500000000" → "1.50"). */
  function money(value) {
    if (value === null || value === undefined) return value;
    const m = /^(-?\d+)\.(\d*?)0*$/.exec(String(value));
    if (!m) return String(value);
    return m[1] + '.' + m[2].padEnd(2, '0');
  }

  /**
   * An RFC 3339 time (the gateway writes UTC) as a <time> showing "YYYY-MM-DD HH:MM:SS UTC",
   * which may wrap between the day and the time but never inside either.
   */
  function when(value) {
    if (!value) return value;
    const [day, rest] = String(value).split('T');
    const element = document.createElement('time');
    element.dateTime = value;
    const dayPart = document.createElement('span');
    dayPart.className = 'nowrap';
    dayPart.textContent = day;
    element.append(dayPart);
    if (rest) {
      const timePart = document.createElement('span');
      timePart.className = 'nowrap';
      timePart.textContent = rest.replace(/(\.\d+)?Z$/, ' UTC');
      element.append(' ', timePart);
    }
    return element;
  }

  /**
   * Replaces a table's body with one row per item, `columns` mapping an item to cell values;
   * `rowData`, when given, maps an item to the row's `data-*` attributes.
   */
  function fill(table, items, columns, rowData) {
    const body = table.tBodies[0];
    body.replaceChildren();
    for (const item of items) {
      const row = body.insertRow();
      if (rowData) Object.assign(row.dataset, rowData(item));
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

  /**
   * Offers the orgs' names in `input` (a datalist) and, given `then` and an empty input, puts
   * the first org in it and calls `then`: a console with one org shows its data at once.
   */
  async function suggestOrgs(input, then) {
    let names = [];
    try {
      names = (await api('GET', '/admin/orgs')).data.map((o) => o.org);
    } catch (_) {
      return;
    }
    let list = document.getElementById('org-names');
    if (!list) {
      list = document.createElement('datalist');
      list.id = 'org-names';
      document.body.appendChild(list);
    }
    list.replaceChildren(...names.map((name) => new Option(name)));
    input.setAttribute('list', 'org-names');
    if (then && !input.value && names.length > 0) {
      input.value = names[0];
      then();
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
          (k) => when(k.created_at),
          (k) => when(k.last_used_at) || 'never',
          (k) => when(k.expires_at),
          (k) => when(k.revoked_at),
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
      return rowButton('Revoke', 'danger', 'Revoke key ' + key.prefix, async () => {
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
    suggestOrgs(orgInput, load);
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
          (p) => when(p.loaded_at),
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
      return badge(value, value === 'serving' ? 'ok' : 'bad');
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
        const states = ruleStates(list.data);
        fill(table, list.data, [
          (r) => r.provider,
          (r) => r.model,
          (r) => orgOf(r) || 'every org',
          (r) => money(r.input_per_million),
          (r) => money(r.output_per_million),
          (r) => money(r.cached_input_per_million),
          (r) => money(r.reasoning_output_per_million),
          (r) => r.currency,
          (r) => when(r.effective_from),
          (r) => stateBadge(states.get(r)),
          (r) => editButton(r),
        ]);
        show($('#prices-error'));
      } catch (e) {
        show($('#prices-error'), e.message);
      }
    }
    /**
     * Each rule's state: for every provider, model and org the rule with the latest start that
     * has come is "in force" (what the gateway prices with), earlier ones "replaced", later
     * ones "scheduled".
     */
    function ruleStates(rules) {
      const now = Date.now();
      const current = new Map();
      for (const r of rules) {
        const group = r.provider + '\u0000' + r.model + '\u0000' + orgOf(r);
        const start = Date.parse(r.effective_from);
        const best = current.get(group);
        if (start <= now && (!best || start > Date.parse(best.effective_from))) current.set(group, r);
      }
      const inForce = new Set(current.values());
      return new Map(rules.map((r) => [r, inForce.has(r) ? 'in force' : Date.parse(r.effective_from) > now ? 'scheduled' : 'replaced']));
    }
    function stateBadge(state) {
      return badge(state, state === 'in force' ? 'ok' : 'muted');
    }
    // The org's name when the listing gives it, else its id (which the form cannot take).
    function orgOf(rule) {
      if (rule.org_name) return rule.org_name;
      return rule.org === null || rule.org === undefined ? '' : String(rule.org);
    }
    function editButton(rule) {
      const label = 'Edit the rule for ' + rule.provider + ':' + rule.model + (orgOf(rule) ? ' of ' + orgOf(rule) : '');
      return rowButton('Edit', 'secondary', label, () => {
        const form = $('#price-form');
        const values = {
          provider: rule.provider,
          model: rule.model,
          input: rule.input_per_million,
          output: rule.output_per_million,
          cached_input: rule.cached_input_per_million,
          reasoning_output: rule.reasoning_output_per_million,
          org: orgOf(rule),
          currency: rule.currency,
          effective_from: rule.effective_from,
        };
        for (const [name, value] of Object.entries(values)) {
          form.elements[name].value = value === null || value === undefined ? '' : value;
        }
        show($('#price-status'), 'Editing the rule for ' + rule.provider + ':' + rule.model + ': saving replaces it.');
        form.elements.input.focus();
      });
    }
    $('#price-form').addEventListener('submit', async (event) => {
      event.preventDefault();
      show($('#price-error'));
      show($('#price-status'));
      const body = formValues(event.target);
      try {
        const rule = await api('POST', '/admin/prices', body);
        show($('#price-status'), 'Rule saved for ' + rule.provider + ':' + rule.model + '.');
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
      (t) => money(t.billed_cost),
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
        chartMetrics(report);
        drawChart();
      } catch (e) {
        report = null;
        exportButton.disabled = true;
        $('#totals-table').hidden = true;
        $('#usage-table').hidden = true;
        $('#usage-chart-section').hidden = true;
        show($('#usage-error'), e.message);
      }
    });

    // ---- the chart: one stacked bar per day, one colour per model (SVG, drawn here) ----
    const metricSelect = $('#usage-metric');
    const PALETTE = 8;

    /** The metrics the report can be charted by: billed cost per currency, tokens, requests. */
    function chartMetrics(r) {
      const previous = metricSelect.value;
      metricSelect.replaceChildren();
      const options = r.totals.map((t) => ['cost:' + t.currency, 'Billed cost (' + t.currency + ')']);
      options.push(['tokens', 'Tokens (prompt + completion)'], ['requests', 'Requests']);
      for (const [value, label] of options) {
        metricSelect.add(new Option(label, value, false, value === previous));
      }
    }

    /** A row's value for the chosen metric (cost only counts the rows of its currency). */
    function metricValue(metric, row) {
      if (metric.startsWith('cost:')) {
        return row.currency === metric.slice(5) ? Number(row.billed_cost) : 0;
      }
      if (metric === 'tokens') return row.prompt_tokens + row.completion_tokens;
      return row.requests;
    }

    function formatValue(metric, value) {
      if (metric.startsWith('cost:')) {
        return value.toLocaleString(undefined, { maximumFractionDigits: value < 1 ? 6 : 2 });
      }
      return value.toLocaleString(undefined, { notation: value >= 10000 ? 'compact' : 'standard', maximumFractionDigits: 1 });
    }

    /** Every UTC day from `from` up to (not including) `to`, as YYYY-MM-DD. */
    function daysBetween(from, to) {
      const days = [];
      const d = new Date(from + 'T00:00:00Z');
      const end = new Date(to + 'T00:00:00Z');
      while (d < end && days.length < 3660) {
        days.push(d.toISOString().slice(0, 10));
        d.setUTCDate(d.getUTCDate() + 1);
      }
      return days;
    }

    /** Round numbers for the y axis: 0 and up to 4 steps covering `max`. */
    function ticks(max) {
      if (!(max > 0)) return [0];
      const rough = max / 4;
      const magnitude = Math.pow(10, Math.floor(Math.log10(rough)));
      const step = [1, 2, 2.5, 5, 10].map((m) => m * magnitude).find((m) => m >= rough);
      const out = [];
      for (let v = 0; v <= max + step / 2 && out.length < 7; v += step) out.push(v);
      if (out[out.length - 1] < max) out.push(out[out.length - 1] + step);
      return out;
    }

    function svg(name, attributes, parent) {
      const element = document.createElementNS('http://www.w3.org/2000/svg', name);
      for (const [key, value] of Object.entries(attributes || {})) element.setAttribute(key, value);
      if (parent) parent.appendChild(element);
      return element;
    }

    function drawChart() {
      const section = $('#usage-chart-section');
      const chart = $('#usage-chart');
      if (!report) {
        section.hidden = true;
        return;
      }
      section.hidden = false;
      const metric = metricSelect.value || 'requests';
      const days = daysBetween(report.from, report.to);
      // Models ordered by their total, largest first; beyond the palette they share "other".
      const byModel = new Map();
      for (const row of report.rows) {
        const name = row.provider + ':' + row.model;
        byModel.set(name, (byModel.get(name) || 0) + metricValue(metric, row));
      }
      const ranked = [...byModel.entries()].filter(([, v]) => v > 0).sort((a, b) => b[1] - a[1]).map(([m]) => m);
      const shown = ranked.length > PALETTE ? ranked.slice(0, PALETTE - 1) : ranked;
      const series = shown.length < ranked.length ? [...shown, 'other'] : shown;
      const seriesOf = (name) => (shown.includes(name) ? name : 'other');
      // stacks[day][series] = value
      const stacks = new Map(days.map((d) => [d, new Map()]));
      let total = 0;
      for (const row of report.rows) {
        const value = metricValue(metric, row);
        const stack = stacks.get(row.day);
        if (!stack || value <= 0) continue;
        const name = seriesOf(row.provider + ':' + row.model);
        stack.set(name, (stack.get(name) || 0) + value);
        total += value;
      }
      const max = Math.max(0, ...[...stacks.values()].map((st) => [...st.values()].reduce((a, b) => a + b, 0)));
      const axis = ticks(max);
      const top = axis[axis.length - 1] || 1;

      const width = Math.max(300, Math.floor(chart.parentElement.clientWidth || 800));
      const height = width < 600 ? 220 : 280;
      const left = 56;
      const right = 8;
      const topPad = 10;
      const bottom = 28;
      const plotW = width - left - right;
      const plotH = height - topPad - bottom;
      chart.replaceChildren();
      chart.setAttribute('viewBox', '0 0 ' + width + ' ' + height);
      chart.setAttribute('width', width);
      chart.setAttribute('height', height);
      chart.dataset.metric = metric;
      chart.dataset.total = String(total);
      chart.dataset.days = String(days.length);

      const y = (v) => topPad + plotH - (v / top) * plotH;
      for (const t of axis) {
        svg('line', { x1: left, x2: width - right, y1: y(t), y2: y(t), class: 'grid-line' }, chart);
        const label = svg('text', { x: left - 6, y: y(t) + 4, 'text-anchor': 'end', class: 'axis-label' }, chart);
        label.textContent = formatValue(metric, t);
      }
      const slot = plotW / Math.max(1, days.length);
      const barW = Math.max(1, slot * 0.75);
      const labelEvery = Math.max(1, Math.ceil(days.length / Math.max(1, Math.floor(plotW / 64))));
      days.forEach((day, i) => {
        const x = left + i * slot + (slot - barW) / 2;
        let base = 0;
        const stack = stacks.get(day);
        series.forEach((name, s) => {
          const value = stack.get(name) || 0;
          if (value <= 0) return;
          const rect = svg('rect', {
            x: x.toFixed(2),
            y: y(base + value).toFixed(2),
            width: barW.toFixed(2),
            height: Math.max(0.5, y(base) - y(base + value)).toFixed(2),
            class: 'series s' + (s % PALETTE),
          }, chart);
          svg('title', {}, rect).textContent = day + ' · ' + name + ': ' + formatValue(metric, value);
          base += value;
        });
        if (i % labelEvery === 0) {
          const label = svg('text', { x: (left + i * slot + slot / 2).toFixed(2), y: height - 8, 'text-anchor': 'middle', class: 'axis-label' }, chart);
          label.textContent = day.slice(5);
        }
      });
      svg('line', { x1: left, x2: width - right, y1: y(0), y2: y(0), class: 'axis-line' }, chart);

      const legend = $('#usage-legend');
      legend.replaceChildren();
      series.forEach((name, s) => {
        const item = document.createElement('li');
        const swatch = document.createElement('span');
        swatch.className = 'swatch s' + (s % PALETTE);
        swatch.setAttribute('aria-hidden', 'true');
        item.append(swatch, name);
        legend.appendChild(item);
      });
      const what = metricSelect.selectedOptions[0] ? metricSelect.selectedOptions[0].textContent : metric;
      show($('#chart-summary'), what + ' per UTC day, ' + report.from + ' to ' + days[days.length - 1] + ', stacked by model: '
        + formatValue(metric, total) + ' in all' + (series.length ? ' over ' + series.length + ' model(s)' : ', nothing yet')
        + '. The table below has every number.');
    }

    metricSelect.addEventListener('change', drawChart);
    let resizeTimer = 0;
    window.addEventListener('resize', () => {
      window.clearTimeout(resizeTimer);
      resizeTimer = window.setTimeout(drawChart, 150);
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
    suggestOrgs(form.elements.org, () => form.requestSubmit());
  }

  // ---- requests ------------------------------------------------------------

  function requestsPage() {
    const form = $('#requests-form');
    const table = $('#requests-table');
    const live = $('#requests-live');
    form.elements.org.value = rememberedOrg();

    function ms(value) {
      return value === null || value === undefined ? null : value.toLocaleString() + ' ms';
    }
    function status(r) {
      return badge(r.status + ' ' + r.outcome, r.status < 400 ? 'ok' : 'bad');
    }
    function code(value) {
      const element = document.createElement('code');
      element.textContent = value;
      return element;
    }

    async function load() {
      const query = new URLSearchParams(formValues(form));
      try {
        const list = await api('GET', '/admin/requests?' + query.toString());
        fill(table, list.data, [
          (r) => when(r.created_at),
          (r) => code(r.request_id),
          (r) => r.org,
          (r) => code(r.key_prefix),
          (r) => r.api + (r.stream ? ' (stream)' : ''),
          (r) => r.provider + ':' + r.model,
          status,
          (r) => r.attempts,
          (r) => ms(r.latency_ms),
          (r) => ms(r.ttft_ms),
          (r) => r.prompt_tokens.toLocaleString() + ' / ' + r.completion_tokens.toLocaleString(),
          (r) => money(r.billed_cost) + ' ' + r.currency,
        ], (r) => ({ requestId: r.request_id }));
        show($('#requests-error'));
        show($('#requests-status'), list.data.length + ' request(s), updated ' + new Date().toLocaleTimeString() + '.');
      } catch (e) {
        show($('#requests-error'), e.message);
      }
    }

    form.addEventListener('submit', (event) => {
      event.preventDefault();
      const org = form.elements.org.value.trim();
      if (org) rememberOrg(org);
      load();
    });
    window.setInterval(() => {
      if (live.checked && !document.hidden) load();
    }, 5000);
    load();
    suggestOrgs(form.elements.org, null);
  }

  // ---- orgs ----------------------------------------------------------------

  function orgsPage() {
    const table = $('#orgs-table');
    const form = $('#org-edit-form');

    function spent(o) {
      return o.month_spend.length ? o.month_spend.map((m) => money(m.billed_cost) + ' ' + m.currency).join(', ') : '0';
    }

    /** Spend in the budget's currency against the budget, as a meter with its percentage. */
    function burn(o) {
      if (!o.monthly_budget) return null;
      const currency = o.budget_currency;
      const entry = o.month_spend.find((m) => !currency || m.currency === currency);
      const used = entry ? Number(entry.billed_cost) : 0;
      const budget = Number(o.monthly_budget);
      const share = budget > 0 ? used / budget : used > 0 ? 1 : 0;
      const wrap = document.createElement('span');
      wrap.className = 'burn';
      const meter = document.createElement('meter');
      meter.min = 0;
      meter.max = 1;
      meter.low = 0.75;
      meter.high = 0.9;
      meter.optimum = 0;
      meter.value = Math.min(1, share);
      meter.setAttribute('aria-label', 'Budget used by ' + o.org);
      const label = document.createElement('span');
      label.textContent = (share * 100).toFixed(share < 0.1 ? 1 : 0) + ' %';
      wrap.append(meter, label);
      return wrap;
    }

    function editButton(o) {
      return rowButton('Edit', 'secondary', 'Edit ' + o.org, () => {
        form.elements.org.value = o.org;
        form.elements.markup_bps.value = o.markup_bps;
        form.elements.monthly_budget.value = o.monthly_budget || '';
        form.elements.budget_currency.value = o.budget_currency || '';
        form.elements.models.value = o.models || '';
        form.elements.every_model.checked = false;
        form.elements.markup_bps.focus();
      });
    }

    async function load() {
      try {
        const list = await api('GET', '/admin/orgs');
        fill(table, list.data, [
          (o) => o.org,
          (o) => '+' + (o.markup_bps / 100).toLocaleString() + ' %',
          (o) => (o.monthly_budget ? money(o.monthly_budget) + ' ' + (o.budget_currency || '') : 'none'),
          spent,
          burn,
          (o) => o.models || 'every model',
          editButton,
        ], (o) => ({ org: o.org }));
        show($('#orgs-error'));
      } catch (e) {
        show($('#orgs-error'), e.message);
      }
    }

    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      show($('#org-edit-error'));
      show($('#org-edit-status'));
      const values = formValues(form);
      const body = {};
      if (values.markup_bps !== undefined) body.markup_bps = Number(values.markup_bps);
      if (values.monthly_budget !== undefined) body.monthly_budget = values.monthly_budget;
      if (values.budget_currency !== undefined) body.budget_currency = values.budget_currency;
      if (values.every_model) {
        body.models = '';
      } else if (values.models !== undefined) {
        body.models = values.models;
      }
      try {
        const org = await api('POST', '/admin/orgs/' + encodeURIComponent(values.org), body);
        show($('#org-edit-status'), 'Saved ' + org.org + '.');
        await load();
      } catch (e) {
        show($('#org-edit-error'), e.message);
      }
    });
    load();
  }

  const pages = {
    keys: keysPage,
    orgs: orgsPage,
    plugins: pluginsPage,
    prices: pricesPage,
    requests: requestsPage,
    usage: usagePage,
  };
  const page = pages[document.body.dataset.page];
  if (page) page();
})();
