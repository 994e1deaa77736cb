// A hidden layer's units as a grid of buttons, grouped by the digit each favours.
// One tab stop per grid: arrow keys move between units, Enter (or a click) opens one.

import { activation, css } from "./colours.js";

// Cell size (CSS px) by layer width: small layers get large, easy targets.
function cellSize(n) {
  if (n <= 64) return 26;
  if (n <= 160) return 20;
  if (n <= 400) return 15;
  return 12;
}

function unitButton(layer, j, digit) {
  const b = document.createElement("button");
  b.type = "button";
  b.className = "unit";
  b.setAttribute("aria-label", `unit ${j}, favours ${digit}`);
  b.dataset.layer = String(layer);
  b.dataset.unit = String(j);
  b.tabIndex = -1;
  b.setAttribute("aria-controls", "unit");
  b.setAttribute("aria-expanded", "false");
  return b;
}

function groupRow(digit, units) {
  const row = document.createElement("div");
  row.className = "group";
  row.setAttribute("role", "group");
  row.setAttribute("aria-label", `${units.length} units that favour ${digit}`);
  const label = document.createElement("span");
  label.className = "group-digit";
  label.textContent = String(digit);
  label.setAttribute("aria-hidden", "true");
  const cells = document.createElement("div");
  cells.className = "cells";
  if (!units.length) cells.textContent = "none";
  row.append(label, cells);
  return [row, cells];
}

/**
 * The grid of `layer` ({layer, units, favours, order}) in `box`; onOpen(layer, unit) is
 * called when a unit is clicked or Enter is pressed on it.
 */
export function buildGrid(box, layer, onOpen) {
  const { units: n, favours, order } = layer;
  const buttons = new Array(n);
  const sequence = []; // buttons in the order shown
  const groups = []; // per digit, the buttons of its group
  box.replaceChildren();
  box.style.setProperty("--cell", `${cellSize(n)}px`);
  for (let d = 0; d < 10; d++) {
    const members = order.filter((j) => favours[j] === d);
    const [row, cells] = groupRow(d, members);
    groups.push([]);
    for (const j of members) {
      const b = unitButton(layer.layer, j, d);
      buttons[j] = b;
      cells.append(b);
      sequence.push(b);
      groups[d].push(b);
    }
    box.append(row);
  }
  let values = null;
  const grid = { layer: layer.layer, n, buttons, favours };

  function label(b) {
    const j = Number(b.dataset.unit);
    const z = values ? `, z ${values[j].toFixed(2)}` : "";
    return `unit ${j}, favours ${favours[j]}${z}`;
  }

  function focusAt(b) {
    for (const other of sequence) other.tabIndex = -1;
    b.tabIndex = 0;
    b.setAttribute("aria-label", label(b));
    b.focus();
  }

  function step(b, key) {
    const i = sequence.indexOf(b);
    const d = favours[Number(b.dataset.unit)];
    const within = groups[d].indexOf(b);
    const jump = (dir) => {
      for (let k = d + dir; k >= 0 && k < 10; k += dir) {
        if (groups[k].length) return groups[k][Math.min(within, groups[k].length - 1)];
      }
      return b;
    };
    const moves = {
      ArrowRight: () => sequence[Math.min(i + 1, sequence.length - 1)],
      ArrowLeft: () => sequence[Math.max(i - 1, 0)],
      ArrowDown: () => jump(1),
      ArrowUp: () => jump(-1),
      Home: () => sequence[0],
      End: () => sequence[sequence.length - 1],
    };
    return moves[key] ? moves[key]() : null;
  }

  box.addEventListener("keydown", (e) => {
    const b = e.target.closest(".unit");
    if (!b) return;
    const next = step(b, e.key);
    if (next) {
      e.preventDefault();
      focusAt(next);
    }
  });
  box.addEventListener("click", (e) => {
    const b = e.target.closest(".unit");
    if (!b) return;
    focusAt(b);
    onOpen(layer.layer, Number(b.dataset.unit));
  });
  box.addEventListener("pointerover", (e) => {
    const b = e.target.closest(".unit");
    if (b) b.title = label(b);
  });
  sequence[0].tabIndex = 0;
  sequence[0].setAttribute("aria-label", label(sequence[0]));

  /** Colour each unit by its activation (null: no answer yet). */
  grid.paint = (zs) => {
    values = zs;
    buttons.forEach((b, j) => {
      b.style.backgroundColor = zs ? css(activation(zs[j])) : "";
    });
    const current = sequence.find((b) => b.tabIndex === 0);
    if (current) current.setAttribute("aria-label", label(current));
  };

  /** Mark the open unit (or none). */
  grid.select = (j) => {
    buttons.forEach((b, k) => {
      b.classList.toggle("open", k === j);
      b.setAttribute("aria-expanded", String(k === j));
    });
  };

  grid.focus = (j) => focusAt(buttons[j]);
  return grid;
}
