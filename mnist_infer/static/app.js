// The draw-a-digit page: draw (or drop a file), POST it to /api/predict, show the forward pass.
"use strict";

const THROTTLE_MS = 120; // at most one prediction request this often while drawing
const CELL = 12; // px per unit in the heat maps (before CSS scaling)
// The plasma colour map, dark (0) to bright (1).
const RAMP = [[13, 8, 135], [106, 0, 168], [177, 42, 144], [225, 100, 98], [252, 166, 54], [240, 249, 33]];

const $ = (id) => document.getElementById(id);
const pad = $("pad");
const canvas = $("canvas");
const ctx = canvas.getContext("2d");
const input = $("input");
const status = $("status");

const state = {
  drawing: false,
  last: null,
  ink: false, // something on the pad worth predicting
  dirty: false, // changed since the last request
  busy: false, // a request is in flight
  timer: 0,
  sent: 0, // time of the last request
  file: null, // a chosen file: sent as it is, until the pad is drawn on
  maps: [], // hidden layer canvases
};

// --- drawing -------------------------------------------------------------------------

function clearPad() {
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  ctx.lineCap = "round";
  ctx.lineJoin = "round";
  ctx.strokeStyle = "#111";
  ctx.fillStyle = "#111";
  // About MNIST's stroke: a digit drawn most of the box tall gets 2-3 px of its 20.
  ctx.lineWidth = canvas.width / 14;
  state.ink = false;
  state.dirty = false;
  state.file = null;
  clearTimeout(state.timer);
  showEmpty();
  mark();
}

function point(e) {
  const r = canvas.getBoundingClientRect();
  return [(e.clientX - r.left) * (canvas.width / r.width), (e.clientY - r.top) * (canvas.height / r.height)];
}

function stroke(to) {
  const [x0, y0] = state.last;
  const [x1, y1] = to;
  ctx.beginPath();
  ctx.moveTo(x0, y0);
  ctx.lineTo(x1, y1);
  ctx.stroke();
  state.last = to;
}

canvas.addEventListener("pointerdown", (e) => {
  if (e.pointerType === "mouse" && e.button !== 0) return;
  e.preventDefault();
  try {
    canvas.setPointerCapture(e.pointerId); // keep the stroke when it leaves the box
  } catch {
    // a pointer the browser no longer tracks: draw without capture
  }
  state.drawing = true;
  state.file = null;
  state.last = point(e);
  ctx.beginPath();
  ctx.arc(state.last[0], state.last[1], ctx.lineWidth / 2, 0, 2 * Math.PI);
  ctx.fill();
  changed();
});

canvas.addEventListener("pointermove", (e) => {
  if (!state.drawing) return;
  const events = e.getCoalescedEvents ? e.getCoalescedEvents() : [e];
  for (const ev of events.length ? events : [e]) stroke(point(ev));
  changed();
});

for (const type of ["pointerup", "pointercancel", "lostpointercapture"]) {
  canvas.addEventListener(type, () => {
    if (!state.drawing) return;
    state.drawing = false;
    changed(true);
  });
}

$("clear").addEventListener("click", () => {
  clearPad();
  status.classList.remove("error");
  status.textContent = "Cleared. Draw a digit.";
});

document.addEventListener("keydown", (e) => {
  if (e.key === "Escape") {
    $("clear").click();
  }
});

// --- files ---------------------------------------------------------------------------

async function useFile(file) {
  if (!file) return;
  clearPad();
  state.file = file;
  state.ink = true;
  state.dirty = true;
  mark();
  status.classList.remove("error");
  status.textContent = `${file.name}: sent as it is; drawing on it sends the picture on the pad.`;
  try {
    const bitmap = await createImageBitmap(file);
    const s = Math.min(canvas.width / bitmap.width, canvas.height / bitmap.height);
    const w = bitmap.width * s;
    const h = bitmap.height * s;
    ctx.drawImage(bitmap, (canvas.width - w) / 2, (canvas.height - h) / 2, w, h);
  } catch {
    // The browser cannot show it (TIFF, say); the server may still read it.
  }
  changed(true);
}

$("file").addEventListener("change", (e) => {
  useFile(e.target.files[0]);
  e.target.value = ""; // choosing the same file again is a change too
});

