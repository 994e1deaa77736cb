// The drawing pad: one stroke per primary pointer, drawn as one path, encoded synchronously.

const INK = "#111";
const PAPER = "#fff";

/**
 * Make the canvas a drawing pad. `onChange(final)` is called when the drawing changes:
 * final is true at pen-up (the stroke is complete), false while a stroke is drawn.
 */
export function createPad(canvas, onChange) {
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  const pad = {
    width: canvas.width / 14, // about MNIST's stroke: 2-3 px of a 20 px digit
    stroke: null, // { id, points, base }: the stroke being drawn, and the pad before it
    get drawing() {
      return pad.stroke !== null;
    },
    clear,
    encode,
    showImage,
  };

  function clear() {
    pad.stroke = null;
    ctx.fillStyle = PAPER;
    ctx.fillRect(0, 0, canvas.width, canvas.height);
  }

  function point(e) {
    const r = canvas.getBoundingClientRect();
    return [(e.clientX - r.left) * (canvas.width / r.width), (e.clientY - r.top) * (canvas.height / r.height)];
  }

  // The whole stroke as one path over the pad as it was before it: no seams where
  // segments overlap, whatever the number of events.
  function drawStroke() {
    const { points, base, width } = pad.stroke;
    ctx.putImageData(base, 0, 0);
    ctx.fillStyle = INK;
    ctx.strokeStyle = INK;
    ctx.lineWidth = width;
    ctx.lineCap = "round";
    ctx.lineJoin = "round";
    ctx.beginPath();
    if (points.length === 1) {
      ctx.arc(points[0][0], points[0][1], width / 2, 0, 2 * Math.PI);
      ctx.fill();
      return;
    }
    ctx.moveTo(...points[0]);
    for (const p of points.slice(1)) ctx.lineTo(...p);
    ctx.stroke();
  }

  function start(e) {
    // One stroke at a time, from the primary pointer: a second finger or a palm is ignored.
    if (!e.isPrimary || pad.stroke !== null) return;
    if (e.pointerType === "mouse" && e.button !== 0) return;
    e.preventDefault();
    try {
      canvas.setPointerCapture(e.pointerId); // keep the stroke when it leaves the box
    } catch {
      // a pointer the browser no longer tracks: draw without capture
    }
    const base = ctx.getImageData(0, 0, canvas.width, canvas.height);
    pad.stroke = { id: e.pointerId, points: [point(e)], base, width: pad.width };
    drawStroke();
    onChange(false);
  }

  function move(e) {
    if (pad.stroke === null || e.pointerId !== pad.stroke.id) return;
    const events = e.getCoalescedEvents ? e.getCoalescedEvents() : [];
    for (const ev of events.length ? events : [e]) pad.stroke.points.push(point(ev));
    drawStroke();
    onChange(false);
  }

  function end(e) {
    if (pad.stroke === null || e.pointerId !== pad.stroke.id) return;
    pad.stroke = null;
    onChange(true);
  }

  canvas.addEventListener("pointerdown", start);
  canvas.addEventListener("pointermove", move);
  for (const type of ["pointerup", "pointercancel", "lostpointercapture"]) {
    canvas.addEventListener(type, end);
  }

  /** The pad as a PNG Blob, made at once (toBlob can wait a second for an idle moment). */
  function encode() {
    const url = canvas.toDataURL("image/png");
    const bin = atob(url.slice(url.indexOf(",") + 1));
    const bytes = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    return new Blob([bytes], { type: "image/png" });
  }

  /** Show a chosen image file on the pad, fitted and centred (if the browser can decode it). */
  async function showImage(file) {
    clear();
    try {
      const bitmap = await createImageBitmap(file);
      const s = Math.min(canvas.width / bitmap.width, canvas.height / bitmap.height);
      const w = bitmap.width * s;
      const h = bitmap.height * s;
      ctx.drawImage(bitmap, (canvas.width - w) / 2, (canvas.height - h) / 2, w, h);
    } catch {
      // The browser cannot show it (TIFF, say); the server may still read it.
    }
  }

  clear();
  return pad;
}
