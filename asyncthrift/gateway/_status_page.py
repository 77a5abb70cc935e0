"""The status page: one self-contained HTML document (inline CSS and JS, no external asset,
no build step) that draws ``status.json`` and fetches it again every 1.5 s.

Everything it shows comes from that JSON (see `asyncthrift.gateway.status`), written into the
page with ``textContent`` only, so a client name can never inject markup.
"""

from __future__ import annotations

from typing import Final

__all__ = ["PAGE", "REFRESH_MS"]

#: How often the page fetches ``status.json`` again (milliseconds).
REFRESH_MS: Final = 1500

_CSS: Final = """
:root { --ink:#1d2330; --mute:#667085; --line:#e4e7ec; --bg:#f5f6f8; --card:#fff;
  --ok:#12b76a; --warn:#f79009; --bad:#f04438; --accent:#4f46e5; }
* { box-sizing: border-box; }
body { margin:0; background:var(--bg); color:var(--ink);
  font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif; }
header { display:flex; align-items:center; gap:14px; padding:14px 28px; background:#111827;
  color:#f9fafb; }
header h1 { font-size:17px; margin:0; font-weight:650; letter-spacing:.2px; }
header .flight { color:#d1d5db; font-size:13px; font-variant-numeric:tabular-nums; }
header .sub { color:#9ca3af; font-size:13px; margin-left:auto; }
.pill { padding:2px 10px; border-radius:999px; font-size:12px; font-weight:600;
  background:#065f46; color:#d1fae5; }
.pill.draining { background:#92400e; color:#fef3c7; }
.pill.down { background:#991b1b; color:#fee2e2; }
main { padding:20px 28px 32px; display:grid; gap:18px;
  grid-template-columns:repeat(auto-fit,minmax(420px,1fr)); }
section { background:var(--card); border:1px solid var(--line); border-radius:10px;
  padding:16px 18px; }
section.wide { grid-column:1/-1; }
h2 { font-size:13px; text-transform:uppercase; letter-spacing:.6px; color:var(--mute);
  margin:0 0 12px; font-weight:650; }
.tiles { display:grid; grid-template-columns:repeat(auto-fit,minmax(120px,1fr)); gap:10px; }
.tile { border:1px solid var(--line); border-radius:8px; padding:10px 12px; }
.tile .v { font-size:20px; font-weight:650; font-variant-numeric:tabular-nums; }
.tile .k { color:var(--mute); font-size:12px; }
.budget { margin-bottom:14px; } .budget:last-child { margin-bottom:0; }
.budget .name { font-weight:600; margin-bottom:6px; }
.budget .name small { color:var(--mute); font-weight:400; margin-left:6px; }
.bar { display:grid; grid-template-columns:48px 1fr 170px; align-items:center; gap:10px;
  margin:5px 0; font-variant-numeric:tabular-nums; }
.bar .dim { color:var(--mute); font-size:12px; text-transform:uppercase; }
.bar .txt { font-size:12px; text-align:right; color:var(--mute); }
.track { height:10px; border-radius:5px; background:#eef0f4; overflow:hidden; }
.fill { height:100%; border-radius:5px; background:var(--ok); transition:width .4s; }
.fill.warn { background:var(--warn); } .fill.bad { background:var(--bad); }
table { width:100%; border-collapse:collapse; font-variant-numeric:tabular-nums; }
th { text-align:left; color:var(--mute); font-size:12px; font-weight:600; padding:6px 8px;
  border-bottom:1px solid var(--line); }
td { padding:7px 8px; border-bottom:1px solid var(--line); vertical-align:middle; }
tr:last-child td { border-bottom:none; }
td.n, th.n { text-align:right; white-space:nowrap; }
.mini { display:grid; grid-template-columns:32px 64px max-content; gap:6px;
  align-items:center; font-size:11px; color:var(--mute); margin:2px 0; white-space:nowrap; }
.mini .track { height:6px; }
.empty { color:var(--mute); font-style:italic; }
#clients, #lanes { overflow-x:auto; }
footer { padding:0 28px 24px; color:var(--mute); font-size:12px; }
footer a { color:var(--accent); text-decoration:none; }
"""