pad.addEventListener("dragover", (e) => {
  e.preventDefault();
  pad.classList.add("dragging");
});
pad.addEventListener("dragleave", () => pad.classList.remove("dragging"));
pad.addEventListener("drop", (e) => {
  e.preventDefault();
  pad.classList.remove("dragging");
  useFile(e.dataTransfer.files[0]);
});

// --- prediction ----------------------------------------------------------------------

// data-pending on <body> is "1" until the answer for what is on the pad has been shown.
function mark() {
  document.body.dataset.pending = state.busy || state.dirty ? "1" : "0";
}

function changed(now = false) {
  state.ink = true;
  state.dirty = true;
  mark();
  clearTimeout(state.timer);
  if (state.busy) return; // sent again when the answer arrives
  const wait = now ? 0 : Math.max(0, state.sent + THROTTLE_MS - performance.now());
  state.timer = setTimeout(send, wait);
}

function body() {
  if (state.file) return Promise.resolve(state.file);
  return new Promise((resolve) => canvas.toBlob(resolve, "image/png"));
}

async function send() {
  if (!state.dirty || !state.ink || state.busy) return;
  state.dirty = false;
  state.busy = true;
  state.sent = performance.now();
  try {
    const blob = await body();
    const name = state.file ? state.file.name : "Your drawing";
    const res = await fetch("/api/predict", { method: "POST", body: blob });
    const data = await res.json();
    if (!state.ink) return; // cleared meanwhile
    if (res.ok) {
      show(data);
      if (!state.file) status.textContent = "Keep drawing, or Clear to start again.";
      status.classList.remove("error");
    } else {
      showEmpty();
      status.textContent = data.error.replace(/^request body: /, `${name}: `);
      status.classList.add("error");
    }
  } catch (err) {
    status.textContent = `No answer from the server (${err.message}). Is it still running?`;
    status.classList.add("error");
  } finally {
    state.busy = false;
    if (state.dirty) changed();
    mark();
  }
}

// --- showing the forward pass ----------------------------------------------------------

function colour(v) {
  const t = Math.min(Math.max(v, 0), 1) * (RAMP.length - 1);
  const i = Math.min(Math.floor(t), RAMP.length - 2);
  const f = t - i;
  return RAMP[i].map((c, k) => Math.round(c + (RAMP[i + 1][k] - c) * f));
}

function grid(n) {
  const cols = n % 10 === 0 && n <= 200 ? 10 : Math.ceil(Math.sqrt(n));
  return [cols, Math.ceil(n / cols)];
}

function buildBars() {
  const ol = $("bars");
  for (let d = 0; d < 10; d++) {
    const li = document.createElement("li");
    li.innerHTML = `<span class="d">${d}</span><span class="track"><span class="fill"></span></span><span class="p">–</span>`;
    ol.append(li);
  }
}

function buildMaps(sizes) {
  const box = $("maps");
  box.replaceChildren();
  state.maps = sizes.slice(1, -1).map((n, i) => {
    const [cols, rows] = grid(n);
    const fig = document.createElement("figure");
    const cap = document.createElement("figcaption");
    cap.textContent = `Hidden layer ${i + 1}: ${n} sigmoid units`;
    const c = document.createElement("canvas");
    c.width = cols * CELL;
    c.height = rows * CELL;
    c.setAttribute("role", "img");
    c.setAttribute("aria-label", `Activations of hidden layer ${i + 1}`);
    c.addEventListener("pointermove", (e) => {
      const r = c.getBoundingClientRect();
      const k = Math.floor(((e.clientY - r.top) / r.height) * rows) * cols + Math.floor(((e.clientX - r.left) / r.width) * cols);
      c.title = c.values && k < n ? `unit ${k + 1}: ${c.values[k].toFixed(3)}` : "";
    });
    fig.append(cap, c);
    box.append(fig);
    drawMap(c, cols, new Array(n).fill(null));
    return { canvas: c, cols, n };
  });
}

