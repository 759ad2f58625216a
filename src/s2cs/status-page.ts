// The live status page (s2cs --metrics-listen, `/`): one self-contained HTML page.
// Server-rendered tables, so it reads without JavaScript; its one inline script
// polls /status.json and redraws them, keeping each stream's recent throughput for
// a small chart. Everything shown comes from callers (uids, owners, addresses):
// escaped here, and set with textContent in the script, never as markup.
import { createHash } from 'node:crypto';
import { formatBitRate, formatBytes, formatRate } from '../units.js';
import { formatAge } from '../s2uc/status.js';
import type { StatusView } from './service.js';

/** How often the page asks for /status.json, and how much throughput history each chart keeps. */
export const POLL_MS = 2000;
const HISTORY_POINTS = 150; // 5 minutes at one sample per 2 s
/** The last connections that ended shown per stream on the page (status keeps 10). */
const RECENT_SHOWN = 3;

const STYLE = `
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#1d2330;background:#fafbfc}
h1{font-size:1.3em;margin:0 0 .2em}h2{font-size:1.05em;margin:1.4em 0 .4em}
.summary{color:#4a5568;margin:0 0 .8em}
table{border-collapse:collapse;width:100%;background:#fff;box-shadow:0 0 0 1px #e2e8f0}
th,td{text-align:left;padding:.35em .6em;border-bottom:1px solid #edf2f7;vertical-align:top}
th{background:#f1f5f9;font-weight:600;font-size:.9em}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
code{font:12px ui-monospace,monospace;white-space:nowrap}
td.owner{overflow-wrap:anywhere;min-width:8em;max-width:18em}
.state-ready{color:#17803d;font-weight:600}.state-down,.state-broken{color:#b91c1c;font-weight:600}
.empty{color:#718096;font-style:italic}
svg.chart{display:block;width:120px;height:36px;background:#f1f5f9}
.wrap{overflow-x:auto}
svg.chart polyline{fill:none;stroke:#2563eb;stroke-width:1.5}
#live{color:#718096;font-size:.85em}
`;

