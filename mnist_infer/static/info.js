// The facts about the weights served, at the foot of the page.

export function showInfo(dl, info) {
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
