// The forward pass laid out step by step, in the book's notation: input, hidden layers, output.

import { paintDigit } from "./colours.js";
import { buildGrid } from "./grid.js";

/** An element with attributes and children (strings become text). */
export function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v;
    else e.setAttribute(k, v);
  }
  e.append(...children);
  return e;
}

export function shape(...dims) {
  return `(${dims.join(", ")})`;
}

const percent = (p) => `${(p * 100).toFixed(1)}%`;

/** Name of the quantity leaving layer L (1-based) of n: z1, z2, … and y for the last. */
function out(L, n) {
  return L === n ? "y" : `z${L}`;
}

function below(L, n) {
  return L === 1 ? "x" : out(L - 1, n);
}

/** The whole pass on one line: x (1, 784) · W1 (784, 50) + b1 → a1 (1, 50) → sigmoid → z1 … */
export function formula(sizes) {
  const n = sizes.length - 1;
  const parts = [el("span", {}, el("var", {}, "x"), ` ${shape(1, sizes[0])}`)];
  for (let L = 1; L <= n; L++) {
    const f = L === n ? "softmax" : "sigmoid";
    parts.push(
      el("span", {}, `· W${L} ${shape(sizes[L - 1], sizes[L])} + b${L}`),
      el("span", {}, "→ ", el("var", {}, `a${L}`), ` ${shape(1, sizes[L])}`),
      el("span", {}, `→ ${f} →`),
      el("span", {}, el("var", {}, out(L, n)), ` ${shape(1, sizes[L])}`),
    );
  }
  return parts.flatMap((p, i) => (i ? [" ", p] : [p])); // break lines between the parts
}

function equation(L, sizes) {
  const n = sizes.length - 1;
  const f = L === n ? "softmax" : "sigmoid";
  return el(
    "p",
    { class: "eq" },
    el("code", {}, `a${L} = ${below(L, n)} · W${L} + b${L}`),
    el(
      "span",
      { class: "shapes" },
      `${shape(1, sizes[L - 1])} · ${shape(sizes[L - 1], sizes[L])} + ${shape(sizes[L])} → ${shape(1, sizes[L])}`,
    ),
    el("code", {}, `${out(L, n)} = ${f}(a${L})`),
    el("span", { class: "shapes" }, shape(1, sizes[L])),
  );
}

// --- the words ------------------------------------------------------------------------

function inputWords() {
  return (
    "Your drawing is cropped to its ink, scaled so that its longer side is 20 pixels and centred " +
    "in a 28×28 square, as MNIST's digits were. Its 784 pixels, from 0 (black) to 1 (white), laid " +
    "side by side in one row, are x."
  );
}

function hiddenWords(L, sizes) {
  const n = sizes[L];
  if (L === 1) {
    return (
      `Each of the ${n} units multiplies every pixel by a weight of its own, adds the 784 products ` +
      `and its bias: that is a1 = x · W1 + b1, one number per unit. The sigmoid squashes each into ` +
      `z1, between 0 and 1: a unit near 1 has found in your digit the pattern its weights look for. ` +
      `Open a unit to see its weights as a picture.`
    );
  }
  return (
    `The same again one level up: each of the ${n} units weighs the ${sizes[L - 1]} values of ` +
    `z${L - 1} instead of pixels, adds its bias (a${L}) and goes through the sigmoid (z${L}). Its ` +
    `inputs are the patterns found below, so it responds to combinations of them.`
  );
}

function outputWords(L, sizes) {
  return (
    `Ten units, one per digit, each weighing the ${sizes[L - 1]} values of ${below(L, sizes.length - 1)} ` +
    `and adding its bias: a${L} holds ten scores of any size and sign. Softmax turns them into ` +
    `probabilities, y = exp(a${L}) / sum(exp(a${L})): each between 0 and 1, together 1. The largest wins.`
  );
}

function orderWords(L) {
  return (
    `Units are grouped by the digit they push up most (their weights followed on to the output ` +
    `scores, the sigmoids ignored), the strongest first in each group; units are numbered from 0. ` +
    `Colour: z${L} for your digit, dark purple 0 to yellow 1.`
  );
}

// --- the steps --------------------------------------------------------------------------

function inputStep() {
  const canvas = el("canvas", {
    id: "input",
    width: "28",
    height: "28",
    role: "img",
    "aria-label": "The 28 by 28 digit the network sees",
  });
  const live = el("p", { class: "live" }, "No digit yet.");
  const li = el(
    "li",
    { class: "step", id: "step-x" },
    el("h3", {}, "Input ", el("var", {}, "x"), " ", el("span", { class: "shapes" }, shape(1, 784))),
    el("div", { class: "input-row" }, canvas, el("div", {}, el("p", { class: "words" }, inputWords()), live)),
  );
  paintDigit(canvas, null);
  return { li, live, canvas };
}

function hiddenStep(L, sizes, layer, onOpen) {
  const n = sizes[L];
  const units = el("div", { class: "units" });
  const live = el("p", { class: "live" }, "No digit yet.");
  const li = el(
    "li",
    { class: "step", id: `step-${L}` },
    el("h3", {}, `Hidden layer ${L}: ${n} sigmoid units`),
    equation(L, sizes),
    el("p", { class: "words" }, hiddenWords(L, sizes)),
    el("p", { class: "order" }, orderWords(L)),
    units,
    findForm(L, n, onOpen),
    live,
  );
  const grid = buildGrid(units, layer, onOpen);
  return { li, live, grid };
}

