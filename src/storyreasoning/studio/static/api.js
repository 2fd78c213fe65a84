// The studio's HTTP API (see API.md): JSON in, JSON out, errors as one sentence.

export class ApiError extends Error {
  constructor(message, status = 0) {
    super(message);
    this.status = status;
  }
}

/** The sentence of an error answer: {"error": "..."}, or FastAPI's {"detail": ...}. */
function errorMessage(data, status) {
  if (data && typeof data === "object") {
    if (typeof data.error === "string" && data.error) return data.error;
    if (data.error && typeof data.error.message === "string") return data.error.message;
    if (typeof data.detail === "string" && data.detail) return data.detail;
    if (Array.isArray(data.detail) && data.detail.length) {
      return data.detail
        .map((d) => {
          const where = Array.isArray(d.loc) ? d.loc.filter((p) => p !== "body").join(".") : "";
          return where ? `${where}: ${d.msg}` : String(d.msg || d);
        })
        .join("; ");
    }
  }
  return `The server answered ${status} without an explanation.`;
}

/**
 * fetch() a path of the studio's API.
 *
 * options: method, json (a body sent as JSON), body (FormData), raw (return the Response).
 * Throws ApiError with the server's sentence on a 4xx/5xx, or a sentence about the
 * connection when the server cannot be reached.
 */
export async function api(path, options = {}) {
  const init = { method: options.method || (options.json !== undefined || options.body ? "POST" : "GET"), headers: {} };
  if (options.json !== undefined) {
    init.body = JSON.stringify(options.json);
    init.headers["Content-Type"] = "application/json";
  } else if (options.body) {
    init.body = options.body;
  }
  init.headers.Accept = "application/json";
  let response;
  try {
    response = await fetch(path, init);
  } catch (err) {
    throw new ApiError(`The studio server at ${location.origin} did not answer (${err.message}); check that it is still running.`);
  }
  if (!response.ok) {
    let data = null;
    try {
      data = await response.json();
    } catch {
      data = null;
    }
    throw new ApiError(errorMessage(data, response.status), response.status);
  }
  if (options.raw) return response;
  const type = response.headers.get("content-type") || "";
  if (!type.includes("json")) {
    throw new ApiError(`${path} answered ${type || "no content type"} where JSON was expected.`, response.status);
  }
  return response.json();
}

/** A path with query parameters (null and undefined and "" left out). */
export function withQuery(path, params) {
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value === null || value === undefined || value === "") continue;
    query.set(key, String(value));
  }
  const text = query.toString();
  return text ? `${path}?${text}` : path;
}

/** A path segment: a name or id, percent-encoded. */
export function seg(value) {
  return encodeURIComponent(String(value));
}

/**
 * The API path of one story: BASE/stories/ID (BASE: /api/datasets/NAME or /api/runs/NAME), with
 * ``query``. A URL's path cannot carry the ids "." and ".." (the browser folds such a segment
 * away before the request leaves, percent-encoded or not): those go in the query, BASE/story?story_id=ID.
 */
export function storyPath(base, storyId, query = {}) {
  const id = String(storyId);
  if (id === "." || id === "..") return withQuery(`${base}/story`, { story_id: id, ...query });
  return withQuery(`${base}/stories/${seg(id)}`, query);
}
