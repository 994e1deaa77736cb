// The server's JSON API: every request has a time limit, every failure a plain-words reason.

export const TIMEOUT_MS = 5000; // a request not answered by then is given up

// A failed request: `kind` is "timeout", "offline" (no answer at all) or "refused" (an error
// answer, e.g. an unusable image); `message` says what happened in plain words.
export class RequestError extends Error {
  constructor(kind, message, status = 0) {
    super(message);
    this.kind = kind;
    this.status = status;
  }
}

// One request and its JSON answer, or a RequestError.
async function exchange(path, options, signal) {
  let res;
  try {
    res = await fetch(path, { ...options, signal, cache: "no-store" });
  } catch (err) {
    throw new RequestError("offline", `no answer from the server (${err.message})`);
  }
  let data;
  try {
    data = await res.json();
  } catch {
    throw new RequestError("offline", `the server sent something that is not JSON (HTTP ${res.status})`, res.status);
  }
  if (!res.ok) {
    const kind = res.status >= 500 ? "offline" : "refused";
    throw new RequestError(kind, data && data.error ? data.error : `HTTP ${res.status}`, res.status);
  }
  return data;
}

// The exchange, given up after TIMEOUT_MS (headers and body alike) or when `cancel` aborts.
async function request(path, options = {}, cancel = null) {
  const abort = new AbortController();
  cancel?.addEventListener("abort", () => abort.abort());
  let timer;
  const late = new Promise((_, reject) => {
    timer = setTimeout(() => {
      reject(new RequestError("timeout", `the server did not answer within ${TIMEOUT_MS / 1000} s`));
      abort.abort();
    }, TIMEOUT_MS);
  });
  try {
    return await Promise.race([exchange(path, options, abort.signal), late]);
  } finally {
    clearTimeout(timer);
  }
}

/** The weights served: sizes, names, metadata and each hidden unit's favourite digit. */
export function getInfo() {
  return request("/api/info");
}

/** The forward pass of an image (a Blob or File); `cancel` (an AbortSignal) gives it up. */
export function predict(image, cancel = null) {
  const headers = { "Content-Type": image.type || "application/octet-stream" };
  return request("/api/predict", { method: "POST", body: image, headers }, cancel);
}

/** One unit's bias and weights. */
export function getUnit(layer, unit) {
  return request(`/api/unit?layer=${layer}&unit=${unit}`);
}