_JS: Final = """
const REFRESH_MS = @REFRESH_MS@;
const num = new Intl.NumberFormat('en-US', {maximumFractionDigits: 0});
const usd = v => '$' + (v || 0).toLocaleString('en-US',
  {minimumFractionDigits: 2, maximumFractionDigits: v >= 1 || !v ? 2 : 4});
const secs = v => v === null || v === undefined ? '–' : (v < 1 ? (v * 1000).toFixed(0) + ' ms'
  : v.toFixed(v < 10 ? 1 : 0) + ' s');
const upTo = v => v === null || v === undefined ? '–' : '≤ ' + secs(v);  // a bucket's bound
function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}
function bar(frac, small) {
  const t = el('div', 'track'), f = el('div', 'fill');
  const p = Math.max(0, Math.min(1, frac || 0));
  f.style.width = (p * 100).toFixed(1) + '%';
  if (p >= 0.9) f.classList.add('bad'); else if (p >= 0.7) f.classList.add('warn');
  t.appendChild(f);
  return t;
}
function fill(id, nodes) {
  const box = document.getElementById(id);
  box.replaceChildren(...nodes);
}
function tiles(items) {
  return items.map(([k, v]) => {
    const t = el('div', 'tile');
    t.append(el('div', 'v', v), el('div', 'k', k));
    return t;
  });
}
const SHARED = {
  shared: 'shared through Redis', closed: 'shared budget closed',
  fallback: "Redis unreachable: this replica's fallback share",
};
function budgets(list) {
  if (!list || !list.length) return [el('div', 'empty', 'no budget yet (no request so far)')];
  return list.map(b => {
    const d = el('div', 'budget'), name = el('div', 'name', b.name);
    if (b.model_class && b.model_class !== b.name) name.append(el('small', '', b.model_class));
    if (b.blocked_s > 0) name.append(el('small', '', 'blocked ' + secs(b.blocked_s)));
    if (b.shared) name.append(el('small', '', SHARED[b.shared] || b.shared));
    d.append(name);
    for (const l of b.limits) {
      if (l.lease !== undefined) {  // shared: the bucket is in Redis; this replica's lease
        const row = el('div', 'bar');
        const txt = num.format(Math.max(0, l.lease)) + ' leased here of ' + num.format(l.capacity);
        row.append(el('span', 'dim', l.dim), bar(l.lease / l.capacity), el('span', 'txt', txt));
        d.append(row);
        continue;
      }
      const used = l.capacity - l.level, row = el('div', 'bar');
      const txt = num.format(Math.max(0, used)) + ' / ' + num.format(l.capacity) + ' used';
      row.append(el('span', 'dim', l.dim), bar(used / l.capacity), el('span', 'txt', txt));
      d.append(row);
    }
    return d;
  });
}
function lanes(map) {
  const tb = el('tbody');
  for (const [lane, s] of Object.entries(map || {})) {
    const tr = el('tr');
    tr.append(el('td', '', lane), el('td', 'n', num.format(s.queued)),
      el('td', 'n', num.format(s.admitted)), el('td', 'n', num.format(s.abandoned)),
      el('td', 'n', upTo(s.wait_p50_s)), el('td', 'n', upTo(s.wait_p99_s)));
    tb.append(tr);
  }
  const t = el('table'), h = el('tr');
  for (const [c, n] of [['lane', 0], ['queued now', 1], ['admitted', 1], ['gave up', 1],
      ['wait p50', 1], ['wait p99', 1]]) h.append(el('th', n ? 'n' : '', c));
  t.append(el('thead'), tb); t.tHead.append(h);
  return [t];
}
function quotaCell(q) {
  const td = el('td');
  if (!q) return td;
  for (const dim of ['rpm', 'itpm', 'otpm']) {
    const lim = q.limits && q.limits[dim];
    if (!lim) continue;
    const row = el('div', 'mini'), used = q.used[dim] || 0;
    row.append(el('span', '', dim), bar(used / lim, true),
      el('span', '', num.format(used) + ' / ' + num.format(lim)));
    td.append(row);
  }
  if (q.spend_cap_usd) {
    const row = el('div', 'mini'), spent = q.spent_usd || 0;
    row.append(el('span', '', 'cap'), bar(spent / q.spend_cap_usd, true),
      el('span', '', usd(spent) + ' / ' + usd(q.spend_cap_usd)));
    td.append(row);
  }
  if (!td.childNodes.length) td.append(el('span', 'empty', 'no quota'));
  return td;
}
function clients(map, quotas) {
  const names = [...new Set([...Object.keys(map || {}), ...Object.keys(quotas || {})])].sort();
  if (!names.length) return [el('div', 'empty', 'no client has called yet')];
  const t = el('table'), h = el('tr'), tb = el('tbody');
  for (const [c, n] of [['client', 0], ['queued', 1], ['admitted', 1], ['answered', 1],
      ['refused', 1], ['tokens in / out', 1], ['spent', 1], ['quota use', 0]])
    h.append(el('th', n ? 'n' : '', c));
  for (const name of names) {
    const s = (map || {})[name] || {}, tr = el('tr');
    tr.append(el('td', '', name), el('td', 'n', num.format(s.queued || 0)),
      el('td', 'n', num.format(s.admitted || 0)), el('td', 'n', num.format(s.answered || 0)),
      el('td', 'n', num.format(s.refused || 0)),
      el('td', 'n', num.format(s.input_tokens || 0) + ' / ' + num.format(s.output_tokens || 0)),
      el('td', 'n', usd(s.spent_usd)), quotaCell((quotas || {})[name]));
    tb.append(tr);
  }
  t.append(el('thead'), tb); t.tHead.append(h);
  return [t];
}
function render(s) {
  const sv = s.savings || {};
  fill('savings', tiles([
    ['cache hits', num.format(sv.cache_hits || 0)],
    ['dedupe joins', num.format(sv.dedupe_joins || 0)],
    ['packed calls', num.format(sv.packed_calls || 0)],
    ['calls saved', num.format(sv.upstream_calls_saved || 0)],
    ['tokens saved', num.format(sv.tokens_saved || 0)],
    ['dollars saved', usd(sv.dollars_saved)],
    ['spent upstream', usd(sv.cost_usd)],
    ['429s received', num.format(sv.rate_limited || 0)],
  ]));
  fill('budgets', budgets(s.budgets));
  fill('lanes', lanes(s.lanes));
  fill('clients', clients(s.clients, s.quotas));
  const refused = Object.entries(s.refused || {});
  fill('refused', refused.length ? tiles(refused.map(([k, v]) => [k, num.format(v)]))
    : [el('div', 'empty', 'nothing refused')]);
  const flight = [];
  if (s.in_flight !== undefined) flight.push(num.format(s.in_flight) + ' in flight');
  if (s.upstream_queued !== undefined) flight.push(num.format(s.upstream_queued) + ' queued');
  document.getElementById('flight').textContent = flight.join(' · ');
  const pill = document.getElementById('state');
  pill.textContent = s.draining ? 'draining' : 'serving';
  pill.className = 'pill' + (s.draining ? ' draining' : '');
  const when = new Date((s.generated_at || Date.now() / 1000) * 1000);
  document.getElementById('updated').textContent = 'updated ' + when.toISOString()
    .replace('T', ' ').slice(0, 19) + ' UTC';
  document.body.dataset.loaded = String(Number(document.body.dataset.loaded || 0) + 1);
}
async function refresh() {
  try {
    const r = await fetch('status.json', {cache: 'no-store'});
    if (!r.ok) throw new Error('HTTP ' + r.status);
    render(await r.json());
  } catch (e) {
    const pill = document.getElementById('state');
    pill.textContent = 'unreachable'; pill.className = 'pill down';
  } finally {
    setTimeout(refresh, REFRESH_MS);
  }
}
refresh();
""".replace("@REFRESH_MS@", str(REFRESH_MS))

PAGE: Final = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>asyncthrift gateway</title>
<style>{_CSS}</style>
</head>
<body>
<header><h1>asyncthrift gateway</h1><span id="state" class="pill">loading</span>
<span id="flight" class="flight"></span>
<span class="sub" id="updated">waiting for status.json…</span></header>
<main>
<section class="wide"><h2>Savings</h2><div id="savings" class="tiles"></div></section>
<section><h2>Upstream budgets (used of each limit)</h2><div id="budgets"></div></section>
<section><h2>Queue per lane</h2><div id="lanes"></div></section>
<section class="wide"><h2>Clients</h2><div id="clients"></div></section>
<section class="wide"><h2>Refused by the gateway</h2><div id="refused" class="tiles"></div>
</section>
</main>
<footer>refreshes every @SECONDS@ s from <a href="status.json">status.json</a> ·
<a href="metrics">metrics</a> (Prometheus)</footer>
<script>{_JS}</script>
</body>
</html>
""".replace("@SECONDS@", f"{REFRESH_MS / 1000:g}")
