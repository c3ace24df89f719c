// Pintu dashboard: keeps the server-rendered page current from the live event stream
// (/events/stream) and the JSON API. No framework and no build step; text from the
// server is only ever set with textContent, never parsed as HTML.
"use strict";

(function () {
  const boot = JSON.parse(document.getElementById("boot").textContent);
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const facilityId = boot.facility.id;
  const base = "/api/v1/facilities/" + encodeURIComponent(facilityId);
  const DECISION_KINDS = new Set(["entry", "exit", "denied", "manual", "alarm", "not_passed"]);
  const MAX_DECISIONS = 60;
  const $ = (id) => document.getElementById(id);

  const timeFormat = new Intl.DateTimeFormat(undefined, {
    timeZone: boot.facility.timezone, hour: "2-digit", minute: "2-digit", second: "2-digit",
    hourCycle: "h23",
  });
  const hourFormat = new Intl.DateTimeFormat(undefined, {
    timeZone: boot.facility.timezone, hour: "2-digit", minute: "2-digit", hourCycle: "h23",
  });

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function ago(iso) {
    if (!iso) return "never";
    const s = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
    if (s < 60) return Math.round(s) + " s ago";
    if (s < 3600) return Math.round(s / 60) + " min ago";
    if (s < 86400) return (s / 3600).toFixed(1) + " h ago";
    return Math.round(s / 86400) + " d ago";
  }

  async function api(method, path, body) {
    const options = { method, headers: { Accept: "application/json" }, credentials: "same-origin" };
    if (method !== "GET") options.headers["X-CSRF-Token"] = csrf;
    if (body !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    const response = await fetch(path, options);
    let data = null;
    try { data = await response.json(); } catch (_) { data = null; }
    if (response.status === 401) {
      window.location.assign("/login");
      throw new Error("not logged in");
    }
    if (!response.ok) {
      const detail = data && data.detail;
      const text = Array.isArray(detail)
        ? detail.map((d) => d.field + ": " + d.message).join("; ")
        : detail || (data && data.error) || response.statusText;
      const error = new Error(text);
      error.status = response.status;
      error.code = data && data.error;
      throw error;
    }
    return data;
  }

  // --- occupancy ----------------------------------------------------------------------
  let occupancy = boot.occupancy;
  const zoneNames = {};
  for (const zone of boot.zones) zoneNames[zone.id] = zone.name;
  let softPercent = boot.soft_threshold_percent;

  function arcPoint(fraction) {
    // The gauge arc runs from (12,100) over the top to (188,100), centre (100,100), r 88.
    const angle = Math.PI * (1 - fraction);
    return [100 + 88 * Math.cos(angle), 100 - 88 * Math.sin(angle)];
  }

  function renderOccupancy(o) {
    occupancy = o;
    const card = $("occupancy-card");
    const level = o.full ? "full" : o.soft ? "soft" : "ok";
    card.classList.remove("level-ok", "level-soft", "level-full");
    card.classList.add("level-" + level);
    const value = $("occ-value");
    if (value.textContent !== String(o.occupancy)) value.textContent = String(o.occupancy);
    $("occ-capacity").textContent = o.capacity === null ? "no limit" : "/ " + o.capacity;
    const state = $("occ-state");
    state.textContent = "";
    const icon = el("span", null, level === "full" ? "⊘" : level === "soft" ? "⚠" : "✓");
    icon.setAttribute("aria-hidden", "true");
    state.append(icon, " ", level === "full" ? "Full — entry closed"
      : level === "soft" ? "Nearly full" : "Open");
    const fraction = o.capacity ? Math.min(1, o.occupancy / o.capacity) : 0;
    // A gap longer than the arc: a dash pattern that repeats would put a dot at its end.
    $("gauge-value").setAttribute("stroke-dasharray", (fraction * 100).toFixed(2) + " 200");
    const soft = $("gauge-soft");
    if (o.capacity) {
      const [x1, y1] = arcPoint(softPercent / 100);
      const [cx, cy] = [100, 100];
      const dx = (x1 - cx) / 88, dy = (y1 - cy) / 88;
      soft.setAttribute("x1", (cx + dx * 76).toFixed(1));
      soft.setAttribute("y1", (cy + dy * 76).toFixed(1));
      soft.setAttribute("x2", (cx + dx * 100).toFixed(1));
      soft.setAttribute("y2", (cy + dy * 100).toFixed(1));
    }
    $("occ-left").textContent = o.capacity === null ? ""
      : o.full ? "No places left" : (o.capacity - o.occupancy) + " places left";
    const zones = $("zones");
    zones.textContent = "";
    for (const [zone, count] of Object.entries(o.zones || {})) {
      zones.append(el("li", null, (zoneNames[zone] || zone) + ": " + count));
    }
  }

  // --- chart of the day ---------------------------------------------------------------
  let history = null;

  function renderChart() {
    const svg = $("chart");
    if (!history) return;
    const ns = "http://www.w3.org/2000/svg";
    const W = 600, H = 220, left = 34, right = 20, top = 10, bottom = 24;
    const t0 = Date.parse(history.since);
    const t1 = t0 + 24 * 3600 * 1000;
    const now = Date.now();
    const points = [[t0, history.start_occupancy]];
    for (const s of history.samples) points.push([Date.parse(s.minute) + 60000, s.occupancy]);
    points.push([Math.min(now, t1), occupancy.occupancy]);
    const capacity = occupancy.capacity;
    const peak = Math.max(1, ...points.map((p) => p[1]), capacity || 0);
    const yMax = Math.ceil(peak * 1.1);
    const x = (t) => left + ((t - t0) / (t1 - t0)) * (W - left - right);
    const y = (v) => top + (1 - v / yMax) * (H - top - bottom);
    svg.textContent = "";
    const add = (name, attrs, text) => {
      const node = document.createElementNS(ns, name);
      for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
      if (text !== undefined) node.textContent = text;
      svg.append(node);
      return node;
    };
    add("line", { class: "axis", x1: left, y1: y(0), x2: W - right, y2: y(0) });
    for (let h = 0; h <= 24; h += 3) {
      const t = t0 + h * 3600 * 1000;
      add("text", { class: "tick", x: x(t), y: H - 6, "text-anchor": "middle" },
        hourFormat.format(new Date(t)));
    }
    for (const v of [0, Math.round(yMax / 2), yMax]) {
      add("text", { class: "tick", x: left - 6, y: y(v) + 4, "text-anchor": "end" }, String(v));
    }
    // A step line: the count holds until the next change.
    let d = "";
    points.forEach(([t, v], i) => {
      d += i === 0 ? `M ${x(t).toFixed(1)} ${y(v).toFixed(1)}`
        : ` H ${x(t).toFixed(1)} V ${y(v).toFixed(1)}`;
    });
    const last = points[points.length - 1];
    add("path", { class: "area", d: `${d} V ${y(0)} H ${x(t0)} Z` });
    add("path", { class: "line", d });
    if (capacity) {
      add("line", { class: "cap", x1: left, x2: W - right, y1: y(capacity), y2: y(capacity) });
      const soft = capacity * softPercent / 100;
      add("line", { class: "softline", x1: left, x2: W - right, y1: y(soft), y2: y(soft) });
    }
    add("circle", { cx: x(last[0]), cy: y(last[1]), r: 4, fill: "#1f5fa8" });
  }

  async function loadHistory() {
    history = await api("GET", base + "/history");
    renderChart();
  }

  // --- decisions ----------------------------------------------------------------------
  const SIGNALS = {
    green: ["✓", "Green"], yellow: ["!", "Yellow"], red: ["✕", "Red"], black: ["⊘", "Black"],
    full: ["■", "Full"], error: ["?", "Error"],
  };
  // What the reason codes (docs/protocol.md) mean, in the words a guard reads.
  const REASONS = {
    ok: "Admitted", status_black: "Black status: positive or close contact",
    status_red: "Red status: not vaccinated", status_yellow: "Yellow status: one dose",
    anti_passback: "Already inside (used twice)", facility_full: "Facility full",
    lockdown: "Door locked down", relay_not_armed: "Door not armed", not_passed: "Nobody passed",
    expired: "Pass expired", not_yet_valid: "Pass not yet valid", bad_signature: "Forged pass",
    unknown_key: "Pass from an unknown issuer", key_revoked: "Pass key revoked",
    key_not_valid: "Pass key not valid then", malformed: "Unreadable code",
    wrong_prefix: "Not a Pintu pass", truncated: "Unreadable code",
    unsupported_version: "Pass format not supported", empty: "Unreadable code",
    oversize: "Unreadable code", not_ascii: "Unreadable code",
  };
  const KINDS = {
    entry: "Entry", exit: "Exit", denied: "Denied", manual: "Staff check-in", alarm: "ALARM",
    not_passed: "Not passed", node_start: "Node started", node_stop: "Node stopped",
  };

  function chipFor(event) {
    if (event.kind === "alarm") return ["alarm", "‼", "Alarm"];
    const signal = event.signal && SIGNALS[event.signal] ? event.signal : null;
    if (signal) return [signal, SIGNALS[signal][0], SIGNALS[signal][1]];
    if (event.kind === "manual") return ["green", "✓", "Staff"];
    if (event.kind === "exit") return ["none", "←", "Exit"];
    if (event.kind === "entry") return ["green", "→", "Entry"];
    return ["none", "·", KINDS[event.kind] || event.kind];
  }

  function decisionItem(event, fresh) {
    const li = el("li", "decision" + (fresh ? " fresh" : ""));
    li.dataset.kind = event.kind;
    li.append(el("span", "time", timeFormat.format(new Date(event.ts))));
    const [cls, symbol, word] = chipFor(event);
    const chip = el("span", "chip c-" + cls, symbol);
    chip.title = word;
    chip.setAttribute("aria-label", word);
    li.append(chip);
    const text = el("span", "text");
    const door = doorNames[event.door_id] || event.door_id;
    const head = (KINDS[event.kind] || event.kind) + (event.signal ? " · " + word : "")
      + " · " + door;
    text.append(el("div", "head", head));
    const why = event.message || (event.kind === "exit" && event.detail)
      || REASONS[event.reason] || event.detail || event.reason || "";
    if (why) text.append(el("div", "why", why));
    li.append(text);
    return li;
  }

  function addDecision(event, fresh) {
    if (!DECISION_KINDS.has(event.kind)) return;
    const list = $("decisions");
    const empty = list.querySelector(".empty");
    if (empty) empty.remove();
    list.prepend(decisionItem(event, fresh));
    while (list.children.length > MAX_DECISIONS) list.lastElementChild.remove();
  }

  async function loadDecisions() {
    const page = await api("GET", base + "/events?limit=" + MAX_DECISIONS);
    const list = $("decisions");
    list.textContent = "";
    const events = page.events.filter((e) => DECISION_KINDS.has(e.kind)).reverse();
    if (!events.length) list.append(el("li", "empty muted", "Nothing yet today."));
    for (const event of events) addDecision(event, false);
  }

  // --- doors --------------------------------------------------------------------------
  const doorNames = {};
  for (const door of boot.doors) doorNames[door.id] = door.name;
  const STATES = {
    online: ["●", "Online"], degraded: ["◐", "Degraded"], offline: ["✕", "Offline"],
    unknown: ["?", "No report"],
  };

  let doorList = [];

  function renderDoors(doors) {
    doorList = doors;
    const list = $("doors");
    list.textContent = "";
    if (!doors.length) list.append(el("li", "empty muted", "No doors have reported yet."));
    for (const door of doors) {
      doorNames[door.id] = door.name;
      const li = el("li", "door");
      li.dataset.door = door.id;
      li.dataset.state = door.state;
      const dir = door.direction ? " (" + door.direction + ")" : "";
      li.append(el("span", "name", door.name + dir));
      const [symbol, word] = STATES[door.state] || STATES.unknown;
      li.append(el("span", "pill state-" + door.state, symbol + " " + word));
      const last = door.last_event;
      const nodes = door.nodes.map((n) => n.node_id + " " + (STATES[n.state] || STATES.unknown)[1].toLowerCase());
      const detail = (last
        ? "Last: " + (KINDS[last.kind] || last.kind) + " at " + timeFormat.format(new Date(last.ts))
          + " (" + ago(last.ts) + ")"
        : "No events yet") + (nodes.length ? " · " + nodes.join(", ") : " · no node seen");
      li.append(el("span", "detail", detail));
      for (const node of door.nodes) {
        if (node.stale_lists) {
          const age = Math.max(node.trust_list_age_s || 0, node.status_list_age_s || 0) / 3600;
          li.append(el("span", "warn", "⚠ " + node.node_id + ": pass lists are "
            + age.toFixed(0) + " h old"));
        }
        for (const problem of node.problems || []) {
          li.append(el("span", "warn", "⚠ " + node.node_id + ": " + problem));
        }
      }
      list.append(li);
    }
  }

  async function loadDoors() {
    renderDoors((await api("GET", base + "/doors")).doors);
  }

  let doorTimer = null;
  function refreshDoorsSoon() {
    if (doorTimer) return;
    doorTimer = setTimeout(() => { doorTimer = null; loadDoors().catch(report); }, 700);
  }

  // --- alerts -------------------------------------------------------------------------
  // Symbols from the basic fonts every tablet has: an emoji may show as an empty box.
  const ALERT_ICONS = {
    black_pass: "⊘", forced_door: "⚑", camera_failed: "◉", node_offline: "✕",
    stale_lists: "◷", seq_gap: "⋯", seq_reset: "↺", exit_without_entry: "?", alarm: "‼",
  };
  const alerts = new Map();

  function renderAlerts() {
    const list = $("alerts");
    list.textContent = "";
    const open = [...alerts.values()].filter((a) => a.open).sort((a, b) => b.id - a.id);
    const count = $("alert-count");
    count.textContent = String(open.length);
    count.classList.toggle("some", open.length > 0);
    if (!open.length) list.append(el("li", "empty muted", "No open alerts."));
    for (const alert of open) {
      const li = el("li", "alert kind-" + alert.kind);
      li.dataset.alert = String(alert.id);
      const icon = el("span", "icon", ALERT_ICONS[alert.kind] || "!");
      icon.setAttribute("aria-hidden", "true");
      const body = el("div");
      body.append(el("div", "what", alert.message));
      const times = alert.count > 1 ? " · " + alert.count + " times" : "";
      body.append(el("div", "when", timeFormat.format(new Date(alert.last_at)) + " ("
        + ago(alert.last_at) + ")" + times));
      li.append(icon, body);
      if (boot.may.ack) {
        const button = el("button", "button small ack", "Acknowledge");
        button.type = "button";
        button.addEventListener("click", () => acknowledge(alert.id, button));
        li.append(button);
      }
      list.append(li);
    }
  }

  async function acknowledge(id, button) {
    button.disabled = true;
    try {
      const alert = await api("POST", "/api/v1/alerts/" + id + "/ack");
      alerts.set(alert.id, alert);
      renderAlerts();
    } catch (error) {
      button.disabled = false;
      report(error);
    }
  }

  async function loadAlerts() {
    const data = await api("GET", base + "/alerts");
    alerts.clear();
    for (const alert of data.alerts) alerts.set(alert.id, alert);
    renderAlerts();
  }

  // --- staff desk ---------------------------------------------------------------------
  let lookupId = null;
  const VERDICTS = {
    green: ["✓", "GREEN"], yellow: ["!", "YELLOW"], red: ["✕", "RED"], black: ["⊘", "BLACK"],
  };

  function deskMessage(text, good) {
    const message = $("desk-message");
    message.textContent = text;
    message.className = "desk-message " + (good ? "good" : "bad");
  }

  function setupDesk() {
    const form = $("lookup-form");
    if (!form) return;
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      const button = $("lookup-button");
      button.disabled = true;
      lookupId = null;
      $("desk-result").hidden = false;
      $("admit-form").hidden = true;
      deskMessage("", true);
      const verdict = $("verdict");
      verdict.className = "verdict v-none";
      verdict.textContent = "Checking…";
      try {
        const answer = await api("POST", base + "/checkins/lookup",
          { nik: $("nik").value, name: $("person-name").value });
        verdict.textContent = "";
        if (!answer.found) {
          verdict.className = "verdict v-none";
          verdict.append(el("span", null, "?"), el("span", null, "Not found"),
            el("span", "sub", answer.reason));
        } else {
          const [symbol, word] = VERDICTS[answer.status];
          verdict.className = "verdict v-" + answer.status;
          verdict.dataset.status = answer.status;
          verdict.append(el("span", null, symbol), el("span", null, word),
            el("span", "sub", answer.reason));
          if (answer.admissible) {
            lookupId = answer.lookup_id;
            $("admit-form").hidden = false;
          }
        }
      } catch (error) {
        verdict.className = "verdict v-none";
        verdict.textContent = "";
        deskMessage(error.message, false);
      } finally {
        button.disabled = false;
      }
    });
    $("admit-form").addEventListener("submit", async (e) => {
      e.preventDefault();
      if (!lookupId) return;
      const button = $("admit-button");
      button.disabled = true;
      deskMessage("Opening the door…", true);
      try {
        const result = await api("POST", base + "/checkins",
          { lookup_id: lookupId, door_id: $("admit-door").value });
        deskMessage("✓ " + result.message, true);
        lookupId = null;
        $("admit-form").hidden = true;
        form.reset();
      } catch (error) {
        deskMessage("✕ " + error.message, false);
      } finally {
        button.disabled = false;
      }
    });
  }

  // --- capacity (admins) --------------------------------------------------------------
  async function setupCapacity() {
    const form = $("capacity-form");
    if (!form) return;
    const current = await api("GET", base + "/capacity");
    const fill = (c) => {
      const mode = c.mode === "percent" ? "percent" : "absolute";
      form.querySelector(`input[name=mode][value=${mode}]`).checked = true;
      $("capacity-value").value = mode === "percent" ? c.capacity_percent : (c.capacity ?? "");
      $("capacity-nominal").value = c.nominal_max ?? "";
      $("capacity-soft").value = c.soft_threshold_percent;
    };
    fill(current);
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      const mode = form.querySelector("input[name=mode]:checked").value;
      const value = Number($("capacity-value").value);
      const body = mode === "percent" ? { percent: value } : { capacity: Math.round(value) };
      const nominal = $("capacity-nominal").value;
      if (mode === "percent" && nominal) body.nominal_max = Number(nominal);
      const soft = $("capacity-soft").value;
      if (soft) body.soft_threshold_percent = Number(soft);
      const message = $("capacity-message");
      try {
        const saved = await api("PUT", base + "/capacity", body);
        softPercent = saved.soft_threshold_percent;
        fill(saved);
        message.textContent = "✓ Saved: capacity " + saved.capacity + ".";
      } catch (error) {
        message.textContent = "✕ " + error.message;
      }
    });
  }

  // --- live stream --------------------------------------------------------------------
  function setLive(state, text) {
    const box = $("live-state");
    box.dataset.state = state;
    $("live-text").textContent = text;
  }

  function report(error) {
    if (window.console) console.warn(error);
  }

  async function loadAll() {
    await Promise.all([loadDoors(), loadAlerts(), loadDecisions(), loadHistory()]);
  }

  function connect() {
    const source = new EventSource("/events/stream?facility=" + encodeURIComponent(facilityId));
    let opened = false;
    source.addEventListener("open", () => {
      setLive("live", "Live");
      if (opened) loadAll().catch(report); // catch up on what was missed while away
      opened = true;
    });
    source.addEventListener("error", () => setLive("lost", "Reconnecting…"));
    source.addEventListener("occupancy", (m) => {
      renderOccupancy(JSON.parse(m.data));
      renderChart();
    });
    source.addEventListener("event", (m) => {
      const event = JSON.parse(m.data);
      addDecision(event, true);
      const door = doorList.find((d) => d.id === event.door_id);
      if (door) {
        door.last_event = event;
        renderDoors(doorList);
      } else {
        refreshDoorsSoon(); // a door not seen before
      }
    });
    source.addEventListener("node", refreshDoorsSoon);
    source.addEventListener("alert", (m) => {
      const alert = JSON.parse(m.data);
      alert.open = !alert.acknowledged_at && !alert.cleared_at;
      alerts.set(alert.id, alert);
      renderAlerts();
    });
    source.addEventListener("resync", () => loadAll().catch(report));
    source.addEventListener("logout", () => { source.close(); window.location.assign("/login"); });
  }

  const picker = $("facility-select");
  if (picker) {
    picker.addEventListener("change", () => {
      window.location.assign("/facilities/" + encodeURIComponent(picker.value));
    });
  }

  renderOccupancy(occupancy);
  connect();
  loadAll().catch(report);
  setupDesk();
  setupCapacity().catch(report);
  // Relative times ("2 min ago") and the chart's "now" move on by themselves.
  setInterval(() => { renderChart(); refreshDoorsSoon(); }, 30000);
})();
