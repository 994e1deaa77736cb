// Colour maps: activations 0..1 (viridis) and signed weights (blue - white - red, zero white).

// Viridis, dark purple (0) to yellow (1): perceptually even and readable with colour blindness.
const VIRIDIS = [
  [68, 1, 84],
  [59, 82, 139],
  [33, 145, 140],
  [94, 201, 98],
  [253, 231, 37],
];
// Blue (most negative), white (zero), red (most positive).
const NEGATIVE = [33, 102, 172];
const ZERO = [247, 247, 247];
const POSITIVE = [178, 24, 43];

function mix(a, b, t) {
  return a.map((c, k) => Math.round(c + (b[k] - c) * t));
}

function ramp(stops, t) {
  const s = Math.min(Math.max(t, 0), 1) * (stops.length - 1);
  const i = Math.min(Math.floor(s), stops.length - 2);
  return mix(stops[i], stops[i + 1], s - i);
}

/** [r, g, b] of an activation between 0 and 1. */
export function activation(v) {
  return ramp(VIRIDIS, v);
}

/** [r, g, b] of a signed value on a scale from -max to +max, white at zero. */
export function diverging(v, max) {
  const t = max > 0 ? Math.max(-1, Math.min(1, v / max)) : 0;
  return t < 0 ? mix(ZERO, NEGATIVE, -t) : mix(ZERO, POSITIVE, t);
}

export function css([r, g, b]) {
  return `rgb(${r},${g},${b})`;
}

/** The CSS gradient of a map, for its legend. */
export function gradient(kind) {
  const stops = kind === "activation" ? VIRIDIS : [NEGATIVE, ZERO, POSITIVE];
  return `linear-gradient(90deg, ${stops.map(css).join(", ")})`;
}

/**
 * The scale of a signed map: the 98th percentile of the absolute values, so that a few
 * outliers do not wash out the rest (larger values get the full colour). Never 0.
 */
export function extent(values) {
  const sorted = values.map(Math.abs).sort((a, b) => a - b);
  const m = sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * 0.98))];
  return Math.max(m || 0, 1e-9);
}

/** Paint 784 values into a 28x28 canvas, each pixel coloured by `colour(v)`. */
export function paint28(canvas, values, colour) {
  const g = canvas.getContext("2d");
  const img = g.createImageData(28, 28);
  values.forEach((v, i) => img.data.set([...colour(v), 255], i * 4));
  g.putImageData(img, 0, 0);
}

/** Paint the 28x28 input digit (0..255, white ink on black, as MNIST shows it). */
export function paintDigit(canvas, rows) {
  paint28(canvas, rows ? rows.flat() : new Array(784).fill(0), (v) => [v, v, v]);
}