function drawMap(c, cols, values) {
  const g = c.getContext("2d");
  g.fillStyle = "#e9ecf2";
  g.fillRect(0, 0, c.width, c.height);
  values.forEach((v, k) => {
    const [r, gr, b] = v === null ? [40, 44, 60] : colour(v);
    g.fillStyle = `rgb(${r},${gr},${b})`;
    g.fillRect((k % cols) * CELL + 1, Math.floor(k / cols) * CELL + 1, CELL - 2, CELL - 2);
  });
  c.values = values[0] === null ? null : values;
}

function show(data) {
  showVerdict(data);
  const img = input.getContext("2d").createImageData(28, 28);
  data.input.flat().forEach((v, i) => {
    img.data.set([v, v, v, 255], i * 4);
  });
  input.getContext("2d").putImageData(img, 0, 0);
  [...$("bars").children].forEach((li, d) => {
    const p = data.probabilities[d];
    li.classList.toggle("win", d === guessOf(data));
    li.querySelector(".fill").style.width = `${(p * 100).toFixed(1)}%`;
    li.querySelector(".p").textContent = `${(p * 100).toFixed(1)}%`;
    li.setAttribute("aria-label", `${d}: ${(p * 100).toFixed(1)}%`);
  });
  state.maps.forEach((m, i) => drawMap(m.canvas, m.cols, data.hidden[i]));
}

// The answer: a digit, or (is_digit false, as `predict` says "not a digit") a message with
// the network's best guess in small print.
function guessOf(data) {
  return data.is_digit === false ? data.guess : data.digit;
}

function showVerdict(data) {
  const notDigit = data.is_digit === false;
  const percent = `${(data.confidence * 100).toFixed(1)}%`;
  $("digit").textContent = notDigit ? "That doesn't look like a digit" : String(data.digit);
  $("confidence").textContent = notDigit ? `Looks most like ${data.guess} (${percent})` : `${percent} sure`;
  $("digit").classList.toggle("not-digit", notDigit);
  $("confidence").classList.toggle("not-digit", notDigit);
}

function showEmpty() {
  $("digit").textContent = "–";
  $("confidence").innerHTML = "&nbsp;";
  $("digit").classList.remove("not-digit");
  $("confidence").classList.remove("not-digit");
  const g = input.getContext("2d");
  g.fillStyle = "#000";
  g.fillRect(0, 0, 28, 28);
  [...$("bars").children].forEach((li, d) => {
    li.classList.remove("win");
    li.querySelector(".fill").style.width = "0";
    li.querySelector(".p").textContent = "–";
    li.setAttribute("aria-label", `${d}: no prediction yet`);
  });
  state.maps.forEach((m) => drawMap(m.canvas, m.cols, new Array(m.n).fill(null)));
}

// --- the weights' facts ----------------------------------------------------------------

function showInfo(info) {
  const dl = $("info");
  const name = info.weights.split(/[\\/]/).pop();
  const rows = [
    ["Layers", info.sizes.join(" → ")],
    ["Parameters", info.parameters.toLocaleString("en")],
    ["Dtype", info.dtype],
    ["Weights", name, info.weights],
    ["SHA-256", info.sha256.slice(0, 16) + "…", info.sha256],
  ];
  const acc = info.metadata && info.metadata.test_accuracy;
  if (typeof acc === "number") rows.push(["Test accuracy", `${(acc * 100).toFixed(2)}%`]);
  const rule = info.not_a_digit;
  if (rule) {
    const source = rule.source === "weights" ? "" : " (default)";
    rows.push(["Not a digit", `${rule.score} < ${rule.threshold}${source}`]);
  }
  dl.replaceChildren(
    ...rows.map(([k, v, full]) => {
      const div = document.createElement("div");
      const dt = document.createElement("dt");
      const dd = document.createElement("dd");
      dt.textContent = k;
      if (full) {
        const code = document.createElement("code");
        code.textContent = v;
        code.title = full;
        dd.append(code);
      } else {
        dd.textContent = v;
      }
      div.append(dt, dd);
      return div;
    }),
  );
}

async function start() {
  buildBars();
  clearPad();
  try {
    const res = await fetch("/api/info");
    const info = await res.json();
    showInfo(info);
    buildMaps(info.sizes);
  } catch (err) {
    status.textContent = `Cannot reach the server (${err.message}).`;
    status.classList.add("error");
  }
  document.body.dataset.ready = "1";
}

start();