// Open a unit by its number: "what does unit 7 look for?" without hunting through the grid.
function findForm(L, n, onOpen) {
  const input = el("input", {
    type: "number",
    min: "0",
    max: String(n - 1),
    step: "1",
    required: "",
    inputmode: "numeric",
    class: "find-unit",
  });
  const form = el(
    "form",
    { class: "find" },
    el("label", {}, `Open unit number (0 to ${n - 1}) `, input),
    el("button", { type: "submit" }, "Open"),
  );
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    onOpen(L, Number(input.value));
  });
  return form;
}

function outputStep(L, sizes, onOpen) {
  const bars = el("ol", { id: "bars", class: "bars", "aria-label": `Each digit's score a${L} and probability y` });
  for (let d = 0; d < 10; d++) {
    const open = el(
      "button",
      {
        type: "button",
        class: "digit-unit",
        "data-layer": String(L),
        "data-unit": String(d),
        "aria-controls": "unit",
        "aria-expanded": "false",
      },
      String(d),
    );
    open.addEventListener("click", () => onOpen(L, d));
    bars.append(
      el(
        "li",
        {},
        open,
        el("span", { class: "logit" }, "–"),
        el("span", { class: "track" }, el("span", { class: "fill" })),
        el("span", { class: "p" }, "–"),
      ),
    );
  }
  const li = el(
    "li",
    { class: "step", id: `step-${L}` },
    el("h3", {}, "Output layer: 10 units, one per digit"),
    equation(L, sizes),
    el("p", { class: "words" }, outputWords(L, sizes)),
    el(
      "p",
      { class: "bars-head", "aria-hidden": "true" },
      el("span", {}, "digit"),
      el("span", {}, `score a${L}`),
      el("span", {}, "probability y"),
    ),
    bars,
  );
  return { li, bars };
}

// --- live values ---------------------------------------------------------------------------

function strongest(values, k) {
  return values
    .map((v, j) => [j, v])
    .sort((a, b) => b[1] - a[1])
    .slice(0, k);
}

function showHidden(step, L, zs, onOpen) {
  const above = zs.filter((v) => v > 0.5).length;
  const chips = strongest(zs, 3).map(([j, v]) => {
    const b = el("button", { type: "button", class: "chip" }, `unit ${j}`);
    b.addEventListener("click", () => onOpen(L, j));
    return el("span", {}, b, ` ${v.toFixed(2)}`);
  });
  step.live.replaceChildren(
    `${above} of ${zs.length} units above 0.5. Strongest now: `,
    ...chips.flatMap((c, i) => (i ? [", ", c] : [c])),
  );
  step.grid.paint(zs);
}

function showOutput(step, answer) {
  const logits = answer.pre_activations[answer.pre_activations.length - 1];
  [...step.bars.children].forEach((li, d) => {
    const p = answer.probabilities[d];
    li.classList.toggle("win", d === answer.guess); // also for a non-digit: what the network thinks
    li.querySelector(".logit").textContent = logits[d].toFixed(2);
    li.querySelector(".fill").style.width = percent(p);
    li.querySelector(".p").textContent = percent(p);
    li.setAttribute("aria-label", `${d}: score ${logits[d].toFixed(2)}, probability ${percent(p)}`);
  });
}

/** Build the steps for the weights described by `info` into the list `box`. */
export function buildFlow(box, formulaBox, info, onOpen) {
  const sizes = info.sizes;
  const n = sizes.length - 1;
  formulaBox.replaceChildren(...formula(sizes));
  const input = inputStep();
  const hidden = info.layers.map((layer) => hiddenStep(layer.layer, sizes, layer, onOpen));
  const output = outputStep(n, sizes, onOpen);
  box.replaceChildren(input.li, ...hidden.map((h) => h.li), output.li);
  const flow = { sizes, n, info };

  /** Show the forward pass of an answer from /api/predict (null: none). */
  flow.show = (answer) => {
    if (!answer) return flow.clear();
    paintDigit(input.canvas, answer.input);
    const lit = answer.input.flat().filter((v) => v / 255 > 0.5).length;
    input.live.textContent = `${lit} of 784 pixels above 0.5.`;
    hidden.forEach((h, i) => showHidden(h, i + 1, answer.hidden[i], onOpen));
    showOutput(output, answer);
  };

  flow.clear = () => {
    paintDigit(input.canvas, null);
    input.live.textContent = "No digit yet.";
    for (const h of hidden) {
      h.live.textContent = "No digit yet.";
      h.grid.paint(null);
    }
    [...output.bars.children].forEach((li, d) => {
      li.classList.remove("win");
      li.querySelector(".logit").textContent = "–";
      li.querySelector(".fill").style.width = "0";
      li.querySelector(".p").textContent = "–";
      li.setAttribute("aria-label", `${d}: no prediction yet`);
    });
  };

  /** The step of layer L, where its unit panel goes. */
  flow.step = (L) => (L === n ? output.li : hidden[L - 1].li);

  /** Mark the open unit (or none) in every layer. */
  flow.select = (L, j) => {
    hidden.forEach((h, i) => h.grid.select(i + 1 === L ? j : null));
    [...output.bars.querySelectorAll(".digit-unit")].forEach((b, d) => {
      b.setAttribute("aria-expanded", String(L === n && d === j));
      b.classList.toggle("open", L === n && d === j);
    });
  };

  /** Move the keyboard focus to a unit. */
  flow.focus = (L, j) => {
    if (L === n) output.bars.querySelectorAll(".digit-unit")[j].focus();
    else hidden[L - 1].grid.focus(j);
  };

  flow.clear();
  return flow;
}
