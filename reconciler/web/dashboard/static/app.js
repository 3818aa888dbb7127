// The dashboard's only script: plain JavaScript, no library, nothing fetched from elsewhere.
// - [data-refresh=N]: the element is fetched again every N seconds and swapped in place
//   (the overview follows the daemon without a reload);
// - #logs[data-stream]: the run's log lines arrive live (server-sent events), and the run's
//   state badge follows; at the end the page reloads once to show the final state.
"use strict";

function refreshEvery(element) {
  const seconds = Number(element.dataset.refresh) || 5;
  setInterval(async () => {
    if (document.hidden) return;
    try {
      const answer = await fetch(window.location.href, { credentials: "same-origin" });
      if (!answer.ok) return;
      const page = new DOMParser().parseFromString(await answer.text(), "text/html");
      const fresh = page.getElementById(element.id);
      if (fresh) element.innerHTML = fresh.innerHTML;
    } catch (error) {
      // The server is away for a moment: try again at the next tick.
    }
  }, seconds * 1000);
}

function followLogs(logs) {
  const url = logs.dataset.stream + "?after=" + (logs.dataset.after || "0");
  const events = new EventSource(url);
  events.addEventListener("log", (event) => {
    const line = JSON.parse(event.data);
    if (logs.querySelector(`[data-seq="${line.seq}"]`)) return;
    const span = document.createElement("span");
    span.className = "log " + line.stream;
    span.dataset.seq = line.seq;
    span.textContent = line.line + "\n";
    logs.appendChild(span);
    logs.scrollTop = logs.scrollHeight;
  });
  events.addEventListener("state", (event) => {
    const state = JSON.parse(event.data).state;
    const badge = document.querySelector("#run-state .badge");
    if (badge) { badge.textContent = state; badge.className = "badge s-" + state; }
  });
  events.addEventListener("end", () => {
    events.close();
    const following = document.getElementById("following");
    if (following) following.textContent = "(ended)";
    setTimeout(() => window.location.reload(), 500);
  });
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("[data-refresh][id]").forEach(refreshEvery);
  const logs = document.querySelector("#logs[data-stream]");
  if (logs && logs.dataset.stream) followLogs(logs);
});
