// The RAG API from the browser: one request helper (API key, the one error shape) and the SSE reader.

const KEY_STORAGE = "llmops.chat.apiKey";

/** An error body from the API ({"error": {message, type, param, code}}), or a network failure. */
export class ApiError extends Error {
  constructor(status, info) {
    super(info?.message || `the server answered ${status}`);
    this.status = status;
    this.code = info?.code ?? null;
    this.param = info?.param ?? null;
  }
}

/** 401: the page asks for an API key and retries. */
export class AuthRequired extends ApiError {}

export const apiKey = {
  get: () => localStorage.getItem(KEY_STORAGE),
  set: (key) => localStorage.setItem(KEY_STORAGE, key),
  clear: () => localStorage.removeItem(KEY_STORAGE),
};

/** fetch() against the API (URLs relative to the page, so a path prefix in front of the API works). */
export async function call(path, { method = "GET", body, signal } = {}) {
  const headers = { Accept: body === undefined ? "application/json" : "application/json, text/event-stream" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const key = apiKey.get();
  if (key) headers.Authorization = `Bearer ${key}`;
  let response;
  try {
    response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), signal });
  } catch (e) {
    if (e.name === "AbortError") throw e;
    throw new ApiError(0, { message: "The server cannot be reached. Check your connection and try again." });
  }
  if (response.ok) return response;
  const info = await errorInfo(response);
  throw new (response.status === 401 ? AuthRequired : ApiError)(response.status, info);
}

async function errorInfo(response) {
  try {
    const data = await response.json();
    if (data && typeof data.error === "object") return data.error;
  } catch { /* not JSON: a proxy's page */ }
  return { message: `The server answered ${response.status} ${response.statusText}`.trim() };
}

/** The `data:` payloads of a server-sent event stream, parsed as JSON, until `[DONE]`. */
export async function* sseEvents(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true }).replace(/\r\n?/g, "\n");
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const event = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const data = event.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trimStart()).join("\n");
        if (!data) continue;
        if (data === "[DONE]") return;
        yield JSON.parse(data);
      }
    }
  } finally {
    reader.releaseLock();
  }
}
