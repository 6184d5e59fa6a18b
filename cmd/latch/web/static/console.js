// latch console: live parts of the pages. Everything a page does works
// without this script except waiting for a tap and live updates.
"use strict";

// Refreshes each [data-live] element from the server when /live says the
// doors' state may have changed ([data-live="alarms"]: the alarms). A
// message that comes during a refresh asks for one more after it. The
// refresh is marked as the page's own, so that it does not keep an idle
// session alive.
function liveParts(live, kind) {
  const parts = document.querySelectorAll(kind === "alarms" ? "[data-live=alarms][id]" : "[data-live=''][id]");
  if (parts.length === 0) return;
  let busy = false, again = false;
  const refresh = async () => {
    if (busy) { again = true; return; }
    busy = true;
    try {
      do {
        again = false;
        const res = await fetch(location.href, { headers: { "Accept": "text/html", "X-Latch-Live": "1" } });
        if (!res.ok) return;
        const doc = new DOMParser().parseFromString(await res.text(), "text/html");
        for (const el of parts) {
          const fresh = doc.getElementById(el.id);
          if (fresh && !el.contains(document.activeElement)) el.replaceChildren(...fresh.childNodes);
        }
      } while (again);
    } catch (err) {
      // The next message tries again.
    } finally {
      busy = false;
    }
  };
  // The stream's first alarms message tells what the page already shows.
  let first = kind === "alarms";
  live.addEventListener(kind, () => {
    if (first) first = false;
    else refresh();
  });
}

// Keeps the nav's count of open alarms, and beeps when a newer alarm
// opens. Browsers let a page play sound only after the user clicked or
// typed on it: until then the page stays silent.
function alarmBadge(live) {
  const badge = document.getElementById("alarm-count");
  let newest = Number(badge.dataset.newest) || 0;
  let audio = null;
  const unmute = () => {
    const Ctx = window.AudioContext || window.webkitAudioContext;
    if (!Ctx) return;
    audio = audio || new Ctx();
    audio.resume().then(() => {
      badge.dataset.sound = "on";
      const state = document.getElementById("sound-state");
      if (state) state.textContent = "Sound is on on this page.";
    });
  };
  document.addEventListener("pointerdown", unmute);
  document.addEventListener("keydown", unmute);
  const beep = () => {
    if (!audio || audio.state !== "running") return;
    const t = audio.currentTime;
    const gain = audio.createGain();
    gain.connect(audio.destination);
    gain.gain.setValueAtTime(0.0001, t);
    for (const at of [0, 0.3]) {
      gain.gain.exponentialRampToValueAtTime(0.3, t + at + 0.02);
      gain.gain.exponentialRampToValueAtTime(0.0001, t + at + 0.2);
    }
    const osc = audio.createOscillator();
    osc.frequency.value = 880;
    osc.connect(gain);
    osc.start(t);
    osc.stop(t + 0.5);
    badge.dataset.beeps = String((Number(badge.dataset.beeps) || 0) + 1);
  };
  live.addEventListener("alarms", (m) => {
    const a = JSON.parse(m.data);
    badge.textContent = String(a.open);
    badge.classList.toggle("on", a.open > 0);
    if (a.newest > newest) beep();
    newest = Math.max(newest, a.newest);
  });
}

// Prepends the events the stream sends to the Activity table.
function activityStream() {
  const table = document.getElementById("events");
  if (!table || !table.dataset.stream || !window.EventSource) return;
  const body = table.tBodies[0];
  // An event already shown (the page and the stream can overlap by the
  // events stored while the page was made) is not shown twice.
  const shown = new Set([...body.rows].map((r) => r.dataset.key).filter(Boolean));
  const src = new EventSource(table.dataset.stream);
  src.onmessage = (m) => {
    const e = JSON.parse(m.data);
    const key = e.door + "#" + e.seq;
    if (shown.has(key)) return;
    shown.add(key);
    const empty = body.querySelector("tr.empty");
    if (empty) empty.remove();
    const tr = document.createElement("tr");
    tr.dataset.key = key;
    tr.className = "new" + (e.denied ? " denied" : "");
    const cell = (label, build) => {
      const td = document.createElement("td");
      td.dataset.label = label;
      build(td);
      tr.appendChild(td);
    };
    const text = (el, s) => el.appendChild(document.createTextNode(s));
    cell("Time", (td) => text(td, e.when));
    cell("Door", (td) => {
      text(td, e.door + " ");
      const s = document.createElement("span");
      s.className = "seq";
      s.textContent = "#" + e.seq;
      td.appendChild(s);
    });
    cell("Event", (td) => {
      text(td, e.type + ": ");
      const b = document.createElement("strong");
      b.textContent = e.reason;
      td.appendChild(b);
    });
    cell("Holder", (td) => {
      if (!e.holder) return;
      const a = document.createElement("a");
      a.href = "/people/" + encodeURIComponent(e.holder);
      a.textContent = e.holder;
      td.appendChild(a);
      if (e.name) text(td, " (" + e.name + ")");
    });
    cell("Card", (td) => {
      if (!e.uid) return;
      const c = document.createElement("code");
      c.textContent = e.uid;
      td.appendChild(c);
    });
    cell("Detail", (td) => text(td, e.detail || ""));
    body.insertBefore(tr, body.firstChild);
    while (body.rows.length > 500) body.deleteRow(body.rows.length - 1);
  };
}

// Waits for a card to be tapped at the enrolment's door, then offers to
// add it.
async function enroll() {
  const box = document.getElementById("enroll");
  if (!box) return;
  const state = document.getElementById("enroll-state");
  const form = document.getElementById("enroll-form");
  let after = box.dataset.after;
  for (;;) {
    let res;
    try {
      res = await fetch("/api/v1/doors/" + encodeURIComponent(box.dataset.door) + "/enroll?wait_s=30&after=" + encodeURIComponent(after));
    } catch (err) {
      state.textContent = "Lost the connection to the site; retrying…";
      await new Promise((r) => setTimeout(r, 2000));
      continue;
    }
    if (res.status === 408) continue;
    const body = await res.json();
    if (!res.ok) {
      state.textContent = "Could not wait for the tap: " + (body.error || res.status);
      return;
    }
    document.getElementById("euid").value = body.uid;
    state.textContent = "Card " + body.uid + " was tapped at door " + body.door + ". Check it is the new card, then add it.";
    form.hidden = false;
    document.getElementById("enroll-add").focus();
    return;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  if (document.getElementById("alarm-count") && window.EventSource) {
    const live = new EventSource("/live");
    liveParts(live, "message");
    liveParts(live, "alarms");
    alarmBadge(live);
  }
  activityStream();
  enroll();
});
