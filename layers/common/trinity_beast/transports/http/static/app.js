/* Trinity Beast Command Center: plain JavaScript, Chart.js for the charts, no build step.
 * The admin key lives in sessionStorage (this tab only) and goes out as a Bearer header;
 * every figure comes from the LRS's admin-only JSON and the LPO's /ws/prices feed. */
"use strict";
(() => {
  const STORE = "trinity-beast-admin-key";
  const PALETTE = ["#4f8cff", "#2ecc8f", "#f5b942", "#a58bff", "#ff5d6c", "#36c5e0", "#ff9f5a", "#e36bd4", "#8d99b5"];
  const PROTOCOL_COLORS = { http: "#4f8cff", udp: "#2ecc8f", ws: "#a58bff" };
  const STATUS_BADGE = { active: "ok", pending: "warn", invited: "info", rejected: "bad", revoked: "muted" };
  const FEED_BADGE = { connected: "ok", degraded: "warn", connecting: "warn", idle: "muted" };
  const EXCHANGE_NAMES = { coinbase: "Coinbase", kraken: "Kraken", gemini: "Gemini", gateio: "Gate.io",
                           cryptocom: "Crypto.com", okx: "OKX" };
  const state = { key: sessionStorage.getItem(STORE), session: null, tab: null, range: "1h", charts: {},
                  ws: null, wsRetry: null, timers: [], prices: {}, partners: [] };
  const $ = (sel, root = document) => root.querySelector(sel);
  const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));

  /* ---- helpers ------------------------------------------------------------------- */
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
      else if (name === "class") el.className = value;
      else if (name === "dataset") Object.assign(el.dataset, value);
      else el.setAttribute(name, value === true ? "" : value);
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      el.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return el;
  }
  const badge = (text, kind) => h("span", { class: `badge badge-${kind || "muted"}` }, text);
  const fmt = (n) => Number(n || 0).toLocaleString("en-US");
  const when = (epoch) => new Date(epoch * 1000).toISOString().replace("T", " ").slice(0, 19) + " UTC";

  class ApiError extends Error {
    constructor(status, message) { super(message); this.status = status; }
  }

  async function api(method, path, body) {
    const init = { method, headers: { Authorization: `Bearer ${state.key}` } };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const response = await fetch(path, init);
    let envelope = null;
    try { envelope = await response.json(); } catch (e) { /* not JSON */ }
    if (!response.ok) {
      if (response.status === 401) signOut("Your key was refused: " + ((envelope && envelope.error) || "sign in again"));
      throw new ApiError(response.status, (envelope && envelope.error) || `HTTP ${response.status}`);
    }
    return envelope.data;
  }

  function toast(message, bad) {
    const el = $("#toast");
    el.textContent = message;
    el.className = bad ? "toast bad" : "toast";
    el.hidden = false;
    clearTimeout(toast.timer);
    toast.timer = setTimeout(() => { el.hidden = true; }, 4000);
  }

  function showError(el, message) {
    el.textContent = message;
    el.hidden = !message;
  }

  async function copy(text, button) {
    try {
      await navigator.clipboard.writeText(text);
    } catch (e) {
      const area = h("textarea", {}, text);
      document.body.append(area);
      area.select();
      document.execCommand("copy");
      area.remove();
    }
    const label = button.textContent;
    button.textContent = "Copied";
    setTimeout(() => { button.textContent = label; }, 1500);
  }

  /* ---- sign-in ------------------------------------------------------------------- */
  async function signIn(secret) {
    state.key = secret;
    try {
      state.session = await api("GET", "/admin/api/session");
    } catch (error) {
      state.key = null;
      sessionStorage.removeItem(STORE);
      showError($("#signin-error"), error.status === 403 ? "That key is not an admin key." : error.message);
      return;
    }
    sessionStorage.setItem(STORE, secret);
    $("#signin").hidden = true;
    $("#app").hidden = false;
    $("#node").textContent = `${state.session.cluster_node} · ${state.session.region}`;
    $("#who").textContent = state.session.api_key_id;
    showTab(location.hash.slice(1) || "partners");
    connectPrices();
    refreshPendingCount();
    state.timers.push(setInterval(refreshPendingCount, 15000));
  }

  function signOut(message) {
    sessionStorage.removeItem(STORE);
    state.key = null;
    state.session = null;
    state.timers.forEach(clearInterval);
    state.timers = [];
    if (state.ws) { state.ws.onclose = null; state.ws.close(); state.ws = null; }
    clearTimeout(state.wsRetry);
    Object.values(state.charts).forEach((c) => c.destroy());
    state.charts = {};
    $("#app").hidden = true;
    $("#signin").hidden = false;
    $("#admin-key").value = "";
    showError($("#signin-error"), message || "");
  }

  /* ---- tabs ---------------------------------------------------------------------- */
  const LOADERS = { partners: loadPartners, pending: loadPending, security: loadSecurity,
                    onboarding: () => {}, usage: loadUsage, feeds: loadFeeds };

  function showTab(name) {
    if (!LOADERS[name]) name = "partners";
    state.tab = name;
    if (location.hash !== `#${name}`) history.replaceState(null, "", `#${name}`);
    $$(".tab").forEach((t) => t.classList.toggle("active", t.dataset.tab === name));
    $$(".panel").forEach((p) => { p.hidden = p.id !== `tab-${name}`; });
    clearInterval(state.tabTimer);
    LOADERS[name]();
    if (name === "feeds") state.tabTimer = setInterval(loadFeeds, 3000);
    if (name === "usage") state.tabTimer = setInterval(loadUsage, 10000);
  }

  /* ---- partners ------------------------------------------------------------------ */
  function stat(label, value) {
    return h("div", { class: "stat" }, h("div", { class: "label" }, label), h("div", { class: "value" }, value));
  }

  async function loadPartners() {
    let data;
    try { data = await api("GET", "/partners"); } catch (e) { return toast(e.message, true); }
    state.partners = data.partners;
    const s = data.by_status;
    $("#partner-stats").replaceChildren(stat("Partners", fmt(data.count)), stat("Active", fmt(s.active)),
      stat("Pending", fmt(s.pending)), stat("Invited", fmt(s.invited)), stat("Revoked / rejected", fmt(s.revoked + s.rejected)));
    const rows = data.partners.map((p) => h("tr", { dataset: { partner: p.id, status: p.status } },
      h("td", {}, h("strong", {}, p.name), h("span", { class: "sub mono" }, p.id)),
      h("td", {}, p.connection_type === "privatelink" ? "PrivateLink · TCP" : "Peering · UDP",
        h("span", { class: "sub mono" }, p.connection_id || "no request yet")),
      h("td", {}, h("span", { class: "mono" }, p.vpc_id), h("span", { class: "sub" }, `${p.aws_account_id} · ${p.region}${p.cidr ? " · " + p.cidr : ""}`)),
      h("td", {}, badge(p.status, STATUS_BADGE[p.status])),
      h("td", {}, h("span", { class: "mono" }, p.api_key_id || "—"),
        p.usage && !p.usage.key_active ? h("span", { class: "sub" }, "revoked") : null),
      h("td", { class: "num" }, p.usage ? fmt(p.usage.monthly_usage) : "—"),
      h("td", { class: "cell-actions" }, partnerActions(p))));
    $("#partners-table tbody").replaceChildren(...rows);
    $("#partners-empty").hidden = rows.length > 0;
  }

  function partnerActions(p) {
    const out = [h("button", { class: "btn btn-small", type: "button", onclick: () => showPartner(p.id) }, "Details")];
    if (p.status === "pending" || p.status === "invited")
      out.push(h("button", { class: "btn btn-small btn-ok", type: "button", onclick: () => act(p, "approve") }, "Approve"));
    if (p.status === "pending" || p.status === "invited")
      out.push(h("button", { class: "btn btn-small btn-danger", type: "button", onclick: () => act(p, "reject") }, "Reject"));
    if (p.status === "active")
      out.push(h("button", { class: "btn btn-small btn-danger", type: "button", onclick: () => act(p, "revoke") }, "Revoke"));
    return out;
  }

  async function act(partner, action, body) {
    if ((action === "revoke" || action === "reject") &&
        !confirm(`${action[0].toUpperCase() + action.slice(1)} ${partner.name}? Its API key stops working.`)) return;
    try {
      const data = await api("POST", `/partners/${partner.id}/${action}`, body || {});
      toast(`${partner.name}: ${data.partner.status}${data.changed ? "" : " (no change)"}`);
    } catch (e) {
      toast(`${partner.name}: ${e.message}`, true);
    }
    refreshPendingCount();
    LOADERS[state.tab]();
  }

  async function showPartner(id) {
    const box = $("#partner-detail");
    box.classList.add("detail");
    let data, onboarding = null;
    try { data = await api("GET", `/partners/${id}`); } catch (e) { return toast(e.message, true); }
    try { onboarding = await api("GET", `/partners/${id}/onboarding`); } catch (e) { /* settings missing */ }
    const p = data.partner;
    const field = (label, value) => h("div", {}, h("span", {}, label), h("div", { class: "mono" }, value || "—"));
    box.replaceChildren(
      h("div", { class: "panel-head" }, h("div", {}, h("h2", {}, p.name), h("p", { class: "muted" }, `Created ${when(p.created_at)}`)),
        h("button", { class: "btn btn-ghost", type: "button", onclick: () => { box.hidden = true; } }, "Close")),
      h("div", { class: "detail-grid" }, field("Status", p.status), field("Account", p.aws_account_id), field("Region", p.region),
        field("VPC", p.vpc_id), field("CIDR", p.cidr), field("Connection", p.connection_id), field("API key", p.api_key_id),
        field("Requests this month", data.usage ? fmt(data.usage.monthly_usage) : null)),
      onboarding ? commandList(onboarding) : null,
      h("h3", {}, "Audit trail"),
      h("ul", { class: "audit" }, data.audit.map((e) => h("li", {}, h("time", {}, when(e.at)),
        h("strong", {}, e.action), h("span", { class: "cell-muted" }, `by ${e.actor}`),
        Object.entries(e.detail).map(([k, v]) => h("span", { class: "kv" }, `${k}: ${v}`))))));
    box.hidden = false;
    box.scrollIntoView({ behavior: "smooth", block: "start" });
  }

  /* ---- pending approvals ----------------------------------------------------------- */
  async function refreshPendingCount() {
    try {
      const data = await api("GET", "/partners/pending");
      $("#pending-count").textContent = data.count;
      $("#pending-count").hidden = data.count === 0;
    } catch (e) { $("#pending-count").hidden = true; }
  }

  async function loadPending() {
    let data;
    showError($("#pending-error"), "");
    try { data = await api("GET", "/partners/pending"); } catch (e) {
      $("#pending-table tbody").replaceChildren();
      $("#pending-empty").hidden = true;
      return showError($("#pending-error"), e.message);
    }
    const rows = data.requests.map((r) => {
      const partner = r.partner;
      const accept = h("button", { class: "btn btn-small btn-ok", type: "button", disabled: !partner,
        title: partner ? null : "Onboard this account as a partner first",
        onclick: () => act(partner, "approve", { connection_id: r.connection_id }) }, "Accept");
      const reject = h("button", { class: "btn btn-small btn-danger", type: "button",
        onclick: () => partner ? act(partner, "reject") : rejectUnknown(r) }, "Reject");
      return h("tr", { dataset: { connection: r.connection_id } },
        h("td", { class: "mono" }, r.connection_id),
        h("td", {}, r.kind === "privatelink" ? "PrivateLink endpoint" : "VPC peering"),
        h("td", { class: "mono" }, r.owner_account),
        h("td", {}, h("span", { class: "mono" }, r.vpc_id || "—"), r.cidr ? h("span", { class: "sub" }, r.cidr) : null),
        h("td", {}, partner ? [h("strong", {}, partner.name), h("span", { class: "sub" }, partner.status)] : badge("unknown account", "bad")),
        h("td", { class: "cell-actions" }, accept, reject));
    });
    $("#pending-table tbody").replaceChildren(...rows);
    $("#pending-empty").hidden = rows.length > 0;
    $("#pending-count").textContent = data.count;
    $("#pending-count").hidden = data.count === 0;
  }

  async function rejectUnknown(request) {
    if (!confirm(`Reject ${request.connection_id} from account ${request.owner_account}?`)) return;
    try {
      await api("POST", "/partners/pending/reject", { connection_id: request.connection_id });
      toast(`${request.connection_id} rejected`);
    } catch (e) { toast(e.message, true); }
    loadPending();
  }

  /* ---- security groups --------------------------------------------------------------- */
  const CIDR_RE = /^(25[0-5]|2[0-4]\d|1?\d?\d)(\.(25[0-5]|2[0-4]\d|1?\d?\d)){3}\/([0-9]|[12]\d|3[0-2])$/;

  async function loadSecurity() {
    let data;
    try { data = await api("GET", "/security-groups/udp"); } catch (e) {
      $("#sg-table tbody").replaceChildren();
      return showError($("#sg-error"), e.message);
    }
    $("#sg-summary").textContent = `security group ${data.security_group_id}, UDP ports ${data.ports.join(" and ")}.`;
    renderRules(data.rules);
  }

  function renderRules(rules) {
    const rows = rules.map((r) => h("tr", { dataset: { cidr: r.cidr } },
      h("td", { class: "mono" }, r.cidr),
      h("td", {}, r.ports.join(", ")),
      h("td", {}, r.description || "—"),
      h("td", {}, r.partner ? r.partner.name : "—"),
      h("td", { class: "cell-actions" }, h("button", { class: "btn btn-small btn-danger", type: "button",
        disabled: !!r.partner, title: r.partner ? "Revoke the partner to close its network" : null,
        onclick: () => removeCidr(r.cidr) }, "Remove"))));
    $("#sg-table tbody").replaceChildren(...rows);
    $("#sg-empty").hidden = rows.length > 0;
  }

  async function addCidr(event) {
    event.preventDefault();
    const input = $("#sg-cidr");
    const cidr = input.value.trim();
    if (!CIDR_RE.test(cidr)) {
      input.classList.add("invalid");
      return showError($("#sg-error"), `"${cidr}" is not an IPv4 CIDR such as 172.31.0.0/16`);
    }
    input.classList.remove("invalid");
    showError($("#sg-error"), "");
    try {
      const data = await api("POST", "/security-groups/udp", { cidr, description: $("#sg-desc").value.trim() });
      renderRules(data.rules);
      input.value = "";
      $("#sg-desc").value = "";
      toast(data.changed ? `UDP access added for ${cidr}` : `${cidr} already had UDP access`);
    } catch (e) {
      input.classList.add("invalid");
      showError($("#sg-error"), e.message);
    }
  }

  async function removeCidr(cidr) {
    if (!confirm(`Remove UDP access for ${cidr}?`)) return;
    try {
      const data = await api("DELETE", `/security-groups/udp?cidr=${encodeURIComponent(cidr)}`);
      renderRules(data.rules);
      toast(`UDP access removed for ${cidr}`);
    } catch (e) { showError($("#sg-error"), e.message); }
  }

  /* ---- onboarding wizard ----------------------------------------------------------- */
  function wizardType() { return $("input[name=connection_type]:checked").value; }

  function wizardBody() {
    const type = wizardType();
    const body = { connection_type: type };
    const names = ["name", "aws_account_id", "region", "vpc_id"].concat(
      type === "privatelink" ? ["subnet_ids", "security_group_ids"] : ["cidr", "route_table_id"]);
    for (const name of names) {
      const value = $(`#wizard-form [name=${name}]`).value.trim();
      if (!value) continue;
      body[name] = name.endsWith("_ids") ? value.split(/[\s,]+/).filter(Boolean) : value;
    }
    return body;
  }

  function commandList(onboarding) {
    const groups = [["partner", "The partner runs"], ["operator", "You run (this stack's account)"]];
    const out = [];
    for (const [side, title] of groups) {
      out.push(h("p", { class: "side-title" }, title));
      for (const c of onboarding.commands.filter((x) => x.side === side)) {
        const button = h("button", { class: "btn btn-small", type: "button" }, "Copy");
        button.addEventListener("click", () => copy(c.command, button));
        out.push(h("div", { class: "cmd" },
          h("div", { class: "cmd-head" }, h("span", { class: "grow" }, c.title),
            c.complete ? null : h("span", { class: "tag" }, "waiting for the partner's id"), button),
          h("pre", {}, c.command)));
      }
    }
    out.push(h("p", { class: "muted" }, "Then the partner reaches: " + onboarding.reach.join(", ")));
    return h("div", { class: "commands" }, out);
  }

  async function wizard(create) {
    const error = $("#wizard-error");
    showError(error, "");
    const body = wizardBody();
    const result = $("#wizard-result");
    try {
      if (!create) {
        const onboarding = await api("POST", "/partners/preview", body);
        result.replaceChildren(h("h3", {}, "Preview"), commandList(onboarding));
        return;
      }
      const data = await api("POST", "/partners", body);
      const secret = data.api_key.key;
      const copyKey = h("button", { class: "btn btn-small", type: "button" }, "Copy key");
      copyKey.addEventListener("click", () => copy(secret, copyKey));
      result.replaceChildren(
        h("h3", {}, `${data.partner.name} invited`),
        h("div", { class: "keybox" }, h("strong", {}, "Partner API key — shown once"),
          h("pre", { class: "mono", id: "new-partner-key" }, secret),
          h("div", { class: "actions" }, h("span", { class: "sub" }, data.api_key.id), copyKey)),
        data.onboarding ? commandList(data.onboarding) : h("p", { class: "error" }, data.onboarding_error));
      result.dataset.partner = data.partner.id;
      $("#wizard-form").reset();
      toggleWizard();
      toast(`${data.partner.name} created: hand over the key and the commands`);
    } catch (e) {
      showError(error, e.message);
    }
  }

  function toggleWizard() {
    const peering = wizardType() === "peering";
    $(".only-peering").hidden = !peering;
    $(".only-privatelink").hidden = peering;
  }

  /* ---- usage ----------------------------------------------------------------------- */
  function timeChart(id, labels, datasets) {
    const existing = state.charts[id];
    if (existing) {
      existing.data.labels = labels;
      existing.data.datasets = datasets;
      existing.update("none");
      return existing;
    }
    state.charts[id] = new Chart(document.getElementById(id), {
      type: "bar",
      data: { labels, datasets },
      options: {
        responsive: true, maintainAspectRatio: false, animation: false,
        interaction: { mode: "index", intersect: false },
        scales: {
          x: { stacked: true, ticks: { color: "#8d99b5", maxTicksLimit: 8, maxRotation: 0 }, grid: { display: false } },
          y: { beginAtZero: true, stacked: true, ticks: { color: "#8d99b5", precision: 0 }, grid: { color: "#1c2640" } },
        },
        plugins: { legend: { labels: { color: "#e6ebf5", boxWidth: 12 } } },
      },
    });
    return state.charts[id];
  }

  function series(label, counts, color) {
    return { label, data: counts, backgroundColor: color + "cc", borderColor: color, borderWidth: 0,
             borderRadius: 3, barPercentage: 0.9, categoryPercentage: 0.9 };
  }

  function tick(iso, granularity) {
    const d = new Date(iso);
    const hm = d.toISOString().slice(11, 16);
    return granularity === "minute" ? hm : `${d.toISOString().slice(5, 10)} ${hm}`;
  }

  async function loadUsage() {
    let data;
    try { data = await api("GET", `/admin/api/usage?range=${state.range}`); } catch (e) { return toast(e.message, true); }
    const labels = data.labels.map((l) => tick(l, data.granularity));
    $("#usage-stats").replaceChildren(stat("Requests", fmt(data.totals.requests)), stat("Errors", fmt(data.totals.errors)),
      stat("Active keys", fmt(data.totals.keys)),
      stat("Top asset", data.top_assets.length ? data.top_assets[0].asset : "—"));
    timeChart("chart-keys", labels, data.by_key.map((k, i) =>
      series(`${k.name} (${k.api_key_id})`, k.counts, PALETTE[i % PALETTE.length])));
    timeChart("chart-protocols", labels, data.by_protocol.map((p) =>
      series(p.protocol.toUpperCase(), p.counts, PROTOCOL_COLORS[p.protocol] || "#8d99b5")));
    const assets = { labels: data.top_assets.map((a) => a.asset),
      datasets: [{ label: "Requests", data: data.top_assets.map((a) => a.requests), backgroundColor: "#4f8cffcc", borderRadius: 6 }] };
    if (state.charts["chart-assets"]) {
      state.charts["chart-assets"].data = assets;
      state.charts["chart-assets"].update("none");
    } else {
      state.charts["chart-assets"] = new Chart(document.getElementById("chart-assets"), {
        type: "bar", data: assets,
        options: { responsive: true, maintainAspectRatio: false, animation: false, indexAxis: "y",
          plugins: { legend: { display: false } },
          scales: { x: { beginAtZero: true, ticks: { color: "#8d99b5", precision: 0 }, grid: { color: "#1c2640" } },
                    y: { ticks: { color: "#e6ebf5" }, grid: { display: false } } } },
      });
    }
    document.getElementById("tab-usage").dataset.total = data.totals.requests;
  }

  /* ---- feeds and the live ticker --------------------------------------------------- */
  async function loadFeeds() {
    let data;
    try { data = await api("GET", "/admin/api/feeds"); } catch (e) { return toast(e.message, true); }
    if (!data.in_process) {
      $("#feed-cards").replaceChildren(h("div", { class: "card empty" },
        "This process runs no exchange feeds (an LRS-only task): feed health lives on the LPO tasks' /health."));
    } else {
      $("#feed-cards").replaceChildren(...Object.entries(data.exchanges).map(([name, f]) =>
        h("div", { class: "feed", dataset: { exchange: name, state: f.state } },
          h("div", { class: "feed-head" }, h("span", { class: "feed-name" }, EXCHANGE_NAMES[name] || name), badge(f.state, FEED_BADGE[f.state] || "bad")),
          h("dl", {}, h("dt", {}, "Last message"), h("dd", {}, f.last_message_age_s === null ? "—" : `${f.last_message_age_s.toFixed(1)} s ago`),
            h("dt", {}, "Ticks"), h("dd", {}, fmt(f.ticks)), h("dt", {}, "Symbols"), h("dd", {}, fmt(f.symbols)),
            h("dt", {}, "Reconnects"), h("dd", {}, fmt(f.reconnects)), h("dt", {}, "Errors"), h("dd", {}, fmt(f.errors))))));
    }
    state.tickerAssets = data.ticker_assets;
    ensureTickerRows();
    if (state.ws && state.ws.readyState === WebSocket.OPEN && !state.subscribed) subscribe();
  }

  function ensureTickerRows() {
    const body = $("#ticker tbody");
    for (const asset of state.tickerAssets || []) {
      if (body.querySelector(`tr[data-asset="${asset}"]`)) continue;
      body.append(h("tr", { dataset: { asset, updates: "0" } }, h("td", {}, h("strong", {}, asset)),
        h("td", { class: "num price" }, "—"), h("td", { class: "num change" }, ""), h("td", { class: "source" }, ""),
        h("td", { class: "updated cell-muted" }, "")));
    }
  }

  function subscribe() {
    if (!state.tickerAssets || !state.tickerAssets.length) return;
    state.ws.send(JSON.stringify({ subscribe: state.tickerAssets }));
    state.subscribed = true;
  }

  function setWsState(text, kind) {
    const el = $("#ws-state");
    el.textContent = text;
    el.className = `badge badge-${kind}`;
  }

  function connectPrices() {
    if (!state.session) return;
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const url = `${scheme}://${location.hostname}:${state.session.lpo_port}${state.session.ws_path}?api_key=${encodeURIComponent(state.key)}`;
    const ws = new WebSocket(url);
    state.ws = ws;
    state.subscribed = false;
    setWsState("connecting…", "warn");
    ws.onopen = async () => {
      setWsState("live", "ok");
      if (!state.tickerAssets) {
        try { state.tickerAssets = (await api("GET", "/admin/api/feeds")).ticker_assets; } catch (e) { return; }
        ensureTickerRows();
      }
      subscribe();
    };
    ws.onmessage = (event) => {
      let msg;
      try { msg = JSON.parse(event.data); } catch (e) { return; }
      if (msg.data && msg.data.type === "price") showPrice(msg.data);
    };
    ws.onclose = (event) => {
      setWsState(event.reason ? `closed: ${event.reason}` : "reconnecting…", "bad");
      state.ws = null;
      if (state.key) state.wsRetry = setTimeout(connectPrices, 2000);
    };
  }

  function showPrice(p) {
    ensureTickerRows();
    const row = $(`#ticker tr[data-asset="${p.asset}"]`);
    if (!row) return;
    const before = state.prices[p.asset];
    state.prices[p.asset] = p.price;
    const digits = p.price >= 100 ? 2 : p.price >= 1 ? 4 : 6;
    const cell = row.querySelector(".price");
    cell.textContent = p.price.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
    if (before !== undefined && before !== p.price) {
      const up = p.price > before;
      const pct = ((p.price - before) / before) * 100;
      const change = row.querySelector(".change");
      change.textContent = `${up ? "▲" : "▼"} ${Math.abs(pct).toFixed(3)}%`;
      change.className = `num change ${up ? "up" : "down"}`;
      row.classList.remove("flash-up", "flash-down");
      void row.offsetWidth; // restart the animation
      row.classList.add(up ? "flash-up" : "flash-down");
    }
    row.querySelector(".source").textContent = p.source;
    row.querySelector(".updated").textContent = new Date(p.timestamp_ms).toISOString().slice(11, 23) + " UTC";
    row.dataset.updates = String(Number(row.dataset.updates) + 1);
    row.dataset.price = String(p.price);
  }

  /* ---- wiring ---------------------------------------------------------------------- */
  document.addEventListener("DOMContentLoaded", () => {
    $("#signin-form").addEventListener("submit", (e) => {
      e.preventDefault();
      showError($("#signin-error"), "");
      const secret = $("#admin-key").value.trim();
      if (secret) signIn(secret);
    });
    $("#signout").addEventListener("click", () => signOut());
    $$(".tab").forEach((t) => t.addEventListener("click", () => showTab(t.dataset.tab)));
    $$("[data-goto]").forEach((el) => el.addEventListener("click", (e) => { e.preventDefault(); showTab(el.dataset.goto); }));
    $("#pending-refresh").addEventListener("click", loadPending);
    $("#sg-form").addEventListener("submit", addCidr);
    $("#sg-cidr").addEventListener("input", (e) => e.target.classList.remove("invalid"));
    $$("input[name=connection_type]").forEach((r) => r.addEventListener("change", toggleWizard));
    $("#wizard-form").addEventListener("submit", (e) => { e.preventDefault(); wizard(true); });
    $("#wizard-preview").addEventListener("click", () => wizard(false));
    $$("#usage-range button").forEach((b) => b.addEventListener("click", () => {
      state.range = b.dataset.range;
      $$("#usage-range button").forEach((x) => x.classList.toggle("on", x === b));
      loadUsage();
    }));
    window.addEventListener("hashchange", () => { if (state.session) showTab(location.hash.slice(1)); });
    if (state.key) signIn(state.key);
  });
})();
