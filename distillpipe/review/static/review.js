// The review page. Every field of a record reaches the page through textContent:
// nothing from a record is ever parsed as HTML, and no element gets a URL from one.
"use strict";

const token = new URLSearchParams(location.hash.slice(1)).get("token") || "";
const state = { items: [], decisions: {}, reasons: [], index: 0, mode: "keys", traces: false };

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

function setStatus(text, isError) {
  const status = document.getElementById("status");
  status.textContent = text;
  status.className = isError ? "error" : "";
}

async function api(path, body) {
  const options = { headers: { "X-Review-Token": token }, cache: "no-store" };
  if (body !== undefined) {
    options.method = "POST";
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  const response = await fetch(path, options);
  const data = await response.json().catch(() => ({ error: response.statusText }));
  if (!response.ok) throw new Error(data.error || String(response.status));
  return data;
}

function keeps(decision) {
  return decision === "accept" || decision === "edit" || decision === "pick";
}

function progress() {
  let done = 0, compared = 0, agreed = 0;
  for (const item of state.items) {
    const decision = state.decisions[item.id];
    if (!decision) continue;
    done += 1;
    if (decision.decision === "skip") continue;
    compared += 1;
    if (keeps(decision.decision) === (item.pipeline === "kept")) agreed += 1;
  }
  const total = state.items.length;
  const agreement = compared ? `${Math.round((100 * agreed) / compared)}% (${agreed} of ${compared})` : "—";
  const line = `record ${total ? state.index + 1 : 0} of ${total} · done ${done} · left ${total - done} · agreement with the filters so far: ${agreement}`;
  const node = document.getElementById("progress");
  node.textContent = line;
  node.dataset.done = String(done);
}

function section(title, text) {
  const wrap = el("section");
  wrap.append(el("h2", title), el("pre", text, "text"));
  return wrap;
}

function renderLineage(item) {
  const wrap = el("section");
  wrap.append(el("h2", "Lineage"));
  const origin = item.origin || {};
  const parts = [];
  for (const key of ["stage", "operator", "round", "parent_id"]) {
    if (origin[key] !== undefined && origin[key] !== null) parts.push(`${key}: ${origin[key]}`);
  }
  wrap.append(el("p", parts.join(" · ") || "no lineage", "meta"));
  if (item.parent) wrap.append(el("p", "parent instruction:", "meta"), el("pre", item.parent, "text"));
  return wrap;
}

function renderSamples(item) {
  const wrap = el("section");
  wrap.append(el("h2", "Samples"));
  const decision = state.decisions[item.id];
  const chosen = decision && decision.decision === "pick" ? decision.chosen : item.chosen;
  item.responses.forEach((response, index) => {
    const box = el("div", null, index === chosen ? "sample chosen" : "sample");
    box.dataset.sample = String(index);
    const label = `sample ${index + 1}${index === chosen ? " (chosen)" : ""}`;
    const meta = [response.model, response.finish_reason && `finish: ${response.finish_reason}`, response.provenance]
      .filter(Boolean).join(" · ");
    box.append(el("strong", label), el("span", meta ? `  ${meta}` : "", "meta"));
    if (response.reasoning) {
      const details = el("details");
      details.open = state.traces;
      details.append(el("summary", "reasoning trace"), el("pre", response.reasoning, "text"));
      box.append(details);
    }
    box.append(el("pre", response.text, "text answer"));
    wrap.append(box);
  });
  if (decision && decision.decision === "edit") {
    const box = el("div", null, "sample chosen");
    box.append(el("strong", "your edit (chosen, human-edited)"), el("pre", decision.text, "text"));
    wrap.append(box);
  }
  return wrap;
}

function renderFilters(item) {
  const wrap = el("section");
  wrap.append(el("h2", "Filters"));
  const table = el("table");
  const head = el("tr");
  for (const title of ["filter", "verdict", "score", "reason"]) head.append(el("th", title));
  table.append(head);
  for (const row of item.filters) {
    const tr = el("tr");
    const score = row.score === null || row.score === undefined ? "—" : JSON.stringify(row.score);
    tr.append(el("td", row.name), el("td", row.verdict, `verdict-${row.verdict.split(" ")[0]}`),
      el("td", score), el("td", row.reason));
    table.append(tr);
  }
  wrap.append(table);
  return wrap;
}

function render() {
  const main = document.getElementById("record");
  main.replaceChildren();
  progress();
  const item = state.items[state.index];
  if (!item) {
    main.append(el("p", "The sample is empty."));
    return;
  }
  main.dataset.id = item.id;
  const head = el("p", `${item.id} · ${item.stratum} · the pipeline ${item.pipeline} it`, "meta");
  const decision = state.decisions[item.id];
  if (decision) {
    const reason = decision.reason ? `: ${decision.reason}` : "";
    head.append(el("span", `${decision.decision}${reason}`, `badge ${decision.decision}`));
  }
  main.append(head, section("Instruction", item.instruction));
  if (item.input) main.append(section("Input", item.input));
  if (item.system) main.append(section("System prompt", item.system));
  main.append(renderSamples(item), renderFilters(item), renderLineage(item));
}

function setMode(mode, text) {
  state.mode = mode;
  document.getElementById("mode").textContent = text || "";
}

async function decide(decision, extra) {
  const item = state.items[state.index];
  if (!item) return;
  const note = document.getElementById("note");
  const body = { id: item.id, decision, note: note.value, reviewed: item.reviewed, ...extra };
  setMode("keys");
  setStatus("saving…");
  try {
    const answer = await api("/api/decisions", body);
    state.decisions[item.id] = answer.saved;
    note.value = "";
    setStatus(`saved: ${decision}${answer.saved.reason ? ` (${answer.saved.reason})` : ""} for ${item.id}`);
    document.body.dataset.saved = String(Number(document.body.dataset.saved || 0) + 1);
    move(1);
  } catch (error) {
    setStatus(`not saved: ${error.message}`, true);
  }
}

function move(step) {
  const next = state.index + step;
  if (next >= 0 && next < state.items.length) state.index = next;
  render();
}

function nextUndecided() {
  for (let step = 1; step <= state.items.length; step += 1) {
    const index = (state.index + step) % state.items.length;
    if (!state.decisions[state.items[index].id]) {
      state.index = index;
      break;
    }
  }
  render();
}

function openEditor() {
  const item = state.items[state.index];
  if (!item) return;
  const decision = state.decisions[item.id];
  const chosen = item.responses[item.chosen];
  const text = document.getElementById("edit-text");
  text.value = decision && decision.decision === "edit" ? decision.text : chosen ? chosen.text : "";
  document.getElementById("editor").hidden = false;
  setMode("edit", "editing the chosen response");
  text.focus();
}

function closeEditor() {
  document.getElementById("editor").hidden = true;
  setMode("keys");
  document.getElementById("record").focus();
}

function onEditorKey(event) {
  if (event.key === "Escape") {
    event.preventDefault();
    closeEditor();
  } else if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
    event.preventDefault();
    const item = state.items[state.index];
    const text = document.getElementById("edit-text").value;
    closeEditor();
    decide("edit", { text, chosen: item.chosen });
  }
}

