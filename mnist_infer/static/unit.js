// The unit panel: what one unit computes, with its weights, and its values for your digit.

import { getUnit } from "./api.js";
import { css, diverging, extent, gradient, paint28, paintDigit } from "./colours.js";
import { el } from "./flow.js";

const INCOMING_ROWS = 8; // strongest incoming weights listed for a deeper unit
const OUTGOING_SHOWN = 6; // strongest outgoing weights listed for a hidden unit

const num = (v, places = 2) => (v < 0 ? "−" : "+") + Math.abs(v).toFixed(places);
const plain = (v, places = 3) => v.toFixed(places).replace("-", "−");

function unitName(L, j, n) {
  return L === n ? `Output unit ${j} (digit ${j})` : `Hidden layer ${L}, unit ${j}`;
}

function chip(L, j, text, open) {
  const b = el("button", { type: "button", class: "chip" }, text);
  b.addEventListener("click", () => open(L, j, { fromPanel: true }));
  return b;
}

function map28(label, cls = "") {
  const canvas = el("canvas", { width: "28", height: "28", role: "img", "aria-label": label });
  return [el("figure", { class: `map ${cls}` }, canvas, el("figcaption", {}, label)), canvas];
}

function legend(max) {
  const bar = el("span", { class: "ramp" });
  bar.style.background = gradient("diverging");
  return el(
    "p",
    { class: "legend", "aria-hidden": "true" },
    `${plain(-max, 2)} or less`,
    bar,
    `${num(max)} or more (white: 0)`,
  );
}

// --- the parts of the panel -------------------------------------------------------------------

/** What the unit computes: a = (inputs · weights) + bias, then z, with the live numbers. */
function sumPart(ctx) {
  const { L, j, n, u } = ctx;
  const p = el("p", { class: "sum" });
  const below = L === 1 ? "x" : `z${L - 1}`;
  const out = L === n ? "y" : `z${L}`;
  const f = L === n ? "softmax" : "sigmoid";
  const update = (answer, inputs) => {
    if (!answer) {
      p.textContent = `bias b${L}[${j}] = ${plain(u.bias)}. Draw a digit to see a${L}[${j}] and ${out}[${j}].`;
      return;
    }
    const sum = inputs.reduce((s, v, k) => s + v * u.incoming[k], 0);
    const a = answer.pre_activations[L - 1][j];
    const z = L === n ? answer.probabilities[j] : answer.hidden[L - 1][j];
    p.textContent =
      `a${L}[${j}] = ${below} · W${L}[:, ${j}] + b${L}[${j}] = ${plain(sum, 2)} ${u.bias < 0 ? "−" : "+"} ` +
      `${Math.abs(u.bias).toFixed(2)} = ${plain(a, 2)}, then ${f}: ${out}[${j}] = ${plain(z)}`;
  };
  return [p, update];
}

/** Layer 1: its 784 weights as a picture, beside your input and their product. */
function pixelsPart(ctx) {
  const w = ctx.u.incoming;
  const max = extent(w);
  const [wFig, wCanvas] = map28(`Its 784 weights W1[:, ${ctx.j}]: red raises a1, blue lowers it`);
  const [xFig, xCanvas] = map28("Your input x", "digit");
  const [pFig, pCanvas] = map28("x × w: what it sees in your digit");
  paint28(wCanvas, w, (v) => diverging(v, max));
  const note = el("p", { class: "note" });
  const update = (answer, inputs) => {
    paintDigit(xCanvas, answer ? answer.input : null);
    const products = (inputs || new Array(784).fill(0)).map((v, k) => v * w[k]);
    paint28(pCanvas, products, (v) => diverging(v, max));
    const up = products.filter((v) => v > 0).reduce((s, v) => s + v, 0);
    const down = products.filter((v) => v < 0).reduce((s, v) => s + v, 0);
    note.textContent = answer
      ? `Ink on red pushes a1[${ctx.j}] up (${num(up)} in all), ink on blue pushes it down (${num(down)}).`
      : "Draw a digit to see where your ink meets these weights.";
  };
  const part = el("div", {}, el("div", { class: "maps" }, wFig, xFig, pFig), legend(max), note);
  return [part, update];
}

