// The MAGI-1 panel: every paid task, its video, and the account, in ComfyUI's sidebar.
//
// What a user sees (sidebar tab "MAGI-1", video icon):
//   - the account: balance (read by the ComfyUI server with the stored key, cached a minute),
//     tasks today / this month, tasks running against the slots the user allows, and a spend
//     figure only when the user has set a price per task (no price is ever assumed);
//   - the tasks, newest first, 50 at a time (more load as the list scrolls): first-frame
//     thumbnail, status (waiting for a slot / submitted, answer pending / running / saved / completed, not saved / failed /
//     dead), prompt excerpt, seed, resolution, when, how long it took, the error, an NSFW flag;
//     actions: play the saved video, add it to the graph (a Magi1LoadVideo node), collect an
//     unsaved task now, copy the task id. Rows change live from the server's `magi1.task` events,
//     including tasks collected in the background.
// Also here: the spend guard, max running tasks and price per task in Settings › WaveSpeed MAGI-1
// (kept in the pack's settings file on the server, like the key), a toast when the spend guard
// refuses a run, and new Magi1LoadVideo / Magi1Poll nodes wide enough for the video player's controls.
// Routes: magi1/panel_routes.py. Nothing here is kept in browser storage.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";
import { chainCallback } from "./magi1_util.js";

const EXTENSION_NAME = "WaveSpeed.MAGI1.Panel";
const TAB_ID = "magi1-tasks";
const TASK_EVENT = "magi1.task";
const WRITE_HEADERS = { "Content-Type": "application/json", "X-Magi1-Request": "1" };
const PAGE_SIZE = 50;
const LOAD_VIDEO_NODE_TYPE = "Magi1LoadVideo";
// The nodes that preview the clip. Chromium's native <video> controls hide the duration below
// about 360 px of player width; 420 px of node leaves that after the node's margins.
const VIDEO_PREVIEW_NODE_TYPES = new Set([LOAD_VIDEO_NODE_TYPE, "Magi1Poll"]);
const VIDEO_NODE_MIN_WIDTH = 420;
const EVENT_DEBOUNCE_MS = 250;
const SETTINGS_CATEGORY = "WaveSpeed MAGI-1";
const STATE_LABELS = {
  waiting: "waiting for a slot",
  // The billed POST went out and its answer is not known yet (or was lost: the ledger reconciles it
  // through WaveSpeed's history before that request is ever sent again).
  submitting: "submitted, answer pending",
  running: "running",
  saved: "saved",
  completed: "completed, not saved",
  failed: "failed",
  dead: "dead",
};
// Ledger statuses -> panel states, as magi1/panel_routes.py STATES (for rows updated from events).
const STATES = {
  claimed: "waiting", submitting: "submitting",
  submitted: "running", created: "running", processing: "running",
  completed: "completed", saved: "completed", failed: "failed", dead: "dead",
};
const SETTINGS = [
  {
    key: "max_tasks_per_run", id: "WaveSpeedMAGI1.SpendGuard", group: "Spend guard",
    name: "Spend guard: billed tasks one run may create",
    tooltip: "A queued workflow that would submit more MAGI-1 tasks than this is refused before anything " +
      "is billed (a video loader's frames wired into Magi1Submit's image submit one task per frame). " +
      "MAGI1_MAX_TASKS_PER_RUN on the server wins.",
    step: 1, min: 1, placeholder: "8",
  },
  {
    key: "account_max_running", id: "WaveSpeedMAGI1.MaxRunning", group: "Spend guard",
    name: "Tasks running at once for the account",
    tooltip: "At most this many MAGI-1 tasks run at the same time (WaveSpeed's Bronze level allows 2–3). " +
      "Empty: learned from the service. MAGI1_ACCOUNT_MAX_RUNNING on the server wins.",
    step: 1, min: 1, placeholder: "learned",
  },
  {
    key: "price_per_task_usd", id: "WaveSpeedMAGI1.PricePerTask", group: "Spend",
    name: "Price of one task, USD (for the panel's spend figure)",
    tooltip: "What one MAGI-1 task costs you, as listed on the model's page on wavespeed.ai " +
      "(wavespeed-ai/magi-1-24b). The panel shows spend only from this number; none is assumed.",
    step: 0.01, min: 0, placeholder: "not set",
  },
];