function onNoteKey(event) {
  if (event.key === "Enter" || event.key === "Escape") {
    event.preventDefault();
    event.target.blur();
    document.getElementById("record").focus();
    if (state.mode === "custom" && event.key === "Enter") decide("reject", { reason: "custom" });
    else setMode("keys");
  }
}

function onKey(event) {
  if (event.target.id === "note") return onNoteKey(event);
  if (event.target.id === "edit-text") return onEditorKey(event);
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  const key = event.key;
  if (key === "Escape") return setMode("keys");
  if (state.mode === "reject") {
    const index = Number(key) - 1;
    if (Number.isInteger(index) && index >= 0 && index < state.reasons.length) {
      event.preventDefault();
      const reason = state.reasons[index];
      const note = document.getElementById("note");
      if (reason === "custom" && !note.value.trim()) {
        setMode("custom", "custom reason: write it in the note, then Enter");
        note.focus();
        return;
      }
      decide("reject", { reason });
    }
    return;
  }
  if (state.mode === "pick") {
    const index = Number(key) - 1;
    const item = state.items[state.index];
    if (item && Number.isInteger(index) && index >= 0 && index < item.responses.length) {
      event.preventDefault();
      decide("pick", { chosen: index });
    }
    return;
  }
  const actions = {
    a: () => decide("accept"),
    r: () => setMode("reject", "reject: " + state.reasons.map((r, i) => `${i + 1} ${r}`).join(" · ")),
    e: openEditor,
    p: () => setMode("pick", "pick the chosen sample: 1–" + (state.items[state.index] || { responses: [] }).responses.length),
    s: () => decide("skip"),
    n: () => document.getElementById("note").focus(),
    j: () => move(1),
    ArrowRight: () => move(1),
    k: () => move(-1),
    ArrowLeft: () => move(-1),
    u: nextUndecided,
    t: () => { state.traces = !state.traces; render(); },
    "?": () => { const help = document.getElementById("help"); help.hidden = !help.hidden; },
  };
  if (actions[key]) {
    event.preventDefault();
    actions[key]();
  }
}

async function start() {
  document.addEventListener("keydown", onKey);
  if (!token) {
    setStatus("This page needs the token: open the URL that `distillpipe review` printed.", true);
    return;
  }
  try {
    const sample = await api("/api/sample");
    state.items = sample.items;
    state.decisions = sample.decisions;
    state.reasons = sample.reasons;
    document.getElementById("run").textContent = sample.run;
    render();
    document.getElementById("record").focus();
    document.body.dataset.ready = "1";
  } catch (error) {
    setStatus(`could not load the sample: ${error.message}`, true);
  }
}

start();