/** Deeper: a rough picture through the layers below, and the strongest incoming weights. */
function incomingPart(ctx) {
  const { L, j, u, open } = ctx;
  const max = extent(u.pixels);
  const [fig, canvas] = map28(`Roughly what it looks for: W1 ·…· W${L}[:, ${j}], sigmoids ignored`);
  paint28(canvas, u.pixels, (v) => diverging(v, max));
  const strongest = u.incoming
    .map((w, k) => [k, w])
    .sort((a, b) => Math.abs(b[1]) - Math.abs(a[1]))
    .slice(0, INCOMING_ROWS);
  const cells = [];
  const rows = strongest.map(([k, w]) => {
    const z = el("td", {}, "–");
    const p = el("td", {}, "–");
    cells.push([k, w, z, p]);
    return el("tr", {}, el("th", { scope: "row" }, chip(L - 1, k, `unit ${k}`, open)), el("td", {}, num(w)), z, p);
  });
  const table = el(
    "table",
    { class: "incoming" },
    el("caption", {}, `Strongest of its ${u.incoming.length} incoming weights (from hidden layer ${L - 1})`),
    el(
      "thead",
      {},
      el(
        "tr",
        {},
        el("th", { scope: "col" }, "from"),
        el("th", { scope: "col" }, "weight w"),
        el("th", { scope: "col" }, `z${L - 1} now`),
        el("th", { scope: "col" }, "z · w"),
      ),
    ),
    el("tbody", {}, ...rows),
  );
  const note = el("p", { class: "note" });
  const update = (answer, inputs) => {
    for (const [k, w, z, p] of cells) {
      z.textContent = inputs ? plain(inputs[k], 2) : "–";
      p.textContent = inputs ? num(inputs[k] * w) : "–";
    }
    if (!inputs) {
      note.textContent = "";
      return;
    }
    const terms = inputs.map((v, k) => [k, v * u.incoming[k]]).sort((a, b) => b[1] - a[1]);
    const best = terms.slice(0, 3).map(([k, t]) => `unit ${k} (${num(t)})`);
    const worst = terms
      .slice(-2)
      .reverse()
      .filter(([, t]) => t < 0)
      .map(([k, t]) => `unit ${k} (${num(t)})`);
    note.textContent =
      `For your digit the biggest pushes up come from ${best.join(", ")}` +
      (worst.length ? `; down from ${worst.join(", ")}.` : ".");
  };
  const part = el("div", { class: "deeper" }, el("div", { class: "maps" }, fig), table);
  part.append(legend(max), note);
  return [part, update];
}

/** Where the unit's output goes: to the next layer's units, or to the digits' scores. */
function outgoingPart(ctx) {
  const { L, j, n, u, open } = ctx;
  if (L === n) {
    return el(
      "p",
      { class: "note" },
      `No outgoing weights: this is the output. Softmax compares its score a${n}[${j}] with the other nine.`,
    );
  }
  if (L === n - 1) {
    const w = u.outgoing
      .slice()
      .sort((a, b) => a.unit - b.unit)
      .map((o) => o.weight);
    const max = extent(w);
    const rows = w.map((v, d) => {
      const bar = el("span", { class: `push ${v < 0 ? "down" : "up"}` });
      bar.style.width = `${((Math.abs(v) / max) * 50).toFixed(1)}%`;
      bar.style.backgroundColor = css(diverging(v, max));
      return el(
        "li",
        { "aria-label": `digit ${d}: ${num(v)}` },
        el("span", { class: "d" }, String(d)),
        el("span", { class: "axis" }, bar),
        el("span", { class: "w" }, num(v)),
      );
    });
    const ups = u.outgoing
      .filter((o) => o.weight > 0)
      .slice(0, 2)
      .map((o) => `${o.unit} (${num(o.weight)})`);
    const downs = u.outgoing
      .filter((o) => o.weight < 0)
      .slice(0, 2)
      .map((o) => `${o.unit} (${num(o.weight)})`);
    return el(
      "div",
      {},
      el("h4", {}, `What it does to each digit's score: W${n}[${j}, :]`),
      el(
        "p",
        { class: "note" },
        `When it is on, it pushes up ${ups.join(" and ") || "no digit"} and pushes down ${downs.join(" and ") || "no digit"}.`,
      ),
      el("ol", { class: "pushes", start: "0" }, ...rows),
    );
  }
  const shown = u.outgoing
    .slice(0, OUTGOING_SHOWN)
    .map((o) => el("li", {}, chip(L + 1, o.unit, `unit ${o.unit}`, open), ` ${num(o.weight)}`));
  const fav = u.digits.map((v, d) => [d, v]).sort((a, b) => b[1] - a[1]);
  return el(
    "div",
    {},
    el("h4", {}, `Strongest of its ${u.outgoing.length} outgoing weights (to hidden layer ${L + 1})`),
    el("ul", { class: "outgoing" }, ...shown),
    el(
      "p",
      { class: "note" },
      `Followed on to the output (sigmoids ignored), it favours ${fav[0][0]} most and ${fav[9][0]} least.`,
    ),
  );
}

