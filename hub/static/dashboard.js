// Pintu dashboard: keeps the server-rendered page current from the live event stream
// (/events/stream) and the JSON API. No framework and no build step; text from the
// server is only ever set with textContent, never parsed as HTML. Every word shown comes
// from the page's catalog (runtime/locale, the messages of this file), in the page's
// language; times and numbers follow the same language.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const boot = JSON.parse($("boot").textContent);
  const catalog = JSON.parse($("catalog").textContent);
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const facilityId = boot.facility.id;
  const base = "/api/v1/facilities/" + encodeURIComponent(facilityId);
  const DECISION_KINDS = new Set(["entry", "exit", "denied", "manual", "alarm", "not_passed"]);
  const MAX_DECISIONS = 60;
  const locale = catalog.locale;

  // --- words and formats ----------------------------------------------------------------
  function _(text) {
    const found = catalog.messages[text];
    return typeof found === "string" ? found : text;
  }
  function ngettext(singular, plural, n) {
    const forms = catalog.messages[singular + "\u0000" + plural];
    if (Array.isArray(forms)) return forms.length === 1 ? forms[0] : forms[n === 1 ? 0 : 1];
    return n === 1 ? singular : plural;
  }
  // "{name}" placeholders, filled after translation so a sentence can reorder them.
  function fmt(text, values) {
    return text.replace(/\{(\w+)\}/g, (all, key) => (key in values ? String(values[key]) : all));
  }
  const numberFormat = new Intl.NumberFormat(locale);
  const num = (n) => numberFormat.format(n);
  const timeFormat = new Intl.DateTimeFormat(locale, {
    timeZone: boot.facility.timezone, hour: "2-digit", minute: "2-digit", second: "2-digit",
    hourCycle: "h23",
  });
  const hourFormat = new Intl.DateTimeFormat(locale, {
    timeZone: boot.facility.timezone, hour: "2-digit", minute: "2-digit", hourCycle: "h23",
  });
  const dayFormat = new Intl.DateTimeFormat(locale, {
    timeZone: boot.facility.timezone, weekday: "long", day: "numeric", month: "long",
    year: "numeric",
  });

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function ago(iso) {
    if (!iso) return _("never");
    const s = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
    if (s < 60) return fmt(_("{n} s ago"), { n: num(Math.round(s)) });
    if (s < 3600) return fmt(_("{n} min ago"), { n: num(Math.round(s / 60)) });
    if (s < 86400) return fmt(_("{n} h ago"), { n: num(Math.round(s / 360) / 10) });
    return fmt(_("{n} d ago"), { n: num(Math.round(s / 86400)) });
  }

  // What the API's error codes mean, in words for the person at the screen; the API's
  // own detail is for logs and scripts and is never shown.
  const ERRORS = {
    too_many_lookups: _("Too many lookups in a minute. Wait a moment, then try again."),
    registry_unavailable: _("The registry cannot be reached now. Try again in a moment."),
    no_registry: _("No registry is configured, so people cannot be looked up here."),
    lookup_not_found: _("That check has expired. Look the person up again."),
    already_admitted: _("This person has already been checked in."),
    not_admitted: _("This status is not admitted."),
    facility_full: _("The facility is full. Wait until someone leaves."),
    exit_door: _("That door is an exit. Choose an entrance."),
    no_node: _("No door device is known at that door."),
    node_timeout: _("The door did not answer. Check the door, then try again or let the person in by hand."),
    node_unreachable: _("The door cannot be reached now."),
    node_refused: _("The door refused to open."),
    forbidden: _("Your role may not do this."),
    csrf: _("The page had expired. Reload it and try again."),
    too_large: _("That was too much to send at once."),
  };
  const FIELDS = {
    nik: _("A NIK is 16 digits."),
    name: _("Write the name as on the ID card."),
    capacity: _("Capacity is a whole number of people from 0 to 1,000,000."),
    percent: _("A percentage is more than 0 and at most 100."),
    nominal_max: _("The normal maximum is a whole number from 1 to 1,000,000; a percentage needs it."),
    soft_threshold_percent: _("\"Nearly full at\" is a percentage from 1 to 100."),
  };

  function explain(error) {
    if (error.fields && error.fields.length) {
      const words = error.fields.map((f) => FIELDS[String(f).split(".").pop()]
        || _("Some of what was entered is not valid."));
      return [...new Set(words)].join(" ");
    }
    if (error.code && ERRORS[error.code]) return ERRORS[error.code];
    if (error.status === undefined) return _("The hub cannot be reached. Check the connection.");
    return _("Something went wrong in the hub. Try again; it is logged.");
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
    try { data = await response.json(); } catch (_error) { data = null; }
    if (response.status === 401) {
      window.location.assign("/login");
      throw new Error("not logged in");
    }
    if (!response.ok) {
      const error = new Error((data && data.error) || response.statusText);
      error.status = response.status;
      error.code = data && data.error;
      const detail = data && data.detail;
      error.fields = Array.isArray(detail) ? detail.map((d) => d.field) : [];
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
    const fullChanged = Boolean(o.full) !== Boolean(occupancy.full);
    occupancy = o;
    const card = $("occupancy-card");
    const level = o.full ? "full" : o.soft ? "soft" : "ok";
    card.classList.remove("level-ok", "level-soft", "level-full");
    card.classList.add("level-" + level);
    const value = $("occ-value");
    if (value.textContent !== num(o.occupancy)) value.textContent = num(o.occupancy);
    $("occ-capacity").textContent = o.capacity === null ? _("no limit") : "/ " + num(o.capacity);
    const state = $("occ-state");
    state.textContent = "";
    const icon = el("span", null, level === "full" ? "⊘" : level === "soft" ? "⚠" : "✓");
    icon.setAttribute("aria-hidden", "true");
    state.append(icon, " ", level === "full" ? _("Full: entry closed")
      : level === "soft" ? _("Nearly full") : _("Open"));
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
    const left = o.capacity === null ? 0 : Math.max(0, o.capacity - o.occupancy);
    $("occ-left").textContent = o.capacity === null ? ""
      : o.full ? _("No places left")
        : fmt(ngettext("{n} place left", "{n} places left", left), { n: num(left) });
    const zones = $("zones");
    zones.textContent = "";
    for (const [zone, count] of Object.entries(o.zones || {})) {
      zones.append(el("li", null, (zoneNames[zone] || zone) + ": " + num(count)));
    }
    if (fullChanged) renderDeskFull(); // a verdict on screen learns the facility filled up
  }

  // --- chart of a day -----------------------------------------------------------------
  let history = null;
  let historyDay = null; // null: today, live; else "YYYY-MM-DD" (admins)

  function niceCeiling(v) {
    // 1, 2, 5, 10, 20, 50...: round grid lines a person reads at a glance.
    const power = Math.pow(10, Math.floor(Math.log10(Math.max(1, v))));
    for (const step of [1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10]) {
      if (step * power >= v && Number.isInteger(step * power)) return step * power;
    }
    return 10 * power;
  }

  function renderChart() {
    const svg = $("chart");
    if (!history) return;
    const ns = "http://www.w3.org/2000/svg";
    const W = 600, H = 220, left = 40, right = 16, top = 10, bottom = 24;
    const dayStart = Date.parse(history.since);
    const dayEnd = Date.parse(history.until);
    const live = historyDay === null;
    const points = [[dayStart, history.start_occupancy]];
    for (const s of history.samples) points.push([Date.parse(s.minute) + 60000, s.occupancy]);
    if (live) points.push([Date.now(), occupancy.occupancy]);
    else points.push([dayEnd, points[points.length - 1][1]]);
    // The time axis spans the hours that have data (at least three), not the empty day.
    const hour = 3600 * 1000;
    const withData = points.filter((p, i) => i === 0 ? p[1] > 0 : true);
    const first = history.samples.length ? Date.parse(history.samples[0].minute) : dayStart;
    let t0 = Math.max(dayStart, Math.floor((withData.length ? Math.min(first, withData[0][0]) : dayStart) / hour) * hour);
    if (history.start_occupancy > 0) t0 = dayStart;
    let t1 = Math.ceil(points[points.length - 1][0] / hour) * hour;
    if (t1 - t0 < 3 * hour) t0 = Math.max(dayStart, t1 - 3 * hour);
    if (t1 - t0 < 3 * hour) t1 = t0 + 3 * hour;
    const capacity = live ? occupancy.capacity : history.capacity;
    const peak = Math.max(1, ...points.map((p) => p[1]));
    // The value axis fits the day's own figures; the capacity line joins it when near.
    let yMax = niceCeiling(peak * 1.15);
    const showCap = capacity && capacity <= yMax * 1.6;
    if (showCap) yMax = niceCeiling(Math.max(peak, capacity) * 1.08);
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
    const spanH = (t1 - t0) / hour;
    const every = spanH <= 6 ? 1 : spanH <= 12 ? 2 : 3;
    for (let t = t0; t <= t1; t += every * hour) {
      add("text", { class: "tick", x: x(t), y: H - 6, "text-anchor": "middle" },
        hourFormat.format(new Date(t)));
    }
    for (const v of [0, yMax / 2, yMax]) {
      add("line", { class: "grid", x1: left, x2: W - right, y1: y(v), y2: y(v) });
      add("text", { class: "tick", x: left - 6, y: y(v) + 4, "text-anchor": "end" }, num(v));
    }
    // A step line: the count holds until the next change.
    let d = "";
    points.filter((p) => p[0] >= t0 || p === points[0]).forEach(([t, v], i) => {
      const tx = x(Math.max(t, t0));
      d += i === 0 ? `M ${tx.toFixed(1)} ${y(v).toFixed(1)}` : ` H ${tx.toFixed(1)} V ${y(v).toFixed(1)}`;
    });
    const last = points[points.length - 1];
    add("path", { class: "area", d: `${d} V ${y(0)} H ${x(t0)} Z` });
    add("path", { class: "line", d });
    if (showCap) {
      add("line", { class: "cap", x1: left, x2: W - right, y1: y(capacity), y2: y(capacity) });
      const soft = capacity * softPercent / 100;
      add("line", { class: "softline", x1: left, x2: W - right, y1: y(soft), y2: y(soft) });
    }
    if (live) add("circle", { cx: x(last[0]), cy: y(last[1]), r: 4, class: "now" });
    const note = [];
    const most = Math.max(...points.map((p) => p[1]));
    note.push(fmt(_("Most inside: {n}"), { n: num(most) }));
    if (capacity && !showCap) note.push(fmt(_("capacity {n}, above the chart"), { n: num(capacity) }));
    $("chart-note").textContent = note.join(" · ");
  }

  async function loadHistory() {
    if (historyDay === null) {
      history = await api("GET", base + "/history");
      $("chart-title").textContent = _("Today");
    } else {
      // The day's bounds in the facility's time zone, as the server's "today" has them.
      const today = await api("GET", base + "/history");
      const todayStart = Date.parse(today.since);
      const todayKey = $("history-day").max;
      const days = Math.round((Date.parse(todayKey) - Date.parse(historyDay)) / 86400000);
      const since = new Date(todayStart - days * 86400000);
      const until = new Date(since.getTime() + 86400000);
      const query = "?since=" + encodeURIComponent(since.toISOString())
        + "&until=" + encodeURIComponent(until.toISOString());
      history = await api("GET", base + "/history" + query);
      $("chart-title").textContent = dayFormat.format(since);
    }
    renderChart();
  }

  function setupHistory() {
    const form = $("history-form");
    if (!form) return;
    const day = $("history-day");
    $("history-show").addEventListener("click", () => {
      if (!day.reportValidity()) return;
      historyDay = day.value === day.max ? null : day.value;
      loadHistory().catch((error) => { $("chart-note").textContent = explain(error); });
    });
  }

  // --- decisions ----------------------------------------------------------------------
  // The four colours, with the same words everywhere: chips, verdicts, the desk.
  const SIGNALS = {
    green: ["✓", _("Green")], yellow: ["!", _("Yellow")], red: ["✕", _("Red")],
    black: ["⊘", _("Black")], full: ["■", _("Full")], error: ["?", _("Error")],
  };
  const MEANINGS = {
    green: _("fully vaccinated"), yellow: _("one dose"), red: _("not vaccinated"),
    black: _("positive or close contact"),
  };
  // What the reason codes (docs/protocol.md) mean, in the words a guard reads.
  const REASONS = {
    ok: _("Admitted"), status_black: _("Black: positive or close contact"),
    status_red: _("Red: not vaccinated"), status_yellow: _("Yellow: one dose"),
    anti_passback: _("Already inside (pass used twice)"), facility_full: _("Capacity full"),
    anti_passback_facility: _("Already inside (entered at another door)"),
    lockdown: _("Door locked down"), relay_not_armed: _("Door not armed"),
    not_passed: _("Nobody went through"), expired: _("Pass expired"),
    not_yet_valid: _("Pass not yet valid"), bad_signature: _("Forged pass"),
    unknown_key: _("Pass from an unknown issuer"), key_revoked: _("Pass key revoked"),
    key_not_valid: _("Pass key not valid then"), malformed: _("Unreadable code"),
    wrong_prefix: _("Not a Pintu pass"), truncated: _("Unreadable code"),
    unsupported_version: _("Pass format not supported"), empty: _("Unreadable code"),
    oversize: _("Unreadable code"), not_ascii: _("Unreadable code"),
  };
  const KINDS = {
    entry: _("Entry"), exit: _("Exit"), denied: _("Refused"), manual: _("Staff check-in"),
    alarm: _("ALARM"), not_passed: _("Did not go through"), node_start: _("Door device started"),
    node_stop: _("Door device stopped"),
  };
  const DIRECTIONS = { entry: _("entrance"), exit: _("exit"), both: _("entrance and exit") };

  // The node a facility's phone check-ins are counted under (docs/protocol.md).
  const PHONE_NODE = "phone";

  function chipFor(event) {
    if (event.kind === "alarm") return ["alarm", "‼", _("Alarm")];
    const signal = event.signal && SIGNALS[event.signal] ? event.signal : null;
    if (signal) return [signal, SIGNALS[signal][0], SIGNALS[signal][1]];
    if (event.kind === "manual") return ["green", "✓", _("Staff")];
    if (event.kind === "exit") return ["none", "←", _("Exit")];
    if (event.kind === "entry") return ["green", "→", _("Entry")];
    return ["none", "·", KINDS[event.kind] || event.kind];
  }

  function doorName(id) {
    return doorNames[id] || id || _("unknown door");
  }

  function decisionItem(event, fresh) {
    const li = el("li", "decision" + (fresh ? " fresh" : ""));
    li.dataset.kind = event.kind;
    if (event.node_id === PHONE_NODE) li.dataset.via = "phone";
    li.append(el("span", "time", timeFormat.format(new Date(event.ts))));
    const [cls, symbol, word] = chipFor(event);
    const chip = el("span", "chip c-" + cls, symbol);
    chip.title = word;
    chip.setAttribute("role", "img");
    chip.setAttribute("aria-label", word);
    li.append(chip);
    const text = el("span", "text");
    const head = (KINDS[event.kind] || event.kind) + (event.signal ? " · " + word : "")
      + " · " + doorName(event.door_id) + (event.node_id === PHONE_NODE ? " · 📱 " + _("phone") : "");
    text.append(el("div", "head", head));
    const why = event.kind === "exit" ? "" : REASONS[event.reason] || "";
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
    if (!events.length) list.append(el("li", "empty muted", _("Nothing yet today.")));
    for (const event of events) addDecision(event, false);
  }

  // --- doors --------------------------------------------------------------------------
  const doorNames = {};
  const nodeDoors = {}; // node id -> door id, for alerts that name only their node
  for (const door of boot.doors) {
    doorNames[door.id] = door.name;
    for (const node of door.nodes || []) nodeDoors[node] = door.id;
  }
  const STATES = {
    online: ["●", _("Online")], degraded: ["◐", _("Trouble")], offline: ["✕", _("Offline")],
    unknown: ["?", _("No report")],
  };

  let doorList = [];

  function renderDoors(doors) {
    doorList = doors;
    const list = $("doors");
    list.textContent = "";
    if (!doors.length) list.append(el("li", "empty muted", _("No doors have reported yet.")));
    for (const door of doors) {
      if (door.configured) doorNames[door.id] = door.name;
      for (const node of door.nodes) nodeDoors[node.node_id] = door.id;
      const li = el("li", "door");
      li.dataset.door = door.id;
      li.dataset.state = door.state;
      const dir = door.direction && DIRECTIONS[door.direction]
        ? " (" + DIRECTIONS[door.direction] + ")" : "";
      li.append(el("span", "name", doorName(door.id) + dir));
      const [symbol, word] = STATES[door.state] || STATES.unknown;
      li.append(el("span", "pill state-" + door.state, symbol + " " + word));
      const last = door.last_event;
      const nodes = door.nodes.map((n) => n.node_id + " "
        + (STATES[n.state] || STATES.unknown)[1].toLowerCase());
      const detail = (last
        ? fmt(_("Last: {kind} at {time} ({ago})"), {
          kind: KINDS[last.kind] || last.kind, time: timeFormat.format(new Date(last.ts)),
          ago: ago(last.ts),
        })
        : _("No events yet")) + " · " + (nodes.length ? nodes.join(", ") : _("no device seen"));
      li.append(el("span", "detail", detail));
      for (const node of door.nodes) {
        if (node.stale_lists) {
          const age = Math.round(Math.max(node.trust_list_age_s || 0, node.status_list_age_s || 0) / 3600);
          li.append(el("span", "warn", "⚠ " + fmt(_("{node}: pass lists are {n} h old"),
            { node: node.node_id, n: num(age) })));
        }
        if ((node.problems || []).length) {
          li.append(el("span", "warn", "⚠ " + fmt(_("{node} reports a problem: {problem}"),
            { node: node.node_id, problem: node.problems.join("; ") })));
        }
      }
      list.append(li);
    }
  }

  async function loadDoors() {
    renderDoors((await api("GET", base + "/doors")).doors);
    renderAlerts(); // alerts name their doors
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
    visits_refused: "⇡",
  };
  const ALERT_TITLES = {
    black_pass: _("Black pass shown at {door}"),
    forced_door: _("{door} was forced open"),
    camera_failed: _("The camera failed at {door}"),
    node_offline: _("A door device is offline at {door}"),
    stale_lists: _("Old pass lists at {door}"),
    seq_gap: _("Events missing from {door}"),
    seq_reset: _("A door device at {door} started its journal over"),
    exit_without_entry: _("An exit at {door} while nobody was counted inside"),
    visits_refused: _("The registry refuses the visits of {door}"),
    alarm: _("Alarm at {door}"),
  };
  const alerts = new Map();

  function alertGroups() {
    const groups = new Map();
    for (const alert of alerts.values()) {
      if (!alert.open) continue;
      const door = alert.door_id || nodeDoors[alert.node_id] || "";
      const key = alert.kind + "\u0000" + door;
      if (!groups.has(key)) groups.set(key, []);
      groups.get(key).push(alert);
    }
    const list = [...groups.values()];
    for (const group of list) group.sort((a, b) => b.id - a.id);
    list.sort((a, b) => Date.parse(b[0].last_at) - Date.parse(a[0].last_at) || b[0].id - a[0].id);
    return list;
  }

  function renderAlerts() {
    const list = $("alerts");
    list.textContent = "";
    const groups = alertGroups();
    const openCount = groups.reduce((n, g) => n + g.length, 0);
    const count = $("alert-count");
    count.textContent = num(openCount);
    count.classList.toggle("some", openCount > 0);
    if (!groups.length) list.append(el("li", "empty muted", _("No open alerts.")));
    for (const group of groups) {
      const latest = group[0];
      const li = el("li", "alert kind-" + latest.kind);
      li.dataset.alert = String(latest.id);
      li.dataset.count = String(group.length);
      const icon = el("span", "icon", ALERT_ICONS[latest.kind] || "!");
      icon.setAttribute("aria-hidden", "true");
      const body = el("div");
      const title = ALERT_TITLES[latest.kind] || ALERT_TITLES.alarm;
      const doorId = latest.door_id || nodeDoors[latest.node_id];
      const where = doorId ? doorName(doorId) : latest.node_id || boot.facility.name;
      body.append(el("div", "what", fmt(title, { door: where })));
      if (latest.kind === "visits_refused") {
        // What the registry answered, as it said it: the fix is in the configuration.
        body.append(el("div", "why", fmt(_("The registry's answer: {reason}. They are tried again when the hub restarts with the configuration mended, or an admin syncs now."), { reason: latest.message })));
      }
      const times = group.reduce((n, a) => n + (a.count || 1), 0);
      const nodes = [...new Set(group.map((a) => a.node_id).filter(Boolean))];
      let when = timeFormat.format(new Date(latest.last_at)) + " (" + ago(latest.last_at) + ")";
      if (times > 1) when += " · " + fmt(ngettext("{n} time", "{n} times", times), { n: num(times) });
      if (nodes.length) when += " · " + nodes.join(", ");
      body.append(el("div", "when", when));
      li.append(icon, body);
      if (boot.may.ack) {
        const label = group.length > 1
          ? fmt(_("Acknowledge all ({n})"), { n: num(group.length) }) : _("Acknowledge");
        const button = el("button", "button small ack", label);
        button.type = "button";
        button.addEventListener("click", () => acknowledge(group.map((a) => a.id), button));
        li.append(button);
      }
      list.append(li);
    }
  }

  async function acknowledge(ids, button) {
    button.disabled = true;
    try {
      const done = await Promise.all(ids.map((id) => api("POST", "/api/v1/alerts/" + id + "/ack")));
      for (const alert of done) { alert.open = false; alerts.set(alert.id, alert); }
      renderAlerts();
    } catch (error) {
      button.disabled = false;
      report(error);
      loadAlerts().catch(report);
    }
  }

  async function loadAlerts() {
    const data = await api("GET", base + "/alerts?limit=500");
    alerts.clear();
    for (const alert of data.alerts) alerts.set(alert.id, alert);
    renderAlerts();
  }

  // --- staff desk ---------------------------------------------------------------------
  let lookupId = null;
  let lastAnswer = null;
  const VERDICTS = {
    green: ["✓", _("GREEN")], yellow: ["!", _("YELLOW")], red: ["✕", _("RED")],
    black: ["⊘", _("BLACK")],
  };
  const VERDICT_WHY = {
    green: _("Fully vaccinated: may enter."),
    yellow: _("One dose: may enter."),
    red: _("Not vaccinated: may not enter."),
    black: _("Positive or close contact: never admitted. Call the person in charge."),
  };

  function deskMessage(text, good) {
    const message = $("desk-message");
    message.textContent = text;
    message.className = "desk-message " + (good ? "good" : "bad");
  }

  function clearDesk() {
    lookupId = null;
    lastAnswer = null;
    $("desk-result").hidden = true;
    $("admit-form").hidden = true;
    const verdict = $("verdict");
    verdict.className = "verdict v-none";
    verdict.textContent = "";
    delete verdict.dataset.status;
    deskMessage("", true);
  }

  function showVerdict(answer) {
    const verdict = $("verdict");
    verdict.textContent = "";
    $("admit-form").hidden = true;
    lookupId = null;
    if (!answer.found) {
      verdict.className = "verdict v-none";
      verdict.append(el("span", "symbol", "?"), el("span", null, _("Not found")),
        el("span", "sub", _("No one with this NIK and name. Check both against the ID card.")));
      return;
    }
    const [symbol, word] = VERDICTS[answer.status];
    verdict.className = "verdict v-" + answer.status;
    verdict.dataset.status = answer.status;
    const mark = el("span", "symbol", symbol);
    mark.setAttribute("aria-hidden", "true");
    verdict.append(mark, el("span", null, word), el("span", "sub", VERDICT_WHY[answer.status]));
    if (answer.admissible && occupancy.full) {
      // Known at the lookup already: nobody waits for an Admit that must fail.
      deskMessage("⊘ " + _("Capacity full: wait until someone leaves, then check again."), false);
    } else if (answer.admissible) {
      lookupId = answer.lookup_id;
      $("admit-form").hidden = false;
      deskMessage("", true);
    }
  }

  function renderDeskFull() {
    if (lastAnswer && lastAnswer.admissible && $("verdict")) showVerdict(lastAnswer);
  }

  function setupDesk() {
    const form = $("lookup-form");
    if (!form) return;
    // The browser refused what was typed: an earlier person's result must not stay up.
    for (const input of form.querySelectorAll("input")) {
      input.addEventListener("invalid", clearDesk);
    }
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      const button = $("lookup-button");
      button.disabled = true;
      clearDesk();
      $("desk-result").hidden = false;
      $("verdict").textContent = _("Checking…");
      try {
        const answer = await api("POST", base + "/checkins/lookup",
          { nik: $("nik").value, name: $("person-name").value });
        lastAnswer = answer;
        showVerdict(answer);
      } catch (error) {
        $("verdict").textContent = "";
        deskMessage("✕ " + explain(error), false);
      } finally {
        button.disabled = false;
      }
    });
    $("admit-form").addEventListener("submit", async (e) => {
      e.preventDefault();
      if (!lookupId) return;
      const button = $("admit-button");
      button.disabled = true;
      deskMessage(_("Opening the door…"), true);
      try {
        const result = await api("POST", base + "/checkins",
          { lookup_id: lookupId, door_id: $("admit-door").value });
        deskMessage("✓ " + fmt(_("The door is open: let them through ({door})."),
          { door: doorName(result.door_id) }), true);
        lookupId = null;
        lastAnswer = null;
        $("admit-form").hidden = true;
        form.reset();
      } catch (error) {
        deskMessage("✕ " + explain(error), false);
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
    const message = $("capacity-message");
    const confirmBox = $("capacity-confirm");
    let pending = null;
    const fill = (c) => {
      const mode = c.mode === "percent" ? "percent" : "absolute";
      form.querySelector(`input[name=mode][value=${mode}]`).checked = true;
      $("capacity-value").value = mode === "percent" ? c.capacity_percent : (c.capacity ?? "");
      $("capacity-nominal").value = c.nominal_max ?? "";
      $("capacity-soft").value = c.soft_threshold_percent;
    };
    fill(current);

    // Checked here first, in plain words; the hub checks again.
    function read() {
      const mode = form.querySelector("input[name=mode]:checked").value;
      const raw = $("capacity-value").value.trim();
      const value = Number(raw);
      const nominalRaw = $("capacity-nominal").value.trim();
      const softRaw = $("capacity-soft").value.trim();
      const problems = [];
      if (mode === "absolute" && (raw === "" || !Number.isInteger(value) || value < 0 || value > 1000000)) {
        problems.push(FIELDS.capacity);
      }
      if (mode === "percent" && (raw === "" || !(value > 0 && value <= 100))) problems.push(FIELDS.percent);
      const nominal = Number(nominalRaw);
      if (nominalRaw !== "" && (!Number.isInteger(nominal) || nominal < 1 || nominal > 1000000)) {
        problems.push(FIELDS.nominal_max);
      }
      if (mode === "percent" && nominalRaw === "") problems.push(FIELDS.nominal_max);
      const soft = Number(softRaw);
      if (softRaw !== "" && !(soft > 0 && soft <= 100)) problems.push(FIELDS.soft_threshold_percent);
      if (problems.length) return { problems };
      const body = mode === "percent" ? { percent: value } : { capacity: value };
      if (mode === "percent") body.nominal_max = nominal;
      if (softRaw !== "") body.soft_threshold_percent = soft;
      const people = mode === "percent" ? Math.floor(nominal * value / 100) : value;
      return { body, people };
    }

    async function save(body) {
      try {
        const saved = await api("PUT", base + "/capacity", body);
        softPercent = saved.soft_threshold_percent;
        fill(saved);
        message.className = "capacity-message good";
        message.textContent = "✓ " + fmt(_("Saved: capacity {n}."), { n: num(saved.capacity) });
      } catch (error) {
        message.className = "capacity-message bad";
        message.textContent = "✕ " + explain(error);
      }
    }

    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      confirmBox.hidden = true;
      const { body, people, problems } = read();
      if (problems) {
        message.className = "capacity-message bad";
        message.textContent = "✕ " + problems.join(" ");
        return;
      }
      if (people === 0 || people <= occupancy.occupancy) {
        // Closing entry deserves a second look: every entrance refuses from now on.
        pending = body;
        $("capacity-confirm-text").textContent = people === 0
          ? _("Capacity 0 closes entry: every entrance refuses everyone. Close entry?")
          : fmt(_("{inside} people are inside, so capacity {n} closes entry at once. Close entry?"),
            { inside: num(occupancy.occupancy), n: num(people) });
        confirmBox.hidden = false;
        message.textContent = "";
        $("capacity-confirm-no").focus();
        return;
      }
      await save(body);
    });
    $("capacity-confirm-yes").addEventListener("click", async () => {
      confirmBox.hidden = true;
      if (pending) await save(pending);
      pending = null;
    });
    $("capacity-confirm-no").addEventListener("click", () => {
      confirmBox.hidden = true;
      pending = null;
      message.className = "capacity-message";
      message.textContent = _("Nothing was changed.");
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
      setLive("live", _("Live"));
      if (opened) loadAll().catch(report); // catch up on what was missed while away
      opened = true;
    });
    source.addEventListener("error", () => setLive("lost", _("Reconnecting…")));
    source.addEventListener("occupancy", (m) => {
      renderOccupancy(JSON.parse(m.data));
      if (historyDay === null) renderChart();
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
  setupHistory();
  setupCapacity().catch(report);
  // Relative times ("2 min ago") and the chart's "now" move on by themselves.
  setInterval(() => { if (historyDay === null) renderChart(); refreshDoorsSoon(); }, 30000);
})();
