// corral observer: refresh server-rendered fragments, show live resources, follow a log.
// Plain JS, no build step, no network beyond this server.
"use strict";

function refreshFragments() {
  document.querySelectorAll("[data-refresh]").forEach((el) => {
    const every = parseInt(el.dataset.every || "2000", 10);
    const tick = async () => {
      try {
        const answer = await fetch(el.dataset.refresh, { headers: { Accept: "text/html" } });
        if (answer.ok) el.innerHTML = await answer.text();
      } catch (e) { /* the server restarts: try again next time */ }
      setTimeout(tick, every);
    };
    setTimeout(tick, every);
  });
}

function formatBytes(n) {
  const units = ["B", "KiB", "MiB", "GiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return n.toFixed(i ? 1 : 0) + " " + units[i];
}

function followResources() {
  const table = document.querySelector("[data-resources]");
  if (!table) return;
  const body = table.querySelector("tbody");
  const tick = async () => {
    try {
      const answer = await fetch(table.dataset.resources);
      if (answer.ok) {
        const data = await answer.json();
        body.replaceChildren();
        if (!data.runs.length) {
          body.innerHTML = '<tr><td colspan="7" class="muted">no live runs</td></tr>';
        }
        for (const r of data.runs) {
          const row = document.createElement("tr");
          for (const value of [r.job, r.process, r.run, r.host ? r.pid + "@" + r.host : r.pid, r.processes, r.cpu_percent.toFixed(1), formatBytes(r.rss)]) {
            const cell = document.createElement("td");
            cell.textContent = String(value);
            row.appendChild(cell);
          }
          body.appendChild(row);
        }
      }
    } catch (e) { /* next time */ }
    setTimeout(tick, 3000);
  };
  tick();
}

function followLog() {
  const pre = document.getElementById("log");
  if (!pre) return;
  const status = document.getElementById("log-status");
  const base = pre.dataset.log;
  let next = null;
  const tick = async () => {
    let live = true;
    try {
      const url = next === null ? base : base + "&offset=" + next;
      const answer = await fetch(url);
      const data = await answer.json();
      if (!answer.ok) {
        status.textContent = data.error || answer.statusText;
      } else {
        if (next !== null && data.size < next) {
          next = 0; // rotated (copytruncate): start again at the top of the new file
        } else {
          if (data.data) {
            const atBottom = window.innerHeight + window.scrollY >= document.body.scrollHeight - 20;
            pre.appendChild(document.createTextNode(data.data));
            if (atBottom) window.scrollTo(0, document.body.scrollHeight);
          }
          next = data.next;
        }
        live = data.live || data.next < data.size;
        status.textContent = data.process + " run " + data.run + " · " + data.file + " · " +
          formatBytes(data.size) + (data.live ? " · live, following" : " · ended");
      }
    } catch (e) { /* next time */ }
    setTimeout(tick, live ? 1000 : 5000);
  };
  tick();
}

document.addEventListener("DOMContentLoaded", () => {
  refreshFragments();
  followResources();
  followLog();
});
