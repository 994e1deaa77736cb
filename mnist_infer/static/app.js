// The page: draw (or drop a file), POST it to /api/predict, show the forward pass step by step.

import * as api from "./api.js";
import { buildFlow } from "./flow.js";
import { showInfo } from "./info.js";
import { createPad } from "./pad.js";
import { createUnitPanel } from "./unit.js";
import { createVerdict } from "./verdict.js";

const THROTTLE_MS = 120; // at most one request this often while a stroke is drawn
const WAITING_SHOWN_MS = 300; // a request not answered by then shows the waiting sign

const $ = (id) => document.getElementById(id);
const canvas = $("canvas");
const verdict = createVerdict();

const state = {
  info: null, // /api/info of the weights served
  flow: null, // the steps on the page
  ink: false, // something on the pad worth predicting
  dirty: false, // changed since the last request
  busy: null, // the request in flight: { cancel, waiting }
  announce: false, // the next answer for a finished stroke is said to screen readers
  timer: 0,
  sent: 0, // time of the last request
  file: null, // a chosen file: sent as it is, until the pad is drawn on
};

const pad = createPad(canvas, (final) => {
  state.file = null;
  changed(final);
});
const panel = createUnitPanel(() => state.flow);

// --- when to ask -------------------------------------------------------------------------

// data-pending on <body> is "1" until the answer for what is on the pad has been shown.
function mark() {
  document.body.dataset.pending = state.busy || state.dirty ? "1" : "0";
}

function changed(final) {
  state.ink = true;
  state.dirty = true;
  if (final) {
    state.announce = true;
    supersede(); // the finished drawing is asked about at once
  }
  mark();
  schedule(final);
}

// Give up the request in flight: its answer would be for an unfinished drawing.
function supersede() {
  if (!state.busy) return;
  clearTimeout(state.busy.waiting);
  state.busy.cancel.abort();
  state.busy = null;
  verdict.waiting(false);
}

function schedule(now) {
  clearTimeout(state.timer);
  if (state.busy) return; // sent again when the answer arrives
  const wait = now ? 0 : Math.max(0, state.sent + THROTTLE_MS - performance.now());
  state.timer = setTimeout(send, wait);
}

async function send() {
  if (!state.dirty || !state.ink || state.busy) return;
  state.dirty = false;
  state.sent = performance.now();
  const image = state.file || pad.encode();
  const name = state.file ? state.file.name : "Your drawing";
  const mine = { cancel: new AbortController(), waiting: setTimeout(() => verdict.waiting(true), WAITING_SHOWN_MS) };
  state.busy = mine;
  mark();
  try {
    const answer = await api.predict(image, mine.cancel.signal);
    if (state.busy !== mine) return; // superseded
    if (answer.sha256 !== state.info?.sha256) await loadInfo(); // other weights are served now
    if (state.busy === mine && state.ink) show(answer);
  } catch (err) {
    if (state.busy === mine && state.ink) failed(err, name);
  } finally {
    if (state.busy === mine) {
      clearTimeout(mine.waiting);
      verdict.waiting(false);
      state.busy = null;
      if (state.dirty) schedule(!pad.drawing);
      mark();
    }
  }
}

// --- what to show ------------------------------------------------------------------------

function settledAnswer() {
  // An answer for what is on the pad now, after the stroke (or file) that asked for it.
  return state.announce && !pad.drawing && !state.dirty;
}

function show(answer) {
  state.flow.show(answer);
  panel.show(answer);
  verdict.show(answer);
  document.body.dataset.stale = "0";
  if (!state.file) verdict.status("Keep drawing, or Clear to start again.");
  if (settledAnswer()) {
    state.announce = false;
    verdict.announce(verdict.spoken(answer));
  }
}

function showEmpty() {
  state.flow?.clear();
  panel.show(null);
  verdict.clear();
}

function failed(err, name) {
  let text;
  if (err.kind === "refused") {
    showEmpty(); // the image cannot be read: no answer applies to it
    text = err.message.replace(/^request body: /, `${name}: `);
  } else {
    verdict.stale(); // an old answer stays, marked as old
    text = `${err.message[0].toUpperCase()}${err.message.slice(1)}. Is the server still running? The next stroke asks again.`;
  }
  verdict.status(text, true);
  if (settledAnswer()) {
    state.announce = false;
    verdict.announce(text);
  }
}

// --- the weights ------------------------------------------------------------------------------

async function loadInfo() {
  const info = await api.getInfo();
  if (state.info && info.sha256 === state.info.sha256) return;
  state.info = info;
  showInfo($("info"), info);
  panel.reset();
  state.flow = buildFlow($("steps"), $("formula"), info, (L, j) => panel.open(L, j));
}

// --- controls ------------------------------------------------------------------------------------

function clearPad() {
  supersede();
  pad.clear();
  state.ink = false;
  state.dirty = false;
  state.file = null;
  state.announce = false;
  clearTimeout(state.timer);
  showEmpty();
  mark();
}

async function useFile(file) {
  if (!file) return;
  clearPad();
  state.file = file;
  state.ink = true;
  state.dirty = true;
  mark();
  verdict.status(`${file.name}: sent as it is; drawing on it sends the picture on the pad.`);
  await pad.showImage(file);
  if (state.file === file) changed(true);
}

function wire() {
  $("clear").addEventListener("click", () => {
    clearPad();
    verdict.status("Cleared. Draw a digit.");
  });
  document.addEventListener("keydown", (e) => {
    if (e.key !== "Escape") return;
    const inFlow = document.activeElement?.closest?.("#steps");
    if (panel.isOpen && inFlow) panel.close();
    else $("clear").click();
  });
  const pen = $("pen");
  const showPen = () => {
    pad.width = Number(pen.value);
    $("pen-value").textContent = `${pen.value} px`;
  };
  pen.addEventListener("input", showPen);
  showPen();
  $("file").addEventListener("change", (e) => {
    useFile(e.target.files[0]);
    e.target.value = ""; // choosing the same file again is a change too
  });
  const box = $("pad");
  box.addEventListener("dragover", (e) => {
    e.preventDefault();
    box.classList.add("dragging");
  });
  box.addEventListener("dragleave", () => box.classList.remove("dragging"));
  box.addEventListener("drop", (e) => {
    e.preventDefault();
    box.classList.remove("dragging");
    useFile(e.dataTransfer.files[0]);
  });
}

async function start() {
  wire();
  clearPad();
  try {
    await loadInfo();
    showEmpty();
  } catch (err) {
    verdict.status(`Cannot reach the server (${err.message}).`, true);
  }
  document.body.dataset.ready = "1";
}

start();
