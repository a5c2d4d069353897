/* Trinity Beast Command Center: plain JavaScript, Chart.js for the charts, no build step.
 * The admin key lives in sessionStorage (this tab only) and goes out as a Bearer header (and
 * in the WebSocket's first message, never in a URL); every figure comes from the LRS's
 * admin-only JSON and the LPO's /ws/prices feed. */
"use strict";
(() => {
  const STORE = "trinity-beast-admin-key";
  const PALETTE = ["#4f8cff", "#2ecc8f", "#f5b942", "#a58bff", "#ff5d6c", "#36c5e0", "#ff9f5a", "#e36bd4", "#8d99b5"];
  const PROTOCOL_COLORS = { http: "#4f8cff", udp: "#2ecc8f", ws: "#a58bff" };
  const STATUS_BADGE = { active: "ok", pending: "warn", invited: "info", rejected: "bad", revoked: "muted" };
  const FEED_BADGE = { connected: "ok", degraded: "warn", connecting: "warn", idle: "muted" };
  const EXCHANGE_NAMES = { coinbase: "Coinbase", kraken: "Kraken", gemini: "Gemini", gateio: "Gate.io",
                           cryptocom: "Crypto.com", okx: "OKX" };
  const TABS = ["partners", "pending", "security", "onboarding", "usage", "feeds", "audit"];
  const state = { key: sessionStorage.getItem(STORE), session: null, tab: null, range: "1h", charts: {},
                  ws: null, wsRetry: null, timers: [], prices: {}, partners: [], drift: {}, previewId: null,
                  usagePartner: "" };
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
  /* replaceChildren, skipping the nulls of conditional parts (it would print "null"). */
  const fill = (el, ...children) => el.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
  const badge = (text, kind) => h("span", { class: `badge badge-${kind || "muted"}` }, text);
  const fmt = (n) => Number(n || 0).toLocaleString("en-US");
  const when = (epoch) => new Date(epoch * 1000).toISOString().replace("T", " ").slice(0, 19) + " UTC";
  const td = (label, attrs, ...children) => h("td", { ...(attrs || {}), "data-label": label }, ...children);

  class ApiError extends Error {
    constructor(status, message, data) { super(message); this.status = status; this.data = data; }
  }

  async function api(method, path, body) {
    const init = { method, headers: { Authorization: `Bearer ${state.key}` } };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let response;
    try { response = await fetch(path, init); } catch (e) {
      throw new ApiError(0, `the server did not answer (${e.message})`);
    }
    let envelope = null;
    try { envelope = await response.json(); } catch (e) { /* not JSON */ }
    if (!response.ok) {
      if (response.status === 401) signOut("Your key was refused: " + ((envelope && envelope.error) || "sign in again"));
      throw new ApiError(response.status, (envelope && envelope.error) || `HTTP ${response.status}`, envelope && envelope.data);
    }
    return envelope.data;
  }

  /* A call that takes a while: its button is disabled and spins until the answer is in, so
   * a second click cannot send it twice. */
  async function busy(button, work) {
    if (!button) return work();
    if (button.getAttribute("aria-busy") === "true") return undefined;
    const label = Array.from(button.childNodes).map((n) => n.cloneNode(true));
    button.disabled = true;
    button.setAttribute("aria-busy", "true");
    button.replaceChildren(h("span", { class: "spinner", "aria-hidden": "true" }), ...label);
    try { return await work(); } finally {
      button.replaceChildren(...label);
      button.disabled = false;
      button.removeAttribute("aria-busy");
    }
  }

  function toast(message) {
    const el = $("#toast");
    el.textContent = message;
    el.className = "toast";
    el.hidden = false;
    clearTimeout(toast.timer);
    toast.timer = setTimeout(() => { el.hidden = true; }, 5000);
  }

  /* Errors stay until dismissed, and say what failed. */
  function notify(title, message, info) {
    const close = h("button", { class: "btn btn-small", type: "button" }, "Dismiss");
    const note = h("div", { class: info ? "notice notice-info" : "notice", role: info ? "status" : "alert" },
      h("p", {}, h("strong", {}, title), message), close);
    close.addEventListener("click", () => note.remove());
    $("#notices").append(note);
    return note;
  }

  function showError(el, message) {
    el.textContent = message;
    el.hidden = !message;
  }

  async function copy(text, button) {
    try {
      await navigator.clipboard.writeText(text);
    } catch (e) {
      const area = h("textarea", { "aria-hidden": "true" }, text);
      document.body.append(area);
      area.select();
      document.execCommand("copy");
      area.remove();
    }
    const label = button.textContent;
    button.textContent = "Copied";
    setTimeout(() => { button.textContent = label; }, 1500);
  }

  /* A command wraps only between words: each word is unbreakable (no break after "vpc-"),
   * and a word longer than the line (JSON) scrolls inside the block. */
  function cmdPre(command) {
    const out = [];
    command.split(" ").forEach((word, i) => {
      if (i) out.push(" ");
      out.push(h("span", { class: "tok" }, word));
    });
    return h("pre", { tabindex: "0" }, out);  // focusable: a long word scrolls, by keyboard too
  }

  function copyButton(text, label, name) {
    const button = h("button", { class: "btn btn-small", type: "button", "aria-label": name || null }, label || "Copy");
    button.addEventListener("click", () => copy(text, button));
    return button;
  }

  function download(name, text) {
    const url = URL.createObjectURL(new Blob([text], { type: "text/markdown" }));
    const a = h("a", { href: url, download: name, hidden: true });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 5000);
  }

  /* EC2's character set for rule descriptions, as partners/descriptions.py applies it. */
  const ALLOWED = /^[a-zA-Z0-9 ._\-:/()#,@[\]+=&;{}!$*]$/;
  const SPECIAL = { "ß": "ss", "Æ": "AE", "æ": "ae", "Ø": "O", "ø": "o", "Œ": "OE", "œ": "oe", "Ð": "D", "ð": "d",
    "Þ": "Th", "þ": "th", "Ł": "L", "ł": "l", "Đ": "D", "đ": "d", "ı": "i", "<": "(", ">": ")", "\t": " ", "\n": " ",
    "\r": " ", "'": "", "\"": "", "`": "", "’": "", "‘": "", "“": "", "”": "" };
  function ec2Safe(text, limit) {
    let out = "";
    for (const ch of text) {
      if (ALLOWED.test(ch)) out += ch;
      else if (ch in SPECIAL) out += SPECIAL[ch];
      else {
        const base = ch.normalize("NFKD").replace(/\p{M}/gu, "");
        out += base && Array.from(base).every((c) => ALLOWED.test(c)) ? base : "-";
      }
    }
    return out.replace(/ {2,}/g, " ").trim().slice(0, limit || 255);
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
    fillRegions();
    showConfig();
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
    clearInterval(state.tabTimer);
    if (state.ws) { state.ws.onclose = null; state.ws.close(); state.ws = null; }
    clearTimeout(state.wsRetry);
    Object.values(state.charts).forEach((c) => c.destroy());
    state.charts = {};
    $("#notices").replaceChildren();
    $("#app").hidden = true;
    $("#signin").hidden = false;
    $("#admin-key").value = "";
    showError($("#signin-error"), message || "");
  }

  function fillRegions() {
    const select = $("#w-region");
    const regions = state.session.regions || [];
    select.replaceChildren(...regions.map((r) => h("option", { value: r }, r)));
    select.value = regions.includes(state.session.region) ? state.session.region : regions[0];
  }

  /* An unconfigured stack says so on the overview, not only where an action fails. */
  function showConfig() {
    const net = state.session.partner_network;
    const box = $("#config-banner");
    if (!net || net.configured) { box.hidden = true; return; }
    const lines = Object.entries(net.missing).filter(([, names]) => names.length).map(([type, names]) =>
      h("li", {}, `${type === "privatelink" ? "PrivateLink" : "VPC peering and UDP access"}: set ${names.join(", ")}`));
    box.replaceChildren(h("strong", {}, "Partner network not configured. "),
      "Records and keys work, but onboarding commands, approvals and UDP access need this stack's settings:",
      h("ul", {}, lines), h("span", { class: "muted" }, "See docs/configuration.md, section Partner network."));
    box.hidden = false;
  }

  /* ---- tabs (WAI-ARIA tabs pattern: arrows, Home and End move and select) ---------- */
  const LOADERS = { partners: loadPartners, pending: () => loadPending(true), security: loadSecurity,
                    onboarding: () => {}, usage: openUsage, feeds: loadFeeds, audit: loadAudit };

  function showTab(name, focus) {
    if (!LOADERS[name]) name = "partners";
    state.tab = name;
    if (location.hash !== `#${name}`) history.replaceState(null, "", `#${name}`);
    $$(".tab").forEach((t) => {
      const on = t.dataset.tab === name;
      t.setAttribute("aria-selected", on ? "true" : "false");
      t.tabIndex = on ? 0 : -1;
      t.classList.toggle("active", on);
      if (on && focus) t.focus();
    });
    $$(".panel").forEach((p) => { p.hidden = p.id !== `tab-${name}`; });
    clearInterval(state.tabTimer);
    LOADERS[name]();
    if (name === "feeds") state.tabTimer = setInterval(loadFeeds, 3000);
    if (name === "usage") state.tabTimer = setInterval(loadUsage, 10000);
    if (name === "pending") state.tabTimer = setInterval(() => loadPending(false), 10000);
  }

  function tabKeys(event) {
    const i = TABS.indexOf(state.tab);
    const to = { ArrowRight: i + 1, ArrowLeft: i - 1, Home: 0, End: TABS.length - 1 }[event.key];
    if (to === undefined) return;
    event.preventDefault();
    showTab(TABS[(to + TABS.length) % TABS.length], true);
  }

  /* ---- partners ------------------------------------------------------------------ */
  function stat(label, value) {
    return h("div", { class: "stat" }, h("div", { class: "label" }, label), h("div", { class: "value" }, value));
  }

  async function loadPartners() {
    let data;
    try { data = await api("GET", "/partners"); } catch (e) { return notify("Loading partners failed", e.message); }
    state.partners = data.partners;
    renderPartners(data);
    fillUsagePartners();
    reconcile(null);
  }

  function renderPartners(data) {
    const s = data.by_status;
    $("#partner-stats").replaceChildren(stat("Partners", fmt(data.count)), stat("Active", fmt(s.active)),
      stat("Pending", fmt(s.pending)), stat("Invited", fmt(s.invited)), stat("Revoked / rejected", fmt(s.revoked + s.rejected)));
    const rows = data.partners.map((p) => {
      const drift = state.drift[p.id] || [];
      return h("tr", { dataset: { partner: p.id, status: p.status, drift: drift.length ? "yes" : "no" } },
        td("Partner", {}, h("strong", {}, p.name), h("span", { class: "sub mono" }, p.id)),
        td("Connection", {}, p.connection_type === "privatelink" ? "PrivateLink · TCP" : "Peering · UDP",
          h("span", { class: "sub mono" }, p.connection_id || "no request yet")),
        td("Network", {}, h("span", { class: "mono" }, p.vpc_id), h("span", { class: "sub" }, `${p.aws_account_id} · ${p.region}${p.cidr ? " · " + p.cidr : ""}`)),
        td("Status", {}, badge(p.status, STATUS_BADGE[p.status]),
          drift.length ? [" ", h("span", { class: "badge badge-drift drift", title: drift.map((d) => d.message).join("\n") }, "drift")] : null,
          drift.length ? h("ul", { class: "drift-list" }, drift.map((d) => h("li", {}, d.message))) : null),
        td("API key", {}, h("span", { class: "mono" }, p.api_key_id || "—"),
          p.usage && !p.usage.key_active ? h("span", { class: "sub" }, "revoked") : null),
        td("Requests (month)", { class: "num" }, p.usage ? fmt(p.usage.monthly_usage) : "—"),
        h("td", { class: "cell-actions" }, partnerActions(p)));
    });
    $("#partners-table tbody").replaceChildren(...rows);
    $("#partners-empty").hidden = rows.length > 0;
  }

  /* Read EC2, adopt what an operator did by hand, and mark drift. */
  async function reconcile(button) {
    let data;
    try {
      data = await busy(button, () => api("POST", "/partners/reconcile", {}));
    } catch (e) {
      if (!button && /partner network not configured/.test(e.message)) {
        // The banner above says why; the automatic refresh says only that AWS was not read.
        $("#reconcile-note").textContent = `Not compared with AWS: ${e.message}.`;
        return;
      }
      $("#reconcile-note").textContent = "";
      return notify("Refresh from AWS failed", e.message);
    }
    if (!data) return;
    state.drift = Object.fromEntries(data.partners.map((r) => [r.partner.id, r.drift]));
    const adopted = data.partners.flatMap((r) => r.adopted.map((a) => `${r.partner.name}: ${a}`));
    $("#reconcile-note").textContent = `Compared with AWS at ${new Date().toISOString().slice(11, 19)} UTC: ` +
      `${data.drifted} partner(s) with drift${adopted.length ? "; adopted " + adopted.join("; ") : ""}.`;
    if (adopted.length) toast(`Adopted from AWS: ${adopted.join("; ")}`);
    let listed;
    try { listed = await api("GET", "/partners"); } catch (e) { return; }
    state.partners = listed.partners;
    if (state.tab === "partners") renderPartners(listed);
  }

  function partnerActions(p) {
    const out = [h("button", { class: "btn btn-small", type: "button", "aria-label": `Details of ${p.name}`,
      onclick: () => showPartner(p.id) }, "Details")];
    if (p.status === "pending" || p.status === "invited" || (p.status === "active" && (state.drift[p.id] || []).length)) {
      const label = p.status === "active" ? "Approve again" : "Approve";
      const approve = h("button", { class: "btn btn-small btn-ok", type: "button", "aria-label": `${label} ${p.name}` }, label);
      approve.addEventListener("click", () => act(p, "approve", {}, approve));
      out.push(approve);
    }
    if (p.status === "pending" || p.status === "invited")
      out.push(h("button", { class: "btn btn-small btn-danger", type: "button", "aria-label": `Reject ${p.name}`,
        onclick: () => confirmEnd(p, "reject") }, "Reject"));
    if (p.status === "active")
      out.push(h("button", { class: "btn btn-small btn-danger", type: "button", "aria-label": `Revoke ${p.name}`,
        onclick: () => confirmEnd(p, "revoke") }, "Revoke"));
    if ((p.status === "revoked" || p.status === "rejected") && (state.drift[p.id] || []).length) {
      const verb = p.status === "revoked" ? "revoke" : "reject";
      out.push(h("button", { class: "btn btn-small btn-danger", type: "button", "aria-label": `Clean up ${p.name}`,
        onclick: () => confirmEnd(p, verb) }, "Remove leftovers"));
    }
    return out;
  }

  const STEP_NAMES = { approve: "Approve", reject: "Reject", revoke: "Revoke" };

  async function act(partner, action, body, button) {
    try {
      const data = await busy(button, () => api("POST", `/partners/${partner.id}/${action}`, body || {}));
      if (!data) return;
      const remain = (data.remain || []).map((r) => r.message);
      toast(`${partner.name}: ${data.partner.status}${data.changed ? "" : " (no change)"}` +
            (remain.length ? `. Still in place: ${remain.join("; ")}` : ""));
      if (remain.length && action !== "approve") notify(`${partner.name}: ${data.partner.status}; still in place`, remain.join("; "), true);
    } catch (e) {
      notify(`${STEP_NAMES[action] || action} ${partner.name} failed`, e.message);
    }
    refreshPendingCount();
    LOADERS[state.tab]();
  }

  /* Revoke and reject say exactly what they remove and what stays, and take a reason. */
  async function confirmEnd(partner, action) {
    let plan;
    try { plan = await api("GET", `/partners/${partner.id}/teardown`); } catch (e) {
      return notify(`Cannot prepare ${action} of ${partner.name}`, e.message);
    }
    const dialog = $("#confirm-dialog");
    const verb = action === "revoke" ? "Revoke" : "Reject";
    $("#confirm-title").textContent = `${verb} ${partner.name}?`;
    const removes = plan.remove.map((p) => h("li", { dataset: { kind: p.kind } }, p.message));
    if (plan.key) removes.push(h("li", { dataset: { kind: "key" } }, plan.key));
    fill($("#confirm-body"),
      h("p", {}, removes.length ? "This removes:" : "Nothing is left to remove in EC2."),
      removes.length ? h("ul", { class: "plan" }, removes) : null,
      plan.remain.length ? h("p", {}, "This stays, and why:") : null,
      plan.remain.length ? h("ul", { class: "plan plan-stay" }, plan.remain.map((p) => h("li", { dataset: { kind: p.kind } }, p.message))) : null);
    $("#confirm-reason").value = "";
    $("#confirm-ok").textContent = verb;
    dialog.showModal();
    $("#confirm-reason").focus();
    const answer = await new Promise((resolve) => {
      const done = (value) => { dialog.removeEventListener("close", onClose); resolve(value); };
      const onClose = () => done(dialog.returnValue === "ok");
      dialog.addEventListener("close", onClose);
    });
    if (!answer) return;
    const reason = $("#confirm-reason").value.trim();
    await act(partner, action, { reason }, null);
  }

  function field(label, value) {
    return h("div", {}, h("span", {}, label), h("div", { class: "mono" }, value || "—"));
  }

  async function showPartner(id) {
    const box = $("#partner-detail");
    box.classList.add("detail");
    let data, onboarding = null, handoff = null, handoffError = null;
    try { data = await api("GET", `/partners/${id}`); } catch (e) { return notify("Loading the partner failed", e.message); }
    const p = data.partner;
    const live = p.status !== "revoked" && p.status !== "rejected";
    if (live) {
      try { onboarding = await api("GET", `/partners/${id}/onboarding`); } catch (e) { /* settings missing: said below */ }
      try { handoff = await api("GET", `/partners/${id}/handoff`); } catch (e) { handoffError = e.message; }
    }
    const drift = state.drift[p.id] || [];
    const close = h("button", { class: "btn btn-ghost", type: "button", onclick: () => { box.hidden = true; } }, "Close");
    box.replaceChildren(...[
      h("div", { class: "panel-head" }, h("div", {}, h("h2", { id: "partner-detail-title", tabindex: "-1" }, p.name),
        h("p", { class: "muted" }, `Created ${when(p.created_at)}`)), close),
      h("div", { class: "detail-grid" }, field("Status", p.status), field("Account", p.aws_account_id), field("Region", p.region),
        field("VPC", p.vpc_id), field("CIDR", p.cidr), field("Connection", p.connection_id), field("API key", p.api_key_id),
        field("Requests this month", data.usage ? fmt(data.usage.monthly_usage) : null)),
      drift.length ? h("div", { class: "banner" }, h("strong", {}, "Drift: "), "the record and AWS disagree.",
        h("ul", { class: "drift-list" }, drift.map((d) => h("li", {}, d.message)))) : null,
      live ? null : h("p", { class: "muted" }, `This partner is ${p.status}: it has no onboarding commands and nothing to hand over.`),
      handoff ? handoffSection(handoff) : (handoffError ? h("p", { class: "error" }, `Hand-off: ${handoffError}`) : null),
      onboarding ? [h("h3", {}, "All commands (both sides)"), commandList(onboarding)] : null,
      h("h3", {}, "Audit trail"),
      h("ul", { class: "audit" }, data.audit.map((e) => h("li", {}, h("time", {}, when(e.at)),
        h("strong", {}, e.action), h("span", { class: "cell-muted" }, `by ${e.actor}`),
        Object.entries(e.detail).map(([k, v]) => h("span", { class: "kv" }, `${k}: ${Array.isArray(v) ? v.join("; ") : v}`)))))
    ].flat().filter(Boolean));
    box.hidden = false;
    box.scrollIntoView({ block: "start" });
    $("#partner-detail-title").focus();
  }

  /* What the partner gets: reference values, the steps, the wait, and examples to test with. */
  function handoffSection(d) {
    const rows = d.reference.map((r) => h("tr", {}, h("td", {}, r.label), h("td", { class: "mono" }, r.value)));
    const download_ = h("button", { class: "btn btn-primary", type: "button", id: "handoff-download" }, "Download hand-off sheet (.md)");
    download_.addEventListener("click", () => download(d.filename, d.markdown));
    const cmd = (title, command, extra) => h("div", { class: "cmd" },
      h("div", { class: "cmd-head" }, h("span", { class: "grow" }, title), extra, copyButton(command, "Copy", `Copy: ${title}`)),
      cmdPre(command));
    return h("section", { class: "handoff", id: "handoff", "aria-labelledby": "handoff-title" },
      h("h3", { id: "handoff-title" }, `Hand-off for ${d.name}`),
      h("div", { class: "table-wrap" }, h("table", { class: "table ref-table", id: "handoff-reference" },
        h("caption", { class: "sr-only" }, "Reference values"), h("tbody", {}, rows))),
      d.endpoint_dns ? h("p", {}, "Endpoint DNS: ", h("code", { id: "handoff-dns" }, d.endpoint_dns)) : null,
      h("p", { class: "side-title" }, "1. The partner runs"),
      h("div", { class: "commands" }, d.partner_commands.map((c) => cmd(c.title, c.command,
        c.complete ? null : h("span", { class: "tag" }, "waiting for the partner's id")))),
      d.notes.map((n) => h("p", { class: "muted" }, n)),
      h("p", { class: "side-title" }, `2. ${d.wait.title}`), h("p", {}, d.wait.text), cmd("Check the state", d.wait.command),
      h("p", { class: "side-title" }, "3. Test the connection"),
      h("div", { class: "commands", id: "handoff-examples" }, d.examples.map((e) => cmd(e.title, e.command))),
      h("div", { class: "actions" }, download_, copyButton(d.markdown, "Copy sheet", "Copy the hand-off sheet")));
  }

  /* ---- pending approvals ----------------------------------------------------------- */
  async function refreshPendingCount() {
    try {
      const data = await api("GET", "/partners/pending");
      $("#pending-count").textContent = data.count;
      $("#pending-count").hidden = data.count === 0;
    } catch (e) { $("#pending-count").hidden = true; }
  }

  async function loadPending(first) {
    let data;
    const table = $("#pending-table");
    if (first) {
      $("#pending-table tbody").replaceChildren();
      $("#pending-empty").hidden = true;
      $("#pending-loading").hidden = false;
    }
    table.setAttribute("aria-busy", "true");
    try { data = await api("GET", "/partners/pending"); } catch (e) {
      $("#pending-table tbody").replaceChildren();
      $("#pending-empty").hidden = true;
      $("#pending-loading").hidden = true;
      table.setAttribute("aria-busy", "false");
      return showError($("#pending-error"), e.message);
    }
    showError($("#pending-error"), "");
    $("#pending-loading").hidden = true;
    table.setAttribute("aria-busy", "false");
    const rows = data.requests.map((r) => {
      const partner = r.partner;
      const accept = h("button", { class: "btn btn-small btn-ok", type: "button", disabled: !partner,
        "aria-label": `Accept ${r.connection_id}`, title: partner ? null : "Onboard this account as a partner first" }, "Accept");
      accept.addEventListener("click", () => act(partner, "approve", { connection_id: r.connection_id }, accept));
      const reject = h("button", { class: "btn btn-small btn-danger", type: "button", "aria-label": `Reject ${r.connection_id}` }, "Reject");
      reject.addEventListener("click", () => partner ? confirmEnd(partner, "reject") : rejectUnknown(r, reject));
      return h("tr", { dataset: { connection: r.connection_id } },
        td("Request", { class: "mono" }, r.connection_id),
        td("Type", {}, r.kind === "privatelink" ? "PrivateLink endpoint" : "VPC peering"),
        td("From account", { class: "mono" }, r.owner_account),
        td("VPC / CIDR", {}, h("span", { class: "mono" }, r.vpc_id || "—"), r.cidr ? h("span", { class: "sub" }, r.cidr) : null),
        td("Partner", {}, partner ? [h("strong", {}, partner.name), h("span", { class: "sub" }, partner.status)] : badge("unknown account", "bad")),
        h("td", { class: "cell-actions" }, accept, reject));
    });
    $("#pending-table tbody").replaceChildren(...rows);
    $("#pending-empty").hidden = rows.length > 0;
    $("#pending-count").textContent = data.count;
    $("#pending-count").hidden = data.count === 0;
    $("#pending-updated").textContent = `Read from EC2 at ${new Date().toISOString().slice(11, 19)} UTC.`;
  }

  async function rejectUnknown(request, button) {
    if (!confirm(`Reject ${request.connection_id} from account ${request.owner_account}?`)) return;
    try {
      await busy(button, () => api("POST", "/partners/pending/reject", { connection_id: request.connection_id }));
      toast(`${request.connection_id} rejected`);
    } catch (e) { notify(`Rejecting ${request.connection_id} failed`, e.message); }
    loadPending(false);
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
    const rows = rules.map((r) => {
      const remove = h("button", { class: "btn btn-small btn-danger", type: "button", "aria-label": `Remove ${r.cidr}`,
        disabled: !!(r.partner && !r.orphaned), title: r.partner && !r.orphaned ? "Revoke the partner to close its network" : null }, "Remove");
      remove.addEventListener("click", () => removeCidr(r.cidr, remove));
      return h("tr", { dataset: { cidr: r.cidr } },
        td("CIDR", { class: "mono" }, r.cidr),
        td("UDP ports", {}, r.ports.join(", ")),
        td("Description", {}, r.description || "—"),
        td("Partner", {}, r.partner ? [r.partner.name, r.orphaned ? [" ", badge(`left over: ${r.partner.status}`, "warn")] : null] : "—"),
        h("td", { class: "cell-actions" }, remove));
    });
    $("#sg-table tbody").replaceChildren(...rows);
    $("#sg-empty").hidden = rows.length > 0;
  }

  function previewDescription() {
    const typed = $("#sg-desc").value;
    const stored = ec2Safe(typed.trim(), 200);
    $("#sg-desc-preview").textContent = typed.trim() && stored !== typed.trim()
      ? `Stored as "${stored}": EC2 allows only a-z A-Z 0-9, space and ._-:/()#,@[]+=&;{}!$*.`
      : "EC2 allows only a-z A-Z 0-9, space and ._-:/()#,@[]+=&;{}!$* in a rule description.";
  }

  async function addCidr(event) {
    event.preventDefault();
    const input = $("#sg-cidr");
    const cidr = input.value.trim();
    if (!CIDR_RE.test(cidr)) {
      input.setAttribute("aria-invalid", "true");
      return showError($("#sg-error"), `"${cidr}" is not an IPv4 CIDR such as 172.31.0.0/16`);
    }
    input.removeAttribute("aria-invalid");
    showError($("#sg-error"), "");
    try {
      const data = await busy($("#sg-add"), () => api("POST", "/security-groups/udp", { cidr, description: $("#sg-desc").value.trim() }));
      if (!data) return;
      renderRules(data.rules);
      input.value = "";
      $("#sg-desc").value = "";
      previewDescription();
      const d = data.description;
      toast((data.changed ? `UDP access added for ${cidr}` : `${cidr} already had UDP access`) +
            (d && d.changed ? ` (description stored as "${d.stored}")` : ""));
    } catch (e) {
      input.setAttribute("aria-invalid", "true");
      showError($("#sg-error"), e.message);
    }
  }

  async function removeCidr(cidr, button) {
    if (!confirm(`Remove UDP access for ${cidr}?`)) return;
    try {
      const data = await busy(button, () => api("DELETE", `/security-groups/udp?cidr=${encodeURIComponent(cidr)}`));
      if (!data) return;
      renderRules(data.rules);
      toast(`UDP access removed for ${cidr}`);
    } catch (e) { showError($("#sg-error"), e.message); }
  }

  /* ---- onboarding wizard ----------------------------------------------------------- */
  const FIELD_INPUT = { name: "w-name", aws_account_id: "w-account", region: "w-region", vpc_id: "w-vpc",
    subnet_ids: "w-subnets", security_group_ids: "w-sgs", cidr: "w-cidr", route_table_id: "w-rtb" };

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
    if (state.previewId) body.id = state.previewId;
    return body;
  }

  function clearFieldErrors() {
    for (const id of Object.values(FIELD_INPUT)) {
      $(`#${id}`).removeAttribute("aria-invalid");
      showError($(`#${id}-error`), "");
    }
  }

  /* Every problem at once, each next to its field. */
  function showFieldErrors(error) {
    const errors = (error.data && error.data.errors) || [];
    let first = null;
    for (const e of errors) {
      const id = FIELD_INPUT[e.field];
      if (!id) continue;
      $(`#${id}`).setAttribute("aria-invalid", "true");
      showError($(`#${id}-error`), e.message);
      first = first || $(`#${id}`);
    }
    showError($("#wizard-error"), errors.length > 1 ? `${errors.length} problems: see the fields marked in red.` : error.message);
    if (first) first.focus();
  }

  function commandList(onboarding) {
    const groups = [["partner", "The partner runs"], ["operator", "You run (this stack's account)"]];
    const out = [];
    for (const [side, title] of groups) {
      out.push(h("p", { class: "side-title" }, title));
      for (const c of onboarding.commands.filter((x) => x.side === side)) {
        out.push(h("div", { class: "cmd" },
          h("div", { class: "cmd-head" }, h("span", { class: "grow" }, c.title),
            c.complete ? null : h("span", { class: "tag" }, "waiting for the partner's id"), copyButton(c.command, "Copy", `Copy: ${c.title}`)),
          cmdPre(c.command)));
      }
    }
    out.push(h("p", { class: "muted" }, "Then the partner reaches: " + onboarding.reach.join(", ")));
    return h("div", { class: "commands" }, out);
  }

  async function wizard(create) {
    const error = $("#wizard-error");
    showError(error, "");
    clearFieldErrors();
    const body = wizardBody();
    const result = $("#wizard-result");
    const button = create ? $("#wizard-create") : $("#wizard-preview");
    try {
      if (!create) {
        const onboarding = await busy(button, () => api("POST", "/partners/preview", body));
        if (!onboarding) return;
        state.previewId = onboarding.partner_id;
        result.replaceChildren(h("h3", {}, "Preview"),
          h("p", { class: "muted" }, `Partner id ${onboarding.partner_id} (kept for the creation, so the rule descriptions are the real ones).`),
          commandList(onboarding));
        return;
      }
      const data = await busy(button, () => api("POST", "/partners", body));
      if (!data) return;
      state.previewId = null;
      const secret = data.api_key.key;
      const detail = h("button", { class: "btn", type: "button", onclick: () => { showTab("partners"); showPartner(data.partner.id); } },
        "Open the hand-off");
      result.replaceChildren(
        h("h3", {}, `${data.partner.name} invited`),
        h("div", { class: "keybox" }, h("strong", {}, "Partner API key — shown once"),
          h("pre", { class: "mono", id: "new-partner-key" }, secret),
          h("div", { class: "actions" }, h("span", { class: "sub" }, data.api_key.id), copyButton(secret, "Copy key"))),
        detail,
        data.onboarding ? commandList(data.onboarding) : h("p", { class: "error" }, data.onboarding_error));
      result.dataset.partner = data.partner.id;
      $("#wizard-form").reset();
      fillRegions();
      toggleWizard();
      toast(`${data.partner.name} created: hand over the key and the commands`);
    } catch (e) {
      showFieldErrors(e);
    }
  }

  function toggleWizard() {
    const peering = wizardType() === "peering";
    $(".only-peering").hidden = !peering;
    $(".only-privatelink").hidden = peering;
    state.previewId = null;
  }

  /* ---- audit log ------------------------------------------------------------------- */
  async function loadAudit() {
    let data;
    try { data = await api("GET", "/partners/audit"); } catch (e) { return notify("Loading the audit log failed", e.message); }
    const names = Object.fromEntries(state.partners.map((p) => [p.id, p.name]));
    const rows = data.entries.slice().reverse().map((e) => h("tr", {},
      td("When (UTC)", { class: "mono" }, when(e.at).replace(" UTC", "")),
      td("Action", {}, h("strong", {}, e.action)),
      td("Partner", {}, e.partner_id ? (names[e.partner_id] || e.partner_id) : "—"),
      td("By", { class: "mono" }, e.actor),
      td("Detail", {}, Object.entries(e.detail).map(([k, v]) => h("span", { class: "kv" }, `${k}: ${Array.isArray(v) ? v.join("; ") : v}`)))));
    $("#audit-table tbody").replaceChildren(...rows);
    $("#audit-empty").hidden = rows.length > 0;
  }

  /* ---- usage ----------------------------------------------------------------------- */
  function timeChart(id, labels, datasets, title) {
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
        plugins: { legend: { labels: { color: "#e6ebf5", boxWidth: 12 } },
                   tooltip: { callbacks: { title: (items) => `${items[0].label} UTC` } } },
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

  function fillUsagePartners() {
    const select = $("#usage-partner");
    const current = select.value;
    select.replaceChildren(h("option", { value: "" }, "All keys (without this console)"),
      ...state.partners.filter((p) => p.api_key_id).map((p) => h("option", { value: p.id }, `Partner: ${p.name}`)));
    select.value = state.partners.some((p) => p.id === current) ? current : "";
  }

  async function openUsage() {
    try { state.partners = (await api("GET", "/partners")).partners; fillUsagePartners(); } catch (e) { /* the filter keeps its list */ }
    return loadUsage();
  }

  async function loadUsage() {
    let data;
    const partner = $("#usage-partner").value;
    const query = `range=${state.range}${partner ? "&partner=" + encodeURIComponent(partner) : ""}`;
    try { data = await api("GET", `/admin/api/usage?${query}`); } catch (e) { return notify("Loading usage failed", e.message); }
    const labels = data.labels.map((l) => tick(l, data.granularity));
    const valid = data.top_assets.filter((a) => !a.invalid);
    fill($("#usage-stats"), stat("Requests", fmt(data.totals.requests)), stat("Errors", fmt(data.totals.errors)),
      stat("Active keys", fmt(data.totals.keys)),
      stat("Top asset", valid.length ? valid[0].asset : "—"),
      partner ? null : h("div", { class: "stat", id: "console-stat", dataset: { total: String(data.console.total) } },
        h("div", { class: "label" }, "This console (admin keys)"), h("div", { class: "value" }, fmt(data.console.total)),
        h("div", { class: "sub" }, "not in the charts")));
    const invalid = data.top_assets.find((a) => a.invalid);
    $("#invalid-assets").textContent = invalid
      ? `"${invalid.asset}" groups ${fmt(invalid.requests)} requests for names that are not listed assets: ${invalid.names.join(", ")}.`
      : "";
    timeChart("chart-keys", labels, data.by_key.map((k, i) =>
      series(`${k.name} (${k.api_key_id})`, k.counts, PALETTE[i % PALETTE.length])), "Requests per key");
    timeChart("chart-protocols", labels, data.by_protocol.map((p) =>
      series(p.protocol.toUpperCase(), p.counts, PROTOCOL_COLORS[p.protocol] || "#8d99b5")), "Requests per protocol");
    const assets = { labels: data.top_assets.map((a) => a.asset),
      datasets: [{ label: "Requests", data: data.top_assets.map((a) => a.requests),
                   backgroundColor: data.top_assets.map((a) => (a.invalid ? "#ff5d6ccc" : "#4f8cffcc")), borderRadius: 6 }] };
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
    try { data = await api("GET", "/admin/api/feeds"); } catch (e) { return notify("Loading feeds failed", e.message); }
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
    // The key goes in the first message, never in the URL (logs and history keep URLs).
    const url = `${scheme}://${location.hostname}:${state.session.lpo_port}${state.session.ws_path}`;
    const ws = new WebSocket(url);
    state.ws = ws;
    state.subscribed = false;
    setWsState("connecting…", "warn");
    ws.onopen = async () => {
      ws.send(JSON.stringify({ auth: state.key }));
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
      if (secret) busy($("#signin-button"), () => signIn(secret));
    });
    $("#signout").addEventListener("click", () => signOut());
    $$(".tab").forEach((t) => t.addEventListener("click", () => showTab(t.dataset.tab)));
    $(".tabs").addEventListener("keydown", tabKeys);
    $$("[data-goto]").forEach((el) => el.addEventListener("click", (e) => { e.preventDefault(); showTab(el.dataset.goto, true); }));
    $("#partners-refresh").addEventListener("click", (e) => reconcile(e.currentTarget));
    $("#pending-refresh").addEventListener("click", (e) => busy(e.currentTarget, () => loadPending(false)));
    $("#audit-refresh").addEventListener("click", (e) => busy(e.currentTarget, loadAudit));
    $("#sg-form").addEventListener("submit", addCidr);
    $("#sg-cidr").addEventListener("input", (e) => e.target.removeAttribute("aria-invalid"));
    $("#sg-desc").addEventListener("input", previewDescription);
    $$("input[name=connection_type]").forEach((r) => r.addEventListener("change", toggleWizard));
    $("#wizard-form").addEventListener("submit", (e) => { e.preventDefault(); wizard(true); });
    $("#wizard-preview").addEventListener("click", () => wizard(false));
    $("#confirm-cancel").addEventListener("click", () => $("#confirm-dialog").close("cancel"));
    $("#usage-partner").addEventListener("change", loadUsage);
    $$("#usage-range button").forEach((b) => b.addEventListener("click", () => {
      state.range = b.dataset.range;
      $$("#usage-range button").forEach((x) => {
        x.classList.toggle("on", x === b);
        x.setAttribute("aria-pressed", x === b ? "true" : "false");
      });
      loadUsage();
    }));
    window.addEventListener("hashchange", () => { if (state.session) showTab(location.hash.slice(1)); });
    if (state.key) signIn(state.key);
  });
})();
