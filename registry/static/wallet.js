// Pintu wallet: keeps the visitor's signed pass on the phone and shows it as a QR code
// for camera doors. The pass and the wallet's credential live in localStorage; the pass
// is checked with the registry (GET /api/v1/wallet/pass) whenever the wallet opens, comes
// back online or is looked at again, so a changed status arrives without a tap. The QR
// code is drawn from the modules the registry sends. No NIK is ever kept here. Every word
// comes from the page's catalog (runtime/locale, the messages of this file).
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const root = $("wallet");
  const catalog = JSON.parse($("catalog").textContent);
  const KEY = "pintu.wallet";
  const CHECK_EVERY_MS = 60 * 1000;
  const SVG = "http://www.w3.org/2000/svg";

  function _(text) {
    const found = catalog.messages[text];
    return typeof found === "string" ? found : text;
  }
  function fmt(text, values) {
    return text.replace(/\{(\w+)\}/g, (all, key) => (key in values ? String(values[key]) : all));
  }
  const dateFormat = new Intl.DateTimeFormat(catalog.locale, {
    day: "numeric", month: "long", year: "numeric", hour: "2-digit", minute: "2-digit",
    hourCycle: "h23",
  });
  const when = (iso) => dateFormat.format(new Date(iso));

  const STATUSES = {
    green: { symbol: "✓", word: _("Green"), meaning: _("Fully vaccinated") },
    yellow: { symbol: "!", word: _("Yellow"), meaning: _("One dose") },
    red: { symbol: "✕", word: _("Red"), meaning: _("Not vaccinated") },
    black: { symbol: "■", word: _("Black"), meaning: _("Confirmed positive or close contact") },
  };
  const INVALID = {
    moved: {
      word: _("Moved to another phone"),
      meaning: _("This pass was moved to another phone and is no longer valid here."),
    },
    revoked: {
      word: _("Not valid"),
      meaning: _("The registry no longer knows this pass. Ask for a new pass link."),
    },
    expired: {
      word: _("Expired"),
      meaning: _("This pass has expired. Open the wallet while online to get a new one."),
    },
  };

  // --- the pass kept on the phone --------------------------------------------------------
  function load() {
    try {
      const kept = JSON.parse(localStorage.getItem(KEY) || "null");
      return kept && typeof kept.credential === "string" ? kept : null;
    } catch (err) {
      return null;
    }
  }
  function save(kept) {
    localStorage.setItem(KEY, JSON.stringify(kept));
  }

  // --- drawing ------------------------------------------------------------------------
  function qrSvg(rows) {
    const quiet = 4;
    const size = rows.length + 2 * quiet;
    const svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("viewBox", "0 0 " + size + " " + size);
    svg.setAttribute("shape-rendering", "crispEdges");
    svg.setAttribute("aria-hidden", "true");
    const back = document.createElementNS(SVG, "rect");
    back.setAttribute("width", String(size));
    back.setAttribute("height", String(size));
    back.setAttribute("fill", "#fff");
    svg.appendChild(back);
    let d = "";
    rows.forEach((row, y) => {
      let x = 0;
      while (x < row.length) {
        if (row[x] !== "1") { x += 1; continue; }
        let end = x;
        while (end < row.length && row[end] === "1") end += 1;
        d += "M" + (x + quiet) + " " + (y + quiet) + "h" + (end - x) + "v1h-" + (end - x) + "z";
        x = end;
      }
    });
    const path = document.createElementNS(SVG, "path");
    path.setAttribute("d", d);
    path.setAttribute("fill", "#000");
    svg.appendChild(path);
    return svg;
  }

  function show(kept) {
    $("busy").hidden = true;
    if (!kept || !kept.pass) {
      $("empty").hidden = false;
      $("card").hidden = true;
      return;
    }
    const held = kept.pass;
    let state = kept.state || "valid";
    if (state === "valid" && Date.parse(held.expires_at) <= Date.now()) state = "expired";
    const valid = state === "valid";
    const look = valid ? STATUSES[held.status] : INVALID[state];
    $("empty").hidden = true;
    $("card").hidden = false;
    $("card").dataset.state = state;
    $("card").dataset.status = valid ? held.status : "invalid";
    $("band").className = "band " + (valid ? "status-" + held.status : "status-invalid");
    $("status-symbol").textContent = valid ? look.symbol : "⊘";
    $("status-word").textContent = look.word;
    $("status-meaning").textContent = look.meaning;
    $("holder").textContent = held.name;
    const qr = $("qr");
    qr.replaceChildren();
    // A pass a door would refuse is never shown as a code to hold up.
    qr.hidden = !valid;
    $("brightness").hidden = !valid;
    if (valid) qr.appendChild(qrSvg(held.qr));
    qr.dataset.text = valid ? held.text : "";
    $("expires").textContent = when(held.expires_at);
    $("checked").textContent = kept.checked_at ? when(kept.checked_at) : "";
    $("offline").hidden = navigator.onLine !== false;
  }

  function problem(text) {
    const node = $("problem");
    node.textContent = text || "";
    node.hidden = !text;
  }

  // --- talking to the registry --------------------------------------------------------
  let checking = false;
  async function check() {
    const kept = load();
    if (!kept || checking || kept.state === "moved" || kept.state === "revoked") return;
    checking = true;
    try {
      const r = await fetch("/api/v1/wallet/pass", {
        headers: { Authorization: "Bearer " + kept.credential, Accept: "application/json" },
        cache: "no-store",
        credentials: "omit",
      });
      if (r.ok) {
        const held = await r.json();
        save({ credential: kept.credential, pass: held, state: "valid", checked_at: held.checked_at });
        problem("");
      } else if (r.status === 401) {
        const body = await r.json().catch(() => ({}));
        kept.state = body.error === "wallet_moved" ? "moved" : "revoked";
        save(kept);
      } else if (r.status === 429) {
        problem("");
      } else {
        problem(_("The registry could not check the pass just now. It tries again by itself."));
      }
    } catch (err) {
      // Offline, or the registry cannot be reached: the kept pass stays as it was.
    } finally {
      checking = false;
      show(load());
    }
  }

  async function activate() {
    const token = new URLSearchParams(location.search).get("token") || "";
    // The token is spent now: keep it out of the history and of any later address bar.
    history.replaceState(null, "", "/wallet/activate");
    const texts = {
      404: _("This link is not known. Check that the whole link was copied, or ask for a new one."),
      409: _("This link was used already. Ask the registry or the front desk for a new one."),
      410: _("This link has expired. Ask the registry or the front desk for a new one."),
      429: _("Too many tries. Wait a minute, then open the link again."),
    };
    try {
      const r = await fetch("/api/v1/wallet/activate", {
        method: "POST",
        headers: { "Content-Type": "application/json", Accept: "application/json" },
        body: JSON.stringify({ token: token }),
        credentials: "omit",
      });
      if (r.status === 201) {
        const done = await r.json();
        save({ credential: done.credential, pass: done.pass, state: "valid", checked_at: done.pass.checked_at });
        location.replace("/wallet/");
        return;
      }
      $("busy-text").textContent = texts[r.status] ||
        _("The registry could not add the pass just now. Open the link again in a moment.");
    } catch (err) {
      $("busy-text").textContent = _("This phone is offline. Open the link again when it is online.");
    }
    root.dataset.failed = "true";
  }


  // --- checking in at a door (its poster's address) -------------------------------------
  const CHECKIN_TRIES = 3;
  const FOLLOW_EVERY_MS = 3000;
  const FOLLOW_FOR_MS = 10 * 60 * 1000;
  const clockFormat = new Intl.DateTimeFormat(catalog.locale, {
    hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23",
  });
  const REASONS = {
    status_black: _("Confirmed positive or close contact"),
    status_red: _("Not vaccinated"),
    status_yellow: _("One dose only"),
    anti_passback: _("You checked in already: check out first"),
    anti_passback_facility: _("You checked in already at another door: check out first"),
    facility_full: _("The place is full"),
    lockdown: _("The door is closed"),
    expired: _("The pass has expired"),
    not_yet_valid: _("The pass is not valid yet"),
    bad_signature: _("The pass is not genuine"),
    unknown_key: _("The pass is not from a known issuer"),
    key_revoked: _("The pass was withdrawn"),
    key_not_valid: _("The pass was withdrawn"),
    unknown_door: _("The facility does not know this door"),
    too_old: _("The check-in came too late to count"),
  };

  function newId() {
    const bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  let clockTimer = null;
  function tick() {
    $("r-clock").textContent = clockFormat.format(new Date());
  }

  // What the screen says: colour, symbol, word, headline, and why.
  function looks(result) {
    const out = result.direction === "exit";
    const colour = STATUSES[result.signal];
    if (result.state === "queued") {
      return {
        cls: "sig-" + (colour ? result.signal : "error"),
        symbol: colour ? colour.symbol : "?",
        word: colour ? colour.word : _("Unknown"),
        headline: _("Show this screen to the staff"),
        why: colour ? colour.meaning : "",
        staff: _("The facility could not be reached just now. Your check-in is kept and counted when it is back."),
      };
    }
    if (result.admit && out) {
      return {
        cls: result.signal === "black" ? "sig-black" : "sig-out",
        symbol: "←", word: _("Checked out"), headline: _("Thank you for your visit"),
        why: result.signal === "black" ? STATUSES.black.meaning : "",
        staff: result.signal === "black" ? _("Please see the staff before you leave") : "",
      };
    }
    if (result.admit) {
      const yellow = result.signal === "yellow";
      return {
        cls: yellow ? "sig-yellow" : "sig-green",
        symbol: yellow ? STATUSES.yellow.symbol : STATUSES.green.symbol,
        word: yellow ? STATUSES.yellow.word : STATUSES.green.word,
        headline: _("Checked in: welcome"),
        why: yellow ? _("Please keep to the health protocol") : "",
        staff: "",
      };
    }
    if (result.signal === "full") {
      return {
        cls: "sig-full", symbol: "⏸", word: _("Full"), headline: _("Full, please wait"),
        why: _("The place is at capacity. Wait until someone leaves, then scan again."), staff: "",
      };
    }
    if (result.signal === "black") {
      return {
        cls: "sig-black", symbol: STATUSES.black.symbol, word: STATUSES.black.word,
        headline: _("Entry refused"), why: STATUSES.black.meaning,
        staff: _("Please see the staff"),
      };
    }
    return {
      cls: result.signal === "error" ? "sig-error" : "sig-red",
      symbol: STATUSES.red.symbol, word: _("Refused"), headline: _("Entry refused"),
      why: REASONS[result.reason] || "", staff: _("Please see the staff"),
    };
  }

  function showResult(result) {
    const look = looks(result);
    document.body.classList.add("showing-result");
    $("door-intro").hidden = true;
    $("nopass").hidden = true;
    const screen = $("result");
    screen.hidden = false;
    screen.className = "result " + look.cls;
    screen.dataset.state = result.state;
    screen.dataset.signal = result.signal;
    screen.dataset.direction = result.direction || "";
    $("r-symbol").textContent = look.symbol;
    $("r-word").textContent = look.word;
    $("r-headline").textContent = look.headline;
    $("r-why").textContent = look.why;
    $("r-why").hidden = !look.why;
    $("r-staff").textContent = look.staff;
    $("r-staff").hidden = !look.staff;
    $("r-facility").textContent = result.facility_name;
    $("r-door").textContent = result.door_name;
    $("r-at").textContent = fmt(_("Scanned at {time}"), { time: when(result.at) });
    const counted = result.occupancy !== null && result.occupancy !== undefined;
    $("r-occupancy").hidden = !counted;
    if (counted) {
      $("r-occupancy").textContent = result.capacity !== null && result.capacity !== undefined
        ? fmt(_("Inside now: {n} of {max}"), { n: result.occupancy, max: result.capacity })
        : fmt(_("Inside now: {n}"), { n: result.occupancy });
    }
    tick();
    if (clockTimer === null) clockTimer = setInterval(tick, 1000);
  }

  function showNoPass(text) {
    $("door-intro").hidden = true;
    $("nopass").hidden = false;
    if (text) $("nopass").querySelector("h1").textContent = text;
  }

  async function follow(id, credential, until) {
    // A queued check-in: the facility's answer replaces the screen when it comes.
    while (Date.now() < until) {
      await new Promise((done) => setTimeout(done, FOLLOW_EVERY_MS));
      if (document.visibilityState !== "visible") continue;
      try {
        const r = await fetch("/api/v1/wallet/checkins/" + id, {
          headers: { Authorization: "Bearer " + credential, Accept: "application/json" },
          cache: "no-store", credentials: "omit",
        });
        if (r.status === 200) { showResult(await r.json()); return; }
        if (r.status !== 202 && r.status !== 429) return;
      } catch (err) { /* offline for now: ask again */ }
    }
  }

  async function checkIn() {
    const door = JSON.parse($("door").textContent);
    const kept = load();
    if (!kept || !kept.pass) { showNoPass(""); return; }
    if (kept.state === "moved" || kept.state === "revoked") {
      showNoPass(INVALID[kept.state].word);
      return;
    }
    const id = newId();
    const body = JSON.stringify({ id: id, facility_id: door.facility_id, door_id: door.door_id });
    for (let attempt = 1; attempt <= CHECKIN_TRIES; attempt += 1) {
      try {
        const r = await fetch("/api/v1/wallet/checkins", {
          method: "POST",
          headers: {
            Authorization: "Bearer " + kept.credential,
            "Content-Type": "application/json", Accept: "application/json",
          },
          body: body, cache: "no-store", credentials: "omit",
        });
        if (r.ok) {
          const result = await r.json();
          showResult(result);
          if (result.state === "queued") follow(id, kept.credential, Date.now() + FOLLOW_FOR_MS);
          return;
        }
        const problemBody = await r.json().catch(() => ({}));
        if (r.status === 401) {
          kept.state = problemBody.error === "wallet_moved" ? "moved" : "revoked";
          save(kept);
          showNoPass(INVALID[kept.state].word);
          return;
        }
        $("door-busy").textContent = r.status === 409 && problemBody.state === "camera_door"
          ? _("This door checks passes with its camera: open your pass and hold it up to the camera.")
          : r.status === 429
            ? _("Too many tries. Wait a minute, then scan the code again.")
            : _("The check-in did not go through. Scan the code again, or see the staff.");
        return;
      } catch (err) {
        // No answer at all (offline, or the network dropped): the same id is sent again.
        if (attempt === CHECKIN_TRIES) {
          $("door-busy").textContent =
            _("This phone is offline. Show your pass to the staff, or scan the code again when online.");
          return;
        }
        await new Promise((done) => setTimeout(done, 1000 * attempt));
      }
    }
  }

  function start() {
    if ("serviceWorker" in navigator) {
      navigator.serviceWorker.register("/wallet/sw.js?v=" + root.dataset.version, { scope: "/wallet/" })
        .then(() => navigator.serviceWorker.ready)
        .then((registration) => {
          if (!navigator.serviceWorker.controller && registration.active) {
            registration.active.postMessage("claim");
          }
        })
        .catch(() => { /* the wallet still works online */ });
    }
    if (root.dataset.mode === "activate") {
      activate();
      return;
    }
    if (root.dataset.mode === "door") {
      checkIn();
      return;
    }
    show(load());
    check();
    window.addEventListener("online", check);
    window.addEventListener("offline", () => show(load()));
    document.addEventListener("visibilitychange", () => {
      if (document.visibilityState === "visible") check();
    });
    setInterval(() => {
      if (document.visibilityState === "visible") check();
    }, CHECK_EVERY_MS);
  }

  start();
})();
