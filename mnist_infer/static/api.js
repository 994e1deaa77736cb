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

async function request(path, options = {}) {
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), TIMEOUT_MS);
  let res;
  try {
    res = await fetch(path, { ...options, signal: abort.signal, cache: "no-store" });
  } catch (err) {
    if (abort.signal.aborted) {
      throw new RequestError("timeout", `the server did not answer within ${TIMEOUT_MS / 1000} s`);
    }
    throw new RequestError("offline", `no answer from the server (${err.message})`);
  } finally {
    clearTimeout(timer);
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

/** The weights served: sizes, names, metadata and each hidden unit's favourite digit. */
export function getInfo() {
  return request("/api/info");
}

/** The forward pass of an image (a Blob or File). */
export function predict(image) {
  return request("/api/predict", { method: "POST", body: image, headers: { "Content-Type": image.type || "application/octet-stream" } });
}

/** One unit's bias and weights. */
export function getUnit(layer, unit) {
  return request(`/api/unit?layer=${layer}&unit=${unit}`);
}
