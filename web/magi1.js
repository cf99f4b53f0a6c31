// MAGI-1 (WaveSpeedAI) in the ComfyUI front end.
//
// What ComfyUI's own front end already does for these nodes, and is left to it:
//   - the status text Magi1Poll sends with send_progress_text (a read-only text preview on the node),
//   - the <video> preview of the MP4 a node reports as {"images": [...], "animated": [true]}.
// What this file adds:
//   - the "WaveSpeed MAGI-1 › API key" setting: a masked field that sends the key to the pack's
//     server route and keeps nothing in the browser, the workflow or ComfyUI's settings file,
//   - a note on the node, with a link to the file, when this browser cannot play the saved video,
//   - "fixed" as the starting seed mode of new Magi1Submit nodes: every new seed is a new, billed task,
//   - a width for new Magi1Poll nodes that fits their status line.
// Hooks are chained (chainCallback), never overwritten, so other extensions keep working.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";
import { chainCallback } from "./magi1_util.js";

const EXTENSION_NAME = "WaveSpeed.MAGI1";
const KEY_ROUTE = "/magi1/api_key";
const KEY_SETTING_ID = "WaveSpeedMAGI1.ApiKey";
const SUBMIT_NODE_TYPE = "Magi1Submit";
const POLL_NODE_TYPE = "Magi1Poll";
const VIDEO_NODE_TYPES = new Set([POLL_NODE_TYPE, "Magi1LoadVideo"]);
const NOTE_WIDGET_NAME = "magi1_preview_note";
const POLL_NODE_MIN_WIDTH = 340; // one status line ("processing · 12 s · ~40 s left") without wrapping
const PLAYABILITY_TIMEOUT_MS = 15000;
const VIDEO_EXTENSIONS = /\.(mp4|m4v|mov|webm)$/i;

function element(tag, properties = {}, children = []) {
  const node = Object.assign(document.createElement(tag), properties);
  node.append(...children);
  return node;
}

function addStyles() {
  if (document.getElementById("magi1-styles")) return;
  const css = `
    .magi1-key { display: flex; flex-direction: column; gap: 6px; width: 22rem; max-width: 100%; }
    .magi1-key-row { display: flex; gap: 6px; }
    .magi1-key input {
      flex: 1; min-width: 0; padding: 6px 8px; border-radius: 6px; font: inherit;
      border: 1px solid var(--border-color, #555); background: var(--comfy-input-bg, #222);
      color: var(--input-text, #ddd);
    }
    .magi1-key button {
      padding: 6px 10px; border-radius: 6px; font: inherit; cursor: pointer;
      border: 1px solid var(--border-color, #555); background: var(--comfy-menu-bg, #333);
      color: var(--input-text, #ddd);
    }
    .magi1-key button:disabled { opacity: 0.5; cursor: default; }
    .magi1-key-status { font-size: 0.85em; color: var(--descrip-text, #aaa); line-height: 1.35; }
    .magi1-key-status[data-state="error"] { color: var(--error-text, #f66); }
    .magi1-note {
      font-size: 12px; line-height: 1.4; padding: 6px 10px; border-radius: 6px;
      color: var(--descrip-text, #bbb); background: var(--comfy-input-bg, #222); overflow-wrap: anywhere;
    }
    .magi1-note a { color: var(--p-primary-color, #6af); }
  `;
  document.head.append(element("style", { id: "magi1-styles", textContent: css }));
}

// --- the API key setting ------------------------------------------------------------------------

async function keyRequest(method, body) {
  // The route answers only requests carrying this header: a cross-site page cannot set it.
  const init = { method, cache: "no-store", headers: { "X-Magi1-Request": "1" } };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await api.fetchApi(KEY_ROUTE, init);
  let answer = {};
  try {
    answer = await response.json();
  } catch {
    // not JSON: described by the status below
  }
  if (!response.ok) {
    throw new Error(answer.error || `the MAGI-1 key route answered HTTP ${response.status}`);
  }
  return answer;
}

/** A sentence for GET /magi1/api_key's answer: never the key, at most its last 4 characters. */
function describeKey(status) {
  const tail = status.last4 ? ` (…${status.last4})` : "";
  if (!status.set) {
    return "No key set. Paste your WaveSpeed API key and press Enter, or set WAVESPEED_API_KEY " +
      "where ComfyUI runs.";
  }
  if (status.source === "environment") {
    return `Using WAVESPEED_API_KEY from the server's environment${tail}.` +
      (status.stored ? " The key stored here is used only when that variable is unset." : "");
  }
  return `A key is set${tail}, stored on the ComfyUI server (not in this browser or the workflow).`;
}

/**
 * The setting's form element. It never calls the settings setter: the key goes only to the
 * pack's route, so ComfyUI never writes it to comfy.settings.json.
 */