function element(tag, properties = {}, children = []) {
  const node = Object.assign(document.createElement(tag), properties);
  node.append(...children.filter((child) => child !== null && child !== undefined));
  return node;
}

async function request(path, { method = "GET", body } = {}) {
  const init = { method, cache: "no-store" };
  if (method !== "GET") {
    init.headers = WRITE_HEADERS;
    init.body = JSON.stringify(body ?? {});
  }
  const response = await api.fetchApi(path, init);
  let answer = {};
  try {
    answer = await response.json();
  } catch {
    // not JSON: described by the status below
  }
  if (!response.ok) throw new Error(answer.error || `${path} answered HTTP ${response.status}`);
  return answer;
}

function toast(severity, summary, detail, life = 8000) {
  const toasts = app.extensionManager?.toast;
  if (toasts?.add) toasts.add({ severity, summary, detail, life });
  else console.warn(`[MAGI-1] ${summary}: ${detail}`);
}

function viewUrl({ filename, subfolder = "", type = "output" }) {
  return api.apiURL(`/view?${new URLSearchParams({ filename, subfolder, type })}`);
}

function ago(epochSeconds) {
  const seconds = Math.max(0, Date.now() / 1000 - epochSeconds);
  if (seconds < 60) return "just now";
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)} h ago`;
  return new Date(epochSeconds * 1000).toLocaleDateString();
}

function duration(seconds) {
  if (seconds === null || seconds === undefined) return "";
  if (seconds < 90) return `${Math.round(seconds)} s`;
  return `${Math.floor(seconds / 60)} min ${Math.round(seconds % 60)} s`;
}

function money(value) {
  return value === null || value === undefined ? "" : `$${Number(value).toFixed(2)}`;
}

function addStyles() {
  if (document.getElementById("magi1-panel-styles")) return;
  const css = `
    .magi1-panel { display: flex; flex-direction: column; height: 100%; font-size: 13px; color: var(--fg-color, #ddd); }
    .magi1-panel h3 { margin: 0; font-size: 14px; }
    .magi1-account { padding: 10px 12px; border-bottom: 1px solid var(--border-color, #444); display: grid; gap: 4px; }
    .magi1-account .magi1-line { display: flex; justify-content: space-between; gap: 8px; }
    .magi1-account .magi1-muted, .magi1-task .magi1-muted { color: var(--descrip-text, #999); font-size: 12px; }
    .magi1-account [data-state="error"], .magi1-account .magi1-muted[data-state="error"] { color: var(--error-text, #f77); }
    .magi1-list { overflow-y: auto; flex: 1; padding: 4px 0; }
    .magi1-task { display: grid; grid-template-columns: 80px 1fr; gap: 8px; padding: 8px 10px;
      border-bottom: 1px solid var(--border-color, #333); }
    .magi1-thumb { width: 80px; height: 45px; object-fit: cover; border-radius: 4px; background: var(--comfy-input-bg, #222); }
    .magi1-badge { display: inline-block; padding: 0 6px; border-radius: 8px; font-size: 11px; margin-right: 4px;
      background: var(--comfy-input-bg, #333); }
    .magi1-badge[data-state="saved"] { background: #1f5130; }
    .magi1-badge[data-state="running"], .magi1-badge[data-state="waiting"],
    .magi1-badge[data-state="submitting"] { background: #1e3f66; }
    .magi1-badge[data-state="failed"], .magi1-badge[data-state="dead"] { background: #6a2020; }
    .magi1-badge[data-nsfw] { background: #6a4a10; }
    .magi1-prompt { overflow: hidden; text-overflow: ellipsis; display: -webkit-box; -webkit-line-clamp: 2;
      -webkit-box-orient: vertical; margin: 2px 0; }
    .magi1-error { color: var(--error-text, #f77); font-size: 12px; overflow-wrap: anywhere; }
    .magi1-actions { display: flex; flex-wrap: wrap; gap: 4px; margin-top: 4px; }
    .magi1-actions button, .magi1-panel button.magi1-more {
      padding: 2px 6px; border-radius: 4px; font: inherit; font-size: 12px; cursor: pointer;
      border: 1px solid var(--border-color, #555); background: var(--comfy-menu-bg, #333); color: inherit; }
    .magi1-actions button:disabled { opacity: 0.5; cursor: default; }
    .magi1-player { grid-column: 1 / span 2; width: 100%; max-height: 240px; background: #000; border-radius: 4px; }
    .magi1-empty { padding: 16px 12px; color: var(--descrip-text, #999); }
    .magi1-setting { display: flex; flex-direction: column; gap: 4px; width: 16rem; }
    .magi1-setting input { padding: 6px 8px; border-radius: 6px; font: inherit;
      border: 1px solid var(--border-color, #555); background: var(--comfy-input-bg, #222); color: var(--input-text, #ddd); }
    .magi1-setting-status { font-size: 0.85em; color: var(--descrip-text, #aaa); }
    .magi1-setting-status[data-state="error"] { color: var(--error-text, #f66); }
  `;
  document.head.append(element("style", { id: "magi1-panel-styles", textContent: css }));
}

// --- the panel ----------------------------------------------------------------------------------

class Magi1Panel {
  constructor() {
    this.rows = new Map(); // row.key (the task id, or "claim-<row>" before it has one) -> row, in list order
    this.nextBefore = null;
    this.loading = false;
    this.root = null;
    this.pendingIds = new Set();
    this.refreshTimer = null;
    api.addEventListener(TASK_EVENT, (event) => this.onTaskEvent(event.detail ?? {}));
  }

  // Mounted by the sidebar each time the tab opens; the state above survives closing it.
  mount(container) {
    addStyles();
    this.account = element("div", { className: "magi1-account" });
    this.account.dataset.magi1 = "account";
    this.list = element("div", { className: "magi1-list" });
    this.list.dataset.magi1 = "task-list";
    this.more = element("button", { className: "magi1-more", type: "button", textContent: "Load more" });
    this.more.addEventListener("click", () => this.loadPage());
    this.sentinel = element("div", {}, [this.more]);
    this.root = element("div", { className: "magi1-panel" }, [this.account, this.list]);
    this.root.dataset.magi1 = "panel";
    container.append(this.root);
    this.observer = new IntersectionObserver((entries) => {
      if (entries.some((e) => e.isIntersecting) && this.nextBefore !== null) this.loadPage();
    }, { root: this.list });
    this.rows.clear();
    this.nextBefore = null;
    this.renderRows();
    this.loadPage(true);
    this.loadAccount();
  }

  unmount() {
    this.observer?.disconnect();
    this.root?.remove();
    this.root = null;
  }

  // --- data ---
  async loadPage(first = false) {
    if (this.loading || (!first && this.nextBefore === null)) return;
    this.loading = true;
    try {
      const query = new URLSearchParams({ limit: PAGE_SIZE });
      if (!first) query.set("before", this.nextBefore);
      const page = await request(`/magi1/tasks?${query}`);
      for (const row of page.tasks) this.rows.set(row.key, row);
      this.nextBefore = page.next_before;
      this.renderRows();
    } catch (error) {
      this.showListError(error);
    } finally {
      this.loading = false;
    }
  }

  /** Fetch the rows named by events (one keyset query each), new tasks through the first page. */
  async refreshPending() {
    const ids = [...this.pendingIds];
    this.pendingIds.clear();
    // New tasks and claims (whose key changes when they get a task id) come with the first page.
    const unknown = ids.filter((id) => !this.rows.has(id) || id.startsWith("claim-"));
    try {
      if (unknown.length) {
        const page = await request(`/magi1/tasks?limit=${PAGE_SIZE}`);
        // Claims become tasks (their key changes): the fresh first page says which are left.
        for (const key of [...this.rows.keys()]) if (key.startsWith("claim-")) this.rows.delete(key);
        const fresh = page.tasks.filter((row) => !this.rows.has(row.key));
        this.rows = new Map([...fresh.map((row) => [row.key, row]), ...this.rows]);
        for (const row of page.tasks) this.rows.set(row.key, row);
        if (this.nextBefore === null && this.rows.size >= PAGE_SIZE) this.nextBefore = page.next_before;
      }
      for (const id of ids.filter((i) => !unknown.includes(i))) {
        const known = this.rows.get(id);
        if (!known) continue;
        // `before` is exclusive: just above this row's time gives this row first.
        const page = await request(`/magi1/tasks?limit=1&before=${known.submitted_at + 1e-6}`);
        const row = page.tasks[0];
        if (row?.key === id) this.rows.set(id, { ...row, has_nsfw_contents: row.has_nsfw_contents || known.has_nsfw_contents });
      }
      this.renderRows();
    } catch (error) {
      this.showListError(error);
    }
    this.loadAccount();
  }

  onTaskEvent(event) {
    const key = event.task_id || (event.row_id !== undefined && event.row_id !== null ? `claim-${event.row_id}` : null);
    if (!key) return;
    const row = this.rows.get(key);
    if (row) {
      // Shown at once; the full row (video, thumbnail) follows from the server.
      row.status = event.status;
      row.state = STATES[event.status] ?? event.status;
      if (event.error) row.error = event.error;
      if (event.has_nsfw_contents) row.has_nsfw_contents = true;
      this.renderRow(row);
    }
    if (!this.root) return; // closed: the rows are fetched fresh when it opens
    this.pendingIds.add(key);
    clearTimeout(this.refreshTimer);
    this.refreshTimer = setTimeout(() => this.refreshPending(), EVENT_DEBOUNCE_MS);
  }

  async loadAccount(refresh = false) {
    if (!this.root) return;
    try {
      this.renderAccount(await request(`/magi1/account${refresh ? "?refresh=1" : ""}`));
    } catch (error) {
      this.account.replaceChildren(element("div", { textContent: `Account: ${error.message}` }));
      this.account.dataset.state = "error";
    }
  }

  // --- rendering ---
  renderAccount(info) {
    const refresh = element("button", { type: "button", className: "magi1-more", title: "Check the balance now", ariaLabel: "Check the balance now" },
      [element("i", { className: "pi pi-refresh" })]);
    refresh.addEventListener("click", () => this.loadAccount(true));
    const known = info.balance !== null && info.balance !== undefined;
    const balance = element("span", { textContent: known ? money(info.balance) : "unavailable" });
    balance.dataset.magi1 = "balance";
    if (!known) balance.dataset.state = "error";
    const why = known ? null : element("div", { className: "magi1-muted", textContent: info.balance_error || "" });
    if (why) why.dataset.state = "error";
    const slots = info.slots ? `${info.running} / ${info.slots} slots` : `${info.running} (no limit set)`;
    const spend = info.price_per_task_usd !== null && info.price_per_task_usd !== undefined
      ? `Spent ≈ ${money(info.spent_today_usd)} today, ${money(info.spent_this_month_usd)} this month ` +
        `(at your ${money(info.price_per_task_usd)} per task)`
      : info.price_note;
    const checked = info.balance_checked_at ? `checked ${ago(info.balance_checked_at)}` : "";
    balance.title = checked;
    this.account.replaceChildren(...[
      element("div", { className: "magi1-line" }, [element("h3", { textContent: "MAGI-1 account" }), refresh]),
      element("div", { className: "magi1-line" }, [element("span", { textContent: "Balance" }), balance]),
      why,
      element("div", { className: "magi1-line" }, [
        element("span", { textContent: "Tasks today / this month" }),
        element("span", { textContent: `${info.tasks_today} / ${info.tasks_this_month}` }),
      ]),
      element("div", { className: "magi1-line" }, [
        element("span", { textContent: "Running" + (info.waiting ? ` (+${info.waiting} waiting)` : "") }),
        element("span", { textContent: slots }),
      ]),
      element("div", { className: "magi1-muted", textContent: spend, title: info.price_note }),
    ].filter(Boolean));
    this.account.dataset.state = "ok";
  }

  renderRows() {
    if (!this.root) return;
    const items = [...this.rows.values()].map((row) => this.rowElement(row));
    if (!items.length && !this.loading) {
      items.push(element("div", { className: "magi1-empty", textContent: "No MAGI-1 tasks yet. Queue a workflow with Magi1Submit: its tasks appear here as they run." }));
    }
    this.list.replaceChildren(...items, this.sentinel);
    this.more.hidden = this.nextBefore === null;
    this.observer.disconnect();
    if (this.nextBefore !== null) this.observer.observe(this.sentinel);
  }

  renderRow(row) {
    const old = this.list?.querySelector(`[data-key="${CSS.escape(row.key)}"]`);
    if (old) old.replaceWith(this.rowElement(row));
  }

  showListError(error) {
    if (!this.root) return;
    this.list.prepend(element("div", { className: "magi1-error", textContent: `Could not load the tasks: ${error.message}` }));
  }

  rowElement(row) {
    const thumb = row.thumbnail
      ? element("img", { className: "magi1-thumb", src: api.apiURL(row.thumbnail), loading: "lazy", alt: "first frame" })
      : element("div", { className: "magi1-thumb" });
    const badge = element("span", { className: "magi1-badge", textContent: STATE_LABELS[row.state] ?? row.status });
    badge.dataset.state = row.state;
    const badges = [badge];
    if (row.has_nsfw_contents) {
      const nsfw = element("span", { className: "magi1-badge", textContent: "NSFW flagged", title: "WaveSpeed's content check flagged this output; the video may be blanked." });
      nsfw.dataset.nsfw = "1";
      badges.push(nsfw);
    }
    if (row.collecting) badges.push(element("span", { className: "magi1-badge", textContent: "collecting…" }));
    const facts = [
      row.seed !== null && row.seed !== undefined ? `seed ${row.seed}` : null,
      row.resolution,
      ago(row.submitted_at),
      row.took_s !== null && row.took_s !== undefined ? `took ${duration(row.took_s)}` : null,
    ].filter(Boolean).join(" · ");
    const actions = element("div", { className: "magi1-actions" });
    const body = element("div", {}, [
      element("div", {}, badges),
      element("div", { className: "magi1-prompt", textContent: row.prompt || "(no prompt recorded)", title: row.prompt }),
      element("div", { className: "magi1-muted", textContent: facts }),
      row.error ? element("div", { className: "magi1-error", textContent: row.error }) : null,
      actions,
    ]);
    const item = element("div", { className: "magi1-task" }, [thumb, body]);
    item.dataset.key = row.key;
    if (row.task_id) item.dataset.taskId = row.task_id;
    item.dataset.state = row.state;

    const button = (icon, label, title, handler, action) => {
      const b = element("button", { type: "button", title, ariaLabel: title },
        [element("i", { className: `pi ${icon}` }), label ? ` ${label}` : null]);
      b.dataset.action = action;
      b.addEventListener("click", () => handler(b));
      actions.append(b);
      return b;
    };
    if (row.video) {
      button("pi-play", "Play", "Play the saved video here", () => this.togglePlayer(item, row), "play");
      button("pi-plus", "Add", "Add a MAGI-1 Load Video node for the saved file to the graph", () => addToGraph(row), "add");
    }
    if (row.can_collect) {
      button("pi-download", "Collect", "Collect now: wait for this task in the background and save its video",
        (b) => this.collect(row, b), "collect");
    }
    if (row.task_id) button("pi-copy", "", `Copy the task id ${row.task_id}`, () => copyText(row.task_id), "copy");
    return item;
  }

  togglePlayer(item, row) {
    const existing = item.querySelector("video");
    if (existing) {
      existing.remove();
      return;
    }
    const player = element("video", { className: "magi1-player", controls: true, autoplay: true, src: viewUrl(row.video) });
    item.append(player);
  }

  async collect(row, button) {
    button.disabled = true;
    try {
      const answer = await request(`/magi1/tasks/${encodeURIComponent(row.task_id)}/collect`, { method: "POST" });
      row.collecting = answer.collecting;
      row.can_collect = false;
      this.renderRow(row);
      toast("info", "MAGI-1", answer.saved ? `Task ${row.task_id} is already saved.` : `Collecting task ${row.task_id} in the background.`, 4000);
    } catch (error) {
      button.disabled = false;
      toast("error", "MAGI-1: could not collect", error.message);
    }
  }
}

async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    const area = element("textarea", { value: text });
    document.body.append(area);
    area.select();
    document.execCommand("copy");
    area.remove();
  }
  toast("info", "MAGI-1", `Copied task id ${text}`, 2500);
}

/** A Magi1LoadVideo node on the canvas, in the middle of the view, reading the saved file. */
function addToGraph(row) {
  const node = globalThis.LiteGraph.createNode(LOAD_VIDEO_NODE_TYPE);
  if (!node) {
    toast("error", "MAGI-1", "The Magi1LoadVideo node is not available in this ComfyUI.");
    return null;
  }
  const widget = node.widgets?.find((w) => w.name === "video_url");
  if (widget) {
    widget.value = row.saved_path;
    widget.callback?.(row.saved_path);
  }
  const canvas = app.canvas;
  const [width, height] = [canvas.canvas.width / (window.devicePixelRatio || 1), canvas.canvas.height / (window.devicePixelRatio || 1)];
  const scale = canvas.ds.scale;
  node.pos = [width / 2 / scale - canvas.ds.offset[0] - node.size[0] / 2, height / 2 / scale - canvas.ds.offset[1] - node.size[1] / 2];
  app.graph.add(node);
  app.graph.setDirtyCanvas(true, true);
  toast("success", "MAGI-1", `Added a Load Video node for task ${row.task_id}.`, 3000);
  return node;
}

// --- settings (stored by the pack's route, like the key) -----------------------------------------

let settingsCache = null;
function loadSettings(refresh = false) {
  if (!settingsCache || refresh) settingsCache = request("/magi1/settings");
  return settingsCache;
}

function renderNumberSetting(spec) {
  return () => {
    addStyles();
    const input = element("input", { type: "number", step: spec.step, min: spec.min, placeholder: spec.placeholder });
    input.dataset.magi1 = `setting-${spec.key}`;
    const status = element("div", { className: "magi1-setting-status", role: "status", textContent: "Checking…" });
    const show = (answer) => {
      const value = answer.values[spec.key];
      const source = answer.sources[spec.key];
      input.value = value ?? "";
      input.disabled = source === "environment";
      status.dataset.state = "ok";
      status.textContent = source === "environment"
        ? "Set by the server's environment variable (it wins over this setting)."
        : source === "settings" ? "Saved on the ComfyUI server." : "Not set: the default applies.";
    };
    const save = async () => {
      const raw = input.value.trim();
      try {
        show(await request("/magi1/settings", { method: "POST", body: { [spec.key]: raw === "" ? null : Number(raw) } }));
        settingsCache = null;
      } catch (error) {
        status.dataset.state = "error";
        status.textContent = error.message;
      }
    };
    input.addEventListener("change", save);
    loadSettings().then(show, (error) => {
      status.dataset.state = "error";
      status.textContent = error.message;
    });
    return element("div", { className: "magi1-setting" }, [input, status]);
  };
}

// --- the spend guard's refusal, where the user looks ---------------------------------------------

function onExecutionError(event) {
  const detail = event.detail ?? {};
  const text = `${detail.exception_type ?? ""} ${detail.exception_message ?? ""}`;
  if (!String(detail.node_type ?? "").startsWith("Magi1")) return;
  if (/SpendLimit|spend.?guard|max_tasks_per_run/i.test(text)) {
    toast("error", "MAGI-1 spend guard: nothing was submitted", detail.exception_message, 20000);
  }
}

// --- registration ---------------------------------------------------------------------------------

const panel = new Magi1Panel();

app.registerExtension({
  name: EXTENSION_NAME,

  settings: SETTINGS.map((spec) => ({
    id: spec.id,
    category: [SETTINGS_CATEGORY, spec.group, spec.name],
    name: spec.name,
    tooltip: spec.tooltip,
    type: renderNumberSetting(spec),
    defaultValue: "",
  })),

  async setup() {
    api.addEventListener("execution_error", onExecutionError);
    const manager = app.extensionManager;
    if (!manager?.registerSidebarTab) {
      console.warn("[MAGI-1] this ComfyUI front end has no sidebar tabs: the MAGI-1 panel is not shown");
      return;
    }
    manager.registerSidebarTab({
      id: TAB_ID,
      icon: "pi pi-video",
      title: "MAGI-1",
      tooltip: "MAGI-1 tasks, videos and account",
      label: "MAGI-1",
      type: "custom",
      render: (container) => panel.mount(container),
      destroy: () => panel.unmount(),
    });
  },

  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (VIDEO_PREVIEW_NODE_TYPES.has(nodeData.name)) {
      // Saved workflows restore their own size after this: only new nodes are widened.
      chainCallback(nodeType.prototype, "onNodeCreated", function () {
        if (this.size[0] < VIDEO_NODE_MIN_WIDTH) this.setSize([VIDEO_NODE_MIN_WIDTH, this.size[1]]);
      });
    }
  },
});

// For the browser tests and other extensions: the panel's state and its add-to-graph action.
window.magi1Panel = { panel, addToGraph };