// The browser side: fetch, redraw with DOM calls and textContent only.
const SCRIPT = `
'use strict';
(function () {
  var POLL = ${POLL_MS}, KEEP = ${HISTORY_POINTS};
  var history = {};
  function units(n) {
    var u = ['KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
    if (Math.abs(n) < 1024) return n + ' B';
    var v = n / 1024, i = 0;
    while (Math.abs(v) >= 1024 && i < u.length - 1) { v /= 1024; i++; }
    return v.toFixed(2) + ' ' + u[i];
  }
  function rate(bps) {
    var bits = bps * 8;
    return bits >= 1e9 ? (bits / 1e9).toFixed(2) + ' Gbit/s' : (bits / 1e6).toFixed(2) + ' Mbit/s';
  }
  // As formatBitRate (src/units.ts): "200 Mbit/s", "1.5 Gbit/s".
  function bitRate(bps) {
    var bits = bps * 8;
    var v = bits >= 1e12 ? [bits / 1e12, 'Tbit/s'] : bits >= 1e9 ? [bits / 1e9, 'Gbit/s'] : bits >= 1e6 ? [bits / 1e6, 'Mbit/s'] : [bits / 1e3, 'kbit/s'];
    return Number(v[0].toPrecision(4)) + ' ' + v[1];
  }
  function stateText(s) {
    return s.state + (s.broken_reason ? ': ' + s.broken_reason : '') + ((s.releasing_on || []).length ? ': not released on ' + s.releasing_on.join('; ') : '') + (s.expires_in_s ? ' (let go in ' + age(s.expires_in_s) + ')' : '') + (s.standing ? ' (standing tunnel)' : '');
  }
  function stated(s) {
    if (s.cap_bps > 0) return bitRate(s.cap_bps) + ', held';
    return s.rate > 0 ? bitRate(s.rate * 1000) + ', not enforced' : '-';
  }
  function age(s) {
    var two = function (n) { return (n < 10 ? '0' : '') + n; };
    s = Math.max(0, Math.floor(s));
    if (s < 60) return s + 's';
    if (s < 3600) return Math.floor(s / 60) + 'm' + two(s % 60) + 's';
    if (s < 86400) return Math.floor(s / 3600) + 'h' + two(Math.floor((s % 3600) / 60)) + 'm';
    return Math.floor(s / 86400) + 'd' + two(Math.floor((s % 86400) / 3600)) + 'h';
  }
  function el(tag, text, cls) {
    var e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }
  // The connections cell: the counts, then the stream's last connections that ended, newest first.
  function connections(s) {
    var td = el('td', s.active_connections + ' active, ' + s.waiting_connections + ' waiting, ' + s.accepted_connections + ' accepted, ' + s.refused_connections + ' refused');
    if (s.protocol === 'udp') {
      td.appendChild(el('br'));
      td.appendChild(el('code', udpText(s)));
    }
    (s.recent_connections || []).slice(-${RECENT_SHOWN}).reverse().forEach(function (c) {
      td.appendChild(el('br'));
      td.appendChild(el('code', c.leg + ' ' + c.peer + ', ' + units(c.bytes_in) + ' in, ' + units(c.bytes_out) + ' out, ' + (c.duration_ms / 1000).toFixed(1) + ' s: ' + c.end));
    });
    return td;
  }
  // A UDP stream's datagrams, flows and drops (udpText() of the page says the same).
  function udpText(s) {
    var drops = (s.datagram_drops || []).map(function (d) { return d.count + ' ' + d.kind; }).join(', ');
    return 'UDP: ' + s.datagrams_to_target + ' datagrams to target, ' + s.datagrams_from_target + ' from target, ' + s.udp_flows + ' flow(s) open; dropped: ' + (drops || 'none');
  }
  function lines(list) {
    var td = el('td');
    list.forEach(function (t) { td.appendChild(el('code', t)); td.appendChild(el('br')); });
    return td;
  }
  function chart(points) {
    var NS = 'http://www.w3.org/2000/svg';
    var svg = document.createElementNS(NS, 'svg');
    svg.setAttribute('class', 'chart');
    svg.setAttribute('preserveAspectRatio', 'none');
    var max = Math.max.apply(null, points.concat([1]));
    var line = document.createElementNS(NS, 'polyline');
    // The x axis spans KEEP samples once there are that many; a page opened lately stretches what it has.
    var span = Math.max(points.length, 30) - 1, start = span - (points.length - 1);
    svg.setAttribute('viewBox', '0 0 ' + span + ' 36');
    line.setAttribute('points', points.map(function (v, i) { return (start + i) + ',' + (34 - (v / max) * 30).toFixed(1); }).join(' '));
    var title = document.createElementNS(NS, 'title');
    title.textContent = 'throughput, last ' + Math.round(points.length * POLL / 1000) + ' s, peak ' + rate(max);
    svg.appendChild(title);
    svg.appendChild(line);
    return svg;
  }
  function fill(id, rows, cols, empty) {
    var body = document.getElementById(id);
    if (!body) return;
    while (body.firstChild) body.removeChild(body.firstChild);
    if (rows.length === 0) {
      var tr = el('tr'), td = el('td', empty, 'empty');
      td.colSpan = cols;
      tr.appendChild(td);
      body.appendChild(tr);
      return;
    }
    rows.forEach(function (cells) {
      var tr = el('tr');
      cells.forEach(function (c) { tr.appendChild(c); });
      body.appendChild(tr);
    });
  }
  function render(st) {
    var seen = {};
    st.streams.forEach(function (s) {
      var h = history[s.uid] || (history[s.uid] = []);
      h.push(s.to_target_bps + s.from_target_bps);
      if (h.length > KEEP) h.shift();
      seen[s.uid] = true;
    });
    Object.keys(history).forEach(function (u) { if (!seen[u]) delete history[u]; });
    document.getElementById('summary').textContent = summary(st);
    fill('streams', st.streams.map(function (s) {
      var state = el('td', stateText(s), 'state-' + s.state);
      var pairs = s.listeners.map(function (l, i) { return s.targets.length ? l + ' \\u2192 ' + s.targets[i % s.targets.length] : l; });
      var chartCell = el('td');
      chartCell.appendChild(chart(history[s.uid] || []));
      var uid = el('td'); uid.appendChild(el('code', s.uid));
      return [uid, el('td', s.owner, 'owner'), el('td', s.role), state, el('td', age(s.age_s), 'num'), lines(pairs),
        connections(s),
        el('td', units(s.bytes_to_target) + ' / ' + units(s.bytes_from_target), 'num'),
        el('td', rate(s.to_target_bps) + ' / ' + rate(s.from_target_bps), 'num rate'), el('td', stated(s), 'num stated'), chartCell];
    }), 11, 'no streams');
    fill('agents', st.agents.map(function (a) {
      return [el('td', a.name), lines([a.address]), el('td', a.listener_ip), el('td', a.up ? 'up' : 'DOWN', a.up ? 'state-ready' : 'state-down'),
        el('td', a.streams, 'num'), el('td', a.free_ports, 'num'), el('td', rate(a.bytes_per_second), 'num')];
    }), 7, 'no agents shown');
    fill('refusals', st.refusals.map(function (r) { return [el('td', r.kind), el('td', r.count, 'num')]; }), 2, 'none');
    fill('ended', st.ended.slice().reverse().map(function (e) {
      var uid = el('td'); uid.appendChild(el('code', e.uid));
      return [uid, el('td', e.owner, 'owner'), el('td', e.why), el('td', age(e.ago_s) + ' ago', 'num')];
    }), 4, 'none');
  }
  function summary(st) {
    var up = st.agents.filter(function (a) { return a.up; }).length;
    return st.streams.length + ' stream(s), ' + st.reserved_ports + ' port(s) reserved, ' + st.free_ports + ' free' +
      (st.agents.length ? ', ' + up + ' of ' + st.agents.length + ' agent(s) up' : '') +
      (st.rate_policy === 'reserve' ? '; rates: ' + bitRate(st.reserved_bps) + ' of ' + bitRate(st.capacity_bps) + ' reserved, ' +
        bitRate(Math.max(0, st.capacity_bps - st.reserved_bps)) + ' free' : '');
  }
  var live = document.getElementById('live');
  function poll() {
    fetch('status.json', { cache: 'no-store', credentials: 'same-origin' })
      .then(function (r) { if (!r.ok) throw new Error('HTTP ' + r.status); return r.json(); })
      .then(function (st) { render(st); live.textContent = 'live, updated ' + new Date().toLocaleTimeString(); })
      .catch(function (e) { live.textContent = 'not updating: ' + e.message; })
      .then(function () { setTimeout(poll, POLL); });
  }
  poll();
})();
`;