function renderKeySetting() {
  addStyles();
  const input = element("input", {
    type: "password",
    autocomplete: "off",
    spellcheck: false,
    placeholder: "Paste key, press Enter",
    ariaLabel: "WaveSpeed API key",
  });
  input.dataset.magi1 = "key-input";
  // Kept out of password managers: the key belongs to the server.
  input.setAttribute("data-lpignore", "true");
  input.setAttribute("data-1p-ignore", "true");
  const save = element("button", { type: "button", textContent: "Save" });
  const remove = element("button", { type: "button", textContent: "Remove", title: "Delete the stored key" });
  remove.dataset.magi1 = "key-remove";
  const status = element("div", { className: "magi1-key-status", role: "status", textContent: "Checking…" });
  status.dataset.magi1 = "key-status";

  const show = (answer) => {
    status.textContent = describeKey(answer);
    status.dataset.state = answer.set ? answer.source : "unset";
    remove.disabled = !answer.stored;
  };
  const fail = (error) => {
    status.textContent = `Could not update the key: ${error.message}`;
    status.dataset.state = "error";
  };
  const run = async (work) => {
    input.disabled = save.disabled = remove.disabled = true;
    try {
      show(await work());
    } catch (error) {
      fail(error);
    } finally {
      input.disabled = save.disabled = false;
    }
  };

  const submit = () => {
    const key = input.value.trim();
    input.value = ""; // cleared at once: the key stays in no field, no setting, no storage
    if (!key) return;
    run(() => keyRequest("POST", { key }));
  };
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter") {
      event.preventDefault();
      submit();
    }
  });
  input.addEventListener("change", submit);
  save.addEventListener("click", submit);
  remove.addEventListener("click", () => run(() => keyRequest("DELETE")));
  run(() => keyRequest("GET"));

  return element("div", { className: "magi1-key" }, [
    element("div", { className: "magi1-key-row" }, [input, save, remove]),
    status,
  ]);
}

// --- video previews -------------------------------------------------------------------------------

function viewUrl({ filename, subfolder = "", type = "output" }) {
  const query = new URLSearchParams({ filename, subfolder, type });
  return api.apiURL(`/view?${query}`);
}

// MediaError codes, in words a user can act on.
const MEDIA_ERRORS = {
  1: "loading it was aborted",
  2: "it could not be downloaded from ComfyUI",
  3: "this browser could not decode it",
  4: "this browser cannot play its video format",
};

/** Resolves to null when this browser can decode the video, else to a reason. */
function whyUnplayable(url) {
  return new Promise((resolve) => {
    const probe = element("video", { muted: true, preload: "metadata" });
    const finish = (reason) => {
      clearTimeout(timer);
      probe.removeAttribute("src");
      probe.load();
      resolve(reason);
    };
    const timer = setTimeout(() => finish(null), PLAYABILITY_TIMEOUT_MS); // slow, not broken
    probe.addEventListener("loadedmetadata", () =>
      finish(probe.videoWidth > 0 ? null : "it has no picture this browser can show"));
    probe.addEventListener("error", () =>
      finish(MEDIA_ERRORS[probe.error?.code] ?? "this browser cannot play it"));
    probe.src = url;
  });
}

/** Make the node tall (and wide) enough for its widgets after one was added or removed. */
function fitNode(node) {
  const needed = node.computeSize();
  node.setSize([Math.max(node.size[0], needed[0]), Math.max(node.size[1], needed[1])]);
  node.setDirtyCanvas?.(true, true);
}

function removeNote(node) {
  const index = node.widgets?.findIndex((widget) => widget.name === NOTE_WIDGET_NAME) ?? -1;
  if (index < 0) return;
  node.widgets[index].onRemove?.();
  node.widgets.splice(index, 1);
  node.setDirtyCanvas?.(true, true);
}

function showNote(node, video, reason) {
  removeNote(node);
  addStyles();
  const where = [video.type, video.subfolder, video.filename].filter(Boolean).join("/");
  const note = element("div", { className: "magi1-note" }, [
    `No preview here: ${reason}. The video is saved as ${where}. `,
    element("a", { href: viewUrl(video), target: "_blank", rel: "noopener", textContent: "Open it" }),
  ]);
  note.dataset.magi1 = "preview-note";
  const widget = node.addDOMWidget(NOTE_WIDGET_NAME, "magi1-note", note, { hideOnZoom: false });
  widget.serialize = false;
  widget.computeLayoutSize = () => ({ minHeight: 64, minWidth: 220 });
  fitNode(node);
}

async function checkPreview(node, output) {
  const video = output?.images?.find((image) => VIDEO_EXTENSIONS.test(image.filename ?? ""));
  if (!video) return;
  const reason = await whyUnplayable(viewUrl(video));
  if (reason) showNote(node, video, reason);
  else removeNote(node);
}

// --- registration ---------------------------------------------------------------------------------

app.registerExtension({
  name: EXTENSION_NAME,

  settings: [
    {
      id: KEY_SETTING_ID,
      category: ["WaveSpeed MAGI-1", "API key", "Key"],
      name: "WaveSpeed API key",
      tooltip:
        "Sent once to this ComfyUI server, which keeps it in a private file of its user directory. " +
        "It is never stored in the browser, in workflows or in ComfyUI's settings. " +
        "WAVESPEED_API_KEY in the server's environment takes precedence.",
      type: renderKeySetting,
      defaultValue: "",
    },
  ],

  async beforeRegisterNodeDef(nodeType, nodeData) {
    // Saved workflows restore their own widget values and size after onNodeCreated: only new
    // nodes get these starting values.
    if (nodeData.name === SUBMIT_NODE_TYPE) {
      chainCallback(nodeType.prototype, "onNodeCreated", function () {
        const seed = this.widgets?.find((widget) => widget.name === "seed");
        const mode = seed?.linkedWidgets?.find((widget) => widget.options?.values?.includes?.("fixed"));
        if (mode) mode.value = "fixed";
      });
    }
    if (nodeData.name === POLL_NODE_TYPE) {
      chainCallback(nodeType.prototype, "onNodeCreated", function () {
        if (this.size[0] < POLL_NODE_MIN_WIDTH) this.setSize([POLL_NODE_MIN_WIDTH, this.size[1]]);
      });
    }
    if (VIDEO_NODE_TYPES.has(nodeData.name)) {
      chainCallback(nodeType.prototype, "onExecuted", function (output) {
        checkPreview(this, output);
      });
    }
  },
});