// --- the panel -----------------------------------------------------------------------------------

/** The panel; `open(L, j)` shows a unit, `show(answer)` updates its live values; getFlow()
 * gives the steps now on the page (they are rebuilt when other weights are served). */
export function createUnitPanel(getFlow) {
  const box = el("section", {
    id: "unit",
    class: "unit-panel",
    tabindex: "-1",
    "aria-labelledby": "unit-title",
    hidden: "",
  });
  const cache = new Map();
  let current = null; // { L, j, update }
  let answer = null;
  let token = 0;

  function inputsOf(L) {
    if (!answer) return null;
    return L === 1 ? answer.input.flat().map((v) => v / 255) : answer.hidden[L - 2];
  }

  function fetchUnit(L, j) {
    const key = `${L}:${j}`;
    if (!cache.has(key))
      cache.set(
        key,
        getUnit(L, j).catch((err) => (cache.delete(key), Promise.reject(err))),
      );
    return cache.get(key);
  }

  function close() {
    const was = current;
    current = null;
    box.hidden = true;
    getFlow().select(0, null);
    if (was) getFlow().focus(was.L, was.j);
  }

  function render(L, j, u) {
    const n = getFlow().n;
    const ctx = { L, j, n, u, open };
    const closeButton = el("button", { type: "button", class: "close" }, "Close");
    closeButton.addEventListener("click", close);
    const [sum, updateSum] = sumPart(ctx);
    const [detail, updateDetail] = L === 1 ? pixelsPart(ctx) : incomingPart(ctx);
    box.replaceChildren(
      el("div", { class: "unit-head" }, el("h4", { id: "unit-title" }, unitName(L, j, n)), closeButton),
      sum,
      detail,
      outgoingPart(ctx),
    );
    const update = () => {
      updateSum(answer, inputsOf(L));
      updateDetail(answer, inputsOf(L));
    };
    current = { L, j, update };
    update();
  }

  async function open(L, j, { fromPanel = false } = {}) {
    const mine = ++token;
    getFlow().select(L, j);
    getFlow().step(L).append(box);
    box.hidden = false;
    box.dataset.state = "loading";
    box.replaceChildren(el("p", { class: "note" }, `Loading ${unitName(L, j, getFlow().n).toLowerCase()}…`));
    try {
      const u = await fetchUnit(L, j);
      if (mine !== token) return;
      render(L, j, u);
      box.dataset.state = "open";
    } catch (err) {
      if (mine !== token) return;
      box.dataset.state = "error";
      box.replaceChildren(el("p", { class: "note error" }, `Cannot show this unit: ${err.message}.`));
    }
    if (fromPanel) {
      box.focus({ preventScroll: true });
      box.scrollIntoView({ block: "nearest" });
    }
  }

  return {
    element: box,
    open,
    close,
    get isOpen() {
      return !box.hidden;
    },
    /** New live values (null: none). */
    show(a) {
      answer = a;
      if (current) current.update();
    },
    /** Other weights are served: forget every unit. */
    reset() {
      cache.clear();
      current = null;
      box.hidden = true;
    },
  };
}