const sha256 = (text: string) => `'sha256-${createHash('sha256').update(text).digest('base64')}'`;

/**
 * The page's Content-Security-Policy: nothing from elsewhere, only its own inline
 * style and script (by hash), fetches to itself only; no frames, forms or plugins.
 */
export const STATUS_PAGE_CSP = [
  "default-src 'none'",
  `script-src ${sha256(SCRIPT)}`,
  `style-src ${sha256(STYLE)}`,
  "connect-src 'self'",
  // Only the empty icon below, so that browsers do not ask for /favicon.ico.
  'img-src data:',
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

/** HTML-escapes text for element content and quoted attribute values. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ESCAPES[c]!);
}

const ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

const cell = (text: string | number, cls = '') => `<td${cls ? ` class="${cls}"` : ''}>${escapeHtml(String(text))}</td>`;
const codeCell = (items: string[]) => `<td>${items.map((t) => `<code>${escapeHtml(t)}</code>`).join('<br>')}</td>`;
const rows = (list: string[], cols: number, empty: string) =>
  list.length > 0 ? list.join('\n') : `<tr><td colspan="${cols}" class="empty">${escapeHtml(empty)}</td></tr>`;
const bps = (n: number) => formatRate(n, 1);

/** A stream's state, why when broken, where its release is unconfirmed, and when the gateway lets it go (the script's stateText() says the same). */
export function stateText(s: { state: string; broken_reason: string; expires_in_s: number; releasing_on?: string[]; standing?: boolean }): string {
  const unconfirmed = (s.releasing_on ?? []).length ? `: not released on ${s.releasing_on!.join('; ')}` : '';
  return `${s.state}${s.broken_reason ? `: ${s.broken_reason}` : ''}${unconfirmed}${s.expires_in_s ? ` (let go in ${formatAge(s.expires_in_s)})` : ''}${s.standing ? ' (standing tunnel)' : ''}`;
}

/** A stream's stated rate and whether this gateway holds it there (the script's stated() says the same). */
export function statedRate(s: { rate: number; cap_bps: number }): string {
  if (s.cap_bps > 0) return `${formatBitRate(s.cap_bps)}, held`;
  return s.rate > 0 ? `${formatBitRate(s.rate * 1000)}, not enforced` : '-';
}

/** The line above the tables (the script's summary() says the same). */
/** The connection counts, then the stream's last connections that ended, newest first (as the script writes it). */
function connectionsCell(s: StatusView['streams'][number]): string {
  const counts = escapeHtml(`${s.active_connections} active, ${s.waiting_connections} waiting, ${s.accepted_connections} accepted, ${s.refused_connections} refused`);
  const recent = (s.recent_connections ?? []).slice(-RECENT_SHOWN).reverse()
    .map((c) => `<br><code>${escapeHtml(`${c.leg} ${c.peer}, ${formatBytes(Number(c.bytes_in))} in, ${formatBytes(Number(c.bytes_out))} out, ${(c.duration_ms / 1000).toFixed(1)} s: ${c.end}`)}</code>`);
  const udp = s.protocol === 'udp' ? `<br><code>${escapeHtml(udpText(s))}</code>` : '';
  return `<td>${counts}${udp}${recent.join('')}</td>`;
}

/** A UDP stream's datagrams, flows and drops (as the script's udpText() writes it). */
export function udpText(s: StatusView['streams'][number]): string {
  const drops = (s.datagram_drops ?? []).map((d) => `${d.count} ${d.kind}`).join(', ');
  return `UDP: ${s.datagrams_to_target} datagrams to target, ${s.datagrams_from_target} from target, ${s.udp_flows} flow(s) open; dropped: ${drops || 'none'}`;
}

export function summaryLine(st: StatusView): string {
  const up = st.agents.filter((a) => a.up).length;
  let text = `${st.streams.length} stream(s), ${st.reserved_ports} port(s) reserved, ${st.free_ports} free${st.agents.length ? `, ${up} of ${st.agents.length} agent(s) up` : ''}`;
  if (st.rate_policy === 'reserve') {
    text += `; rates: ${formatBitRate(st.reserved_bps)} of ${formatBitRate(st.capacity_bps)} reserved, ${formatBitRate(Math.max(0, st.capacity_bps - st.reserved_bps))} free`;
  }
  return text;
}

/** The page as it stands now; the script keeps it current. */
export function renderStatusPage(st: StatusView, title: string): string {
  const summary = summaryLine(st);
  const streams = st.streams.map((s) => {
    const pairs = s.listeners.map((l, i) => (s.targets.length ? `${l} \u2192 ${s.targets[i % s.targets.length]}` : l));
    return `<tr>${codeCell([s.uid])}${cell(s.owner, 'owner')}${cell(s.role)}${cell(stateText(s), `state-${s.state}`)}${cell(formatAge(s.age_s), 'num')}${codeCell(pairs)}` +
      connectionsCell(s) +
      cell(`${formatBytes(s.bytes_to_target)} / ${formatBytes(s.bytes_from_target)}`, 'num') +
      cell(`${bps(s.to_target_bps)} / ${bps(s.from_target_bps)}`, 'num rate') +
      cell(statedRate(s), 'num stated') +
      '<td></td></tr>';
  });
  const agents = st.agents.map(
    (a) => `<tr>${cell(a.name)}${codeCell([a.address])}${cell(a.listener_ip)}${cell(a.up ? 'up' : 'DOWN', a.up ? 'state-ready' : 'state-down')}${cell(a.streams, 'num')}${cell(a.free_ports, 'num')}${cell(bps(a.bytes_per_second), 'num')}</tr>`,
  );
  const refusals = st.refusals.map((r) => `<tr>${cell(r.kind)}${cell(r.count, 'num')}</tr>`);
  const ended = [...st.ended].reverse().map((e) => `<tr>${codeCell([e.uid])}${cell(e.owner, 'owner')}${cell(e.why)}${cell(`${formatAge(e.ago_s)} ago`, 'num')}</tr>`);
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<link rel="icon" href="data:,"><title>${escapeHtml(title)}</title><style>${STYLE}</style></head>
<body>
<h1>${escapeHtml(title)}</h1>
<p class="summary"><span id="summary">${escapeHtml(summary)}</span> <span id="live">(a snapshot: reload for news, or allow JavaScript)</span></p>
<h2>Streams</h2>
<div class="wrap"><table><thead><tr><th>uid</th><th>owner</th><th>role</th><th>state</th><th>age</th><th>listeners \u2192 targets</th><th>connections</th><th>bytes to / from target</th><th>rate to / from target (last 10 s)</th><th>stated rate</th><th>throughput</th></tr></thead>
<tbody id="streams">${rows(streams, 11, 'no streams')}</tbody></table></div>
<h2>Data-server agents</h2>
<table><thead><tr><th>name</th><th>address</th><th>listener ip</th><th>state</th><th>streams</th><th>free ports</th><th>rate</th></tr></thead>
<tbody id="agents">${rows(agents, 7, 'no agents shown')}</tbody></table>
<h2>Refusals since start</h2>
<table><thead><tr><th>kind</th><th>count</th></tr></thead><tbody id="refusals">${rows(refusals, 2, 'none')}</tbody></table>
<h2>Streams the gateway ended by itself lately</h2>
<table><thead><tr><th>uid</th><th>owner</th><th>why</th><th>when</th></tr></thead><tbody id="ended">${rows(ended, 4, 'none')}</tbody></table>
<script>${SCRIPT}</script>
</body></html>
`;
}
