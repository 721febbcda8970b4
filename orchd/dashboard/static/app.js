// The orch dashboard: a plain script, no build step. It shows the documents orchd computes from its
// fold (orchd/dashboard/pages.py: RunSummary and TaskView as `orchctl status --json` prints them,
// AttemptState as `orchctl why --json` does) and applies the deltas the event stream sends.
// Everything that comes from orchd is put in the page as text (textContent), never as markup.
"use strict";

(() => {
  // The token came on the URL; the answer set it as a cookie: take it off the address bar.
  if (location.search) history.replaceState(null, "", location.pathname + location.hash);

  const STATES = ["pending", "running", "retrying", "completed", "failed", "cancelled"];
  const main = document.getElementById("main");
  const crumbs = document.getElementById("crumbs");
  const liveBadge = document.getElementById("live");

  // ------------------------------------------------------------------ small helpers

  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else if (value !== undefined && value !== null) node.setAttribute(key, value);
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  const pad = (n) => String(n).padStart(2, "0");
  const fmt = {
    clock(ts) {
      if (ts === null || ts === undefined) return "–";
      const d = new Date(ts * 1000), now = new Date();
      const hm = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
      return d.toDateString() === now.toDateString()
        ? hm : `${d.toLocaleDateString(undefined, { month: "short", day: "numeric" })} ${hm}`;
    },
    span(seconds) {
      if (seconds === null || seconds === undefined) return "–";
      const s = Math.max(0, seconds);
      if (s < 10) return `${s.toFixed(1)}s`;
      if (s < 60) return `${Math.round(s)}s`;
      if (s < 3600) return `${Math.floor(s / 60)}m${pad(Math.round(s % 60))}s`;
      return `${Math.floor(s / 3600)}h${pad(Math.floor((s % 3600) / 60))}m`;
    },
    cost: (usd) => (usd === null || usd === undefined ? "–" : `$${usd.toFixed(4)}`),
    count(n) {
      if (n === null || n === undefined) return "0";
      return n >= 1e6 ? `${(n / 1e6).toFixed(1)}M` : n >= 1e4 ? `${(n / 1e3).toFixed(1)}k` : String(n);
    },
    tokens: (i, o) => (i === null && o === null ? "–" : `${fmt.count(i)}/${fmt.count(o)}`),
    until(ts) {
      const left = ts - Date.now() / 1000;
      return left > 0 ? `${fmt.clock(ts)} (in ${fmt.span(left)})` : fmt.clock(ts);
    },
  };
  const now = () => Date.now() / 1000;
  const badge = (state) => el("span", { class: `state ${state}`, text: state });
  const link = (hash, text) => el("a", { href: hash, text });
  const runHash = (runId) => `#/run/${encodeURIComponent(runId)}`;
  const taskHash = (runId, taskId) => `${runHash(runId)}/task/${encodeURIComponent(taskId)}`;

  function progress(summary) {
    const bar = el("div", { class: "bar", title: STATES.map((s) => `${summary.counts[s] || 0} ${s}`).join(", ") });
    for (const s of ["completed", "failed", "cancelled", "running", "retrying"]) {
      const n = summary.counts[s] || 0;
      if (!n) continue;
      const fill = el("span", { class: `fill ${s}` });
      fill.style.width = `${(100 * n) / Math.max(1, summary.tasks)}%`;  // CSSOM: the policy forbids style attributes
      bar.append(fill);
    }
    return bar;
  }

  function elapsed(summary) {
    return fmt.span((summary.finished_at || now()) - summary.submitted_at);
  }

  // What a task is doing, or why it stopped, in a few words (as `orchctl watch` says it).
  function detail(task, parked) {
    if (task.held) return task.held;  // "held: …": its provider is held (providers.py)
    switch (task.state) {
      case "pending": return "waiting for a session slot";
      case "running":
        return task.notice || (task.pid ? `running as pid ${task.pid}` : "starting…");
      case "retrying":
        return parked
          ? `waiting until ${fmt.until(task.due_at)} (${task.reason})`
          : `next attempt at ${fmt.until(task.due_at)} (${task.reason})`;
      case "completed": return task.result;
      default: return task.reason || task.state;
    }
  }

  function duration(task) {
    if (task.duration !== null) return fmt.span(task.duration);
    return task.state === "running" && task.started_at ? fmt.span(now() - task.started_at) : "–";
  }

  // ------------------------------------------------------------------ a table that applies deltas

  // Columns of the tasks table: one entry per column (a field TaskView gains is one more entry).
  const TASK_COLUMNS = [
    { title: "Task", cell: (t, doc) => link(taskHash(doc.run_id, t.id), t.id) },
    { title: "State", cell: (t) => badge(t.state) },
    { title: "Attempt", cell: (t) => `${t.attempts}/${t.max_attempts}`, class: "num" },
    { title: "Agent", cell: (t) => t.agent },
    { title: "Duration", cell: duration, class: "num" },
    { title: "Cost", cell: (t) => fmt.cost(t.cost_usd), class: "num" },
    { title: "Tokens", cell: (t) => fmt.tokens(t.tokens_in, t.tokens_out), class: "num" },
    { title: "Detail", cell: (t, doc, parked) => detail(t, parked), class: "detail" },
  ];

  const RUN_COLUMNS = [
    { title: "Run", cell: (r) => link(runHash(r.run_id), r.run_id) },
    { title: "State", cell: (r) => badge(r.state) },
    { title: "Progress", cell: (r) => progress(r), class: "progress" },
    { title: "Tasks", cell: (r) => `${(r.counts.completed || 0) + (r.counts.failed || 0) + (r.counts.cancelled || 0)}/${r.tasks}`, class: "num" },
    { title: "Cost", cell: (r) => fmt.cost(r.cost_usd), class: "num" },
    { title: "Tokens", cell: (r) => fmt.tokens(r.tokens_in, r.tokens_out), class: "num" },
    { title: "Submitted", cell: (r) => fmt.clock(r.submitted_at), class: "num" },
    { title: "Elapsed", cell: elapsed, class: "num" },
  ];

  class Grid {
    constructor(columns, key) {
      this.columns = columns;
      this.key = key;
      this.items = new Map();
      this.rows = new Map();
      this.parked = new Set();
      this.doc = null;
      this.body = el("tbody");
      this.node = el("table", { class: "grid" },
        el("thead", {}, el("tr", {}, columns.map((c) => el("th", { class: c.class, text: c.title })))),
        this.body);
    }

    // items: new or changed; order: the page's keys in order (null: as before).
    apply(doc, items, order, parked) {
      this.doc = doc;
      for (const item of items) {
        const k = this.key(item);
        this.items.set(k, item);
        if (parked) (parked.includes(k) ? this.parked.add(k) : this.parked.delete(k));
      }
      if (order) {
        const keep = new Set(order);
        for (const k of [...this.rows.keys()]) {
          if (!keep.has(k)) { this.rows.delete(k); this.items.delete(k); }
        }
        this.body.replaceChildren(...order.map((k) => this.row(k)));
      }
      for (const item of items) if (this.rows.has(this.key(item))) this.fill(this.key(item));
    }

    row(k) {
      if (!this.rows.has(k)) { this.rows.set(k, el("tr")); this.fill(k); }
      return this.rows.get(k);
    }

    fill(k) {
      const item = this.items.get(k), tr = this.rows.get(k);
      if (!item || !tr) return;
      tr.dataset.state = item.state || item.summary?.state || "";
      tr.replaceChildren(...this.columns.map((c) => {
        const td = el("td", { class: c.class }, c.cell(item, this.doc, this.parked.has(k)));
        if (c.class === "detail") td.title = td.textContent;  // the whole text, where it is cut
        return td;
      }));
    }

    tick() {  // running durations move on between deltas
      for (const [k, item] of this.items) if (item.state === "running") this.fill(k);
    }
  }

  function pager(doc, limit, go) {
    const first = doc.total ? doc.offset + 1 : 0, last = Math.min(doc.total, doc.offset + limit);
    return el("div", { class: "pager" },
      el("button", { disabled: doc.offset > 0 ? null : "", onclick: () => go(Math.max(0, doc.offset - limit)), text: "‹ previous" }),
      el("span", { class: "muted", text: `${first}–${last} of ${doc.total.toLocaleString()}` }),
      el("button", { disabled: last < doc.total ? null : "", onclick: () => go(doc.offset + limit), text: "next ›" }));
  }

  // ------------------------------------------------------------------ the event stream

  let source = null;
  let ticker = null;

  function follow(params, on) {
    if (source) source.close();
    source = new EventSource(`/api/stream?${new URLSearchParams(params)}`);
    source.addEventListener("snapshot", (e) => on.doc(JSON.parse(e.data)));
    source.addEventListener("delta", (e) => on.doc(JSON.parse(e.data)));
    if (on.log) source.addEventListener("log", (e) => on.log(JSON.parse(e.data)));
    source.onopen = () => { liveBadge.textContent = "live"; liveBadge.className = "live on"; };
    source.onerror = () => {
      const gone = source.readyState === EventSource.CLOSED;
      liveBadge.textContent = gone ? "disconnected (reload)" : "reconnecting…";
      liveBadge.className = "live off";
    };
  }

  function every(ms, fn) {
    if (ticker) clearInterval(ticker);
    ticker = setInterval(fn, ms);
  }

  function fact(label, value) {
    return el("div", { class: "fact" }, el("span", { class: "label", text: label }), el("span", { class: "value" }, value));
  }

  // ------------------------------------------------------------------ pages

  function runsPage(query) {
    const limit = 50, offset = Number(query.get("offset") || 0);
    const grid = new Grid(RUN_COLUMNS, (r) => r.run_id);
    const foot = el("div");
    crumbs.replaceChildren(el("span", { text: "runs" }));
    main.replaceChildren(el("section", { class: "card" }, el("h1", { text: "Runs" }), grid.node, foot));
    follow({ view: "runs", offset, limit }, {
      doc(doc) {
        grid.apply(doc, doc.runs, doc.order);
        foot.replaceChildren(doc.total ? pager(doc, limit, (o) => { location.hash = `#/?offset=${o}`; })
          : el("p", { class: "muted", text: "No runs yet: orchctl submit PLAN" }));
      },
    });
    every(1000, () => { for (const [k, r] of grid.items) if (r.state === "running") grid.fill(k); });
  }

  // The providers a run spends: holds, limits, and what the run spent of each.
  const PROVIDER_COLUMNS = [
    { title: "Provider", cell: (v) => v.provider },
    { title: "State", cell: (v) => (v.held ? badge("held") : badge("ok")) },
    { title: "Until", cell: (v) => (v.held ? (v.until ? fmt.until(v.until) : "you act (orchctl retry)") : "–"), class: "num" },
    { title: "Limit", cell: (v) => (v.limit === null ? "–" : String(v.limit)), class: "num" },
    { title: "Running", cell: (v) => `${v.running}/${v.tasks}`, class: "num" },
    { title: "Spent", cell: (v) => fmt.cost(v.cost_usd), class: "num" },
    { title: "Reason", cell: (v) => v.reason, class: "detail" },
  ];

  function runHeader(summary) {
    const providers = summary.providers || [];
    let table = null;
    if (providers.length) {
      const grid = new Grid(PROVIDER_COLUMNS, (v) => v.provider);
      grid.apply(summary, providers, providers.map((v) => v.provider));
      table = el("div", { class: "providers" }, el("h2", { text: "Providers" }), grid.node);
    }
    return [
      el("div", { class: "title" }, el("h1", { text: summary.run_id }), badge(summary.state)),
      progress(summary),
      el("div", { class: "facts" },
        fact("Plan", summary.name),
        fact("Submitted", fmt.clock(summary.submitted_at)),
        fact("Elapsed", elapsed(summary)),
        fact("Concurrency", String(summary.concurrency)),
        fact("Cost", fmt.cost(summary.cost_usd)),
        summary.budget_usd ? fact("Budget", fmt.cost(summary.budget_usd)) : null,
        fact("Tokens", fmt.tokens(summary.tokens_in, summary.tokens_out)),
        fact("Workdir", summary.workdir)),
      table,
    ];
  }

  function runPage(runId, query) {
    const limit = 200, offset = Number(query.get("offset") || 0), only = query.get("state") || "";
    const grid = new Grid(TASK_COLUMNS, (t) => t.id);
    const head = el("div"), filters = el("div", { class: "filters" }), foot = el("div");
    const go = (state, o) => { location.hash = `${runHash(runId)}?${new URLSearchParams({ ...(state ? { state } : {}), ...(o ? { offset: o } : {}) })}`; };
    crumbs.replaceChildren(link("#/", "runs"), el("span", { text: " / " }), el("span", { text: runId }));
    main.replaceChildren(el("section", { class: "card" }, head), el("section", { class: "card" }, filters, grid.node, foot));
    let summary = null;
    follow({ view: "run", run: runId, offset, limit, ...(only ? { state: only } : {}) }, {
      doc(doc) {
        if (doc.summary) {
          summary = doc.summary;
          head.replaceChildren(...runHeader(summary));
          filters.replaceChildren(
            el("button", { class: only ? "chip" : "chip on", onclick: () => go("", 0), text: `all ${summary.tasks}` }),
            ...STATES.filter((s) => summary.counts[s]).map((s) =>
              el("button", { class: `chip ${s}${only === s ? " on" : ""}`, onclick: () => go(s, 0), text: `${s} ${summary.counts[s]}` })));
        }
        grid.apply(doc, doc.tasks, doc.order, doc.parked);
        foot.replaceChildren(doc.total > limit || doc.offset ? pager(doc, limit, (o) => go(only, o)) : "");
        if (!doc.total) foot.replaceChildren(el("p", { class: "muted", text: `No ${only || ""} tasks.` }));
      },
    });
    every(1000, () => {
      grid.tick();
      if (summary && summary.state === "running") head.replaceChildren(...runHeader(summary));
    });
  }

  function lineClass(line) {
    const t = line.trimStart();
    if (t.startsWith("→")) return "tool";
    if (t.startsWith("←")) return "result";
    if (t.startsWith("✗") || t.startsWith("!")) return "error";
    if (t.startsWith("✓")) return "ok";
    if (t.startsWith("──") || t.startsWith("[orch:")) return "note";
    if (t.startsWith("»")) return "user";
    return "";
  }

  function diffClass(line) {
    if (line.startsWith("diff --git") || line.startsWith("+++") || line.startsWith("---")) return "file";
    if (line.startsWith("@@")) return "hunk";
    if (line.startsWith("+")) return "add";
    if (line.startsWith("-")) return "del";
    return "";
  }

  function lines(pre, text, classOf) {
    for (const line of text.split("\n")) pre.append(el("span", { class: classOf(line), text: `${line}\n` }));
  }

  // How an attempt's checks went (the plan's `verify`, run after its agent exited 0): passed, or
  // how the check that did not pass ended, with the tail of its output on hover.
  function verified(v) {
    if (!v) return "–";
    if (v.result === "passed") return `passed (${v.checks})`;
    return el("span", { text: `${v.result}: ${(v.argv || []).join(" ")}: ${v.detail}`, title: v.output || "" });
  }

  // Columns of the attempts table.
  const ATTEMPT_COLUMNS = [
    { title: "#", cell: (a) => String(a.n), class: "num" },
    { title: "Outcome", cell: (a) => (a.outcome ? badge(a.outcome === "success" ? "completed" : a.outcome) : badge("running")) },
    { title: "Exit", cell: (a) => (a.exit_code ?? (a.signal ? `signal ${a.signal}` : "–")), class: "num" },
    { title: "Started", cell: (a) => fmt.clock(a.started_at || a.launched_at), class: "num" },
    { title: "Duration", cell: (a) => fmt.span((a.finished_at || now()) - (a.started_at || a.launched_at)), class: "num" },
    { title: "Cost", cell: (a) => fmt.cost(a.report?.cost_usd ?? null), class: "num" },
    { title: "Tokens", cell: (a) => fmt.tokens(a.report?.tokens_in ?? null, a.report?.tokens_out ?? null), class: "num" },
    { title: "Verify", cell: (a) => verified(a.verify) },
    { title: "Reason", cell: (a) => a.reason || a.report?.result || "", class: "detail" },
  ];

  function taskPage(runId, taskId, query) {
    const chosen = query.get("attempt");
    const head = el("div"), attempts = el("div"), convo = el("pre", { class: "conversation" });
    const convoTitle = el("h2", { text: "Conversation" }), diffPre = el("pre", { class: "diff" });
    const diffNote = el("p", { class: "muted" });
    crumbs.replaceChildren(link("#/", "runs"), el("span", { text: " / " }), link(runHash(runId), runId),
      el("span", { text: " / " }), el("span", { text: taskId }));
    main.replaceChildren(
      el("section", { class: "card" }, head),
      el("section", { class: "card" }, el("h2", { text: "Attempts" }), attempts),
      el("section", { class: "card" }, convoTitle, convo),
      el("section", { class: "card" }, el("h2", { text: "Diff" }), diffNote, diffPre));
    let task = null, parked = false, lastState = null;

    async function loadDiff() {
      diffNote.textContent = "Loading…";
      const answer = await fetch(`/api/diff?${new URLSearchParams({ run: runId, task: taskId })}`);
      const reply = await answer.json();
      diffPre.replaceChildren();
      if (!answer.ok) { diffNote.textContent = reply.message; return; }
      diffNote.textContent = reply.diff ? `branch ${reply.branch}` : `No change (branch ${reply.branch}).`;
      lines(diffPre, reply.diff.replace(/\n$/, ""), diffClass);
    }

    function header() {
      head.replaceChildren(
        el("div", { class: "title" }, el("h1", { text: task.id }), badge(task.state)),
        el("p", { class: "detail" }, detail(task, parked)),
        el("div", { class: "facts" },
          fact("Attempt", `${task.attempts} of at most ${task.max_attempts}`),
          fact("Agent", task.agent),
          fact("Duration", duration(task)),
          fact("Cost", fmt.cost(task.cost_usd)),
          fact("Tokens", fmt.tokens(task.tokens_in, task.tokens_out)),
          task.provider ? fact("Provider", task.provider) : null,
          task.notice ? fact("Notice", task.notice) : null,
          task.branch ? fact("Branch", task.branch) : null,
          task.files.length ? fact("Files", task.files.join(", ")) : null));
    }

    follow({ view: "task", run: runId, task: taskId, ...(chosen ? { attempt: chosen } : {}) }, {
      doc(doc) {
        task = doc.task;
        parked = doc.parked;
        header();
        if (doc.attempts) {
          const grid = new Grid(ATTEMPT_COLUMNS, (a) => a.n);
          grid.apply(doc, doc.attempts, doc.attempts.map((a) => a.n));
          for (const [n, tr] of grid.rows) {
            tr.classList.add("pick");
            if (String(n) === (chosen || String(doc.attempts.length))) tr.classList.add("chosen");
            tr.addEventListener("click", () => { location.hash = `${taskHash(runId, taskId)}?attempt=${n}`; });
          }
          attempts.replaceChildren(doc.attempts.length ? grid.node : el("p", { class: "muted", text: "No attempt yet." }));
        }
        if (task.state !== lastState) { lastState = task.state; loadDiff(); }
      },
      log(piece) {
        if (piece.reset) { convo.replaceChildren(); convoTitle.textContent = `Conversation of attempt ${piece.attempt}`; }
        const stick = convo.scrollHeight - convo.scrollTop - convo.clientHeight < 40;
        lines(convo, piece.text.replace(/\n$/, ""), lineClass);
        if (stick) convo.scrollTop = convo.scrollHeight;
      },
    });
    every(1000, () => { if (task && task.state === "running") header(); });
  }

  // ------------------------------------------------------------------ routing: #/, #/run/ID, #/run/ID/task/TASK

  function show() {
    const [path, search] = location.hash.replace(/^#/, "").split("?");
    const query = new URLSearchParams(search || "");
    const parts = (path || "/").split("/").filter(Boolean).map(decodeURIComponent);
    if (parts[0] === "run" && parts.length === 2) runPage(parts[1], query);
    else if (parts[0] === "run" && parts[2] === "task" && parts.length === 4) taskPage(parts[1], parts[3], query);
    else runsPage(query);
    window.scrollTo(0, 0);
  }

  window.addEventListener("hashchange", show);
  show();
})();
