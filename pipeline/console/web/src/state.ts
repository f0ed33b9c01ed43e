// The whole view state lives in the URL (`/page?key=value&...`), so every view can be shared,
// bookmarked and reloaded. The back end answers every path without a dot with index.html, so
// the pages use real paths (History API). Pages read their state from `route()` and change it
// with `navigate()`; nothing view-related is kept only in memory.

export interface Route {
  page: string;
  /** Path segments after the page (`/flows/123` -> ["123"]). */
  rest: string[];
  params: URLSearchParams;
}

/** The current route, from `location`. */
export function route(): Route {
  const parts = location.pathname.split("/").filter(Boolean).map(decodeURIComponent);
  return { page: parts[0] || "visualize", rest: parts.slice(1), params: new URLSearchParams(location.search) };
}

type Params = Record<string, string | number | undefined> | URLSearchParams;

/** The URL of a page with its parameters (empty values are left out). */
export function href(page: string, params: Params = {}): string {
  const p = new URLSearchParams();
  const entries = params instanceof URLSearchParams ? [...params.entries()] : Object.entries(params);
  for (const [k, v] of entries) {
    if (v !== undefined && v !== "") p.set(k, String(v));
  }
  const qs = p.toString();
  return "/" + page.split("/").map(encodeURIComponent).join("/") + (qs ? "?" + qs : "");
}

/** Fired on the window whenever the route changes (link, back button, navigate()). */
export const ROUTE_EVENT = "console-route";

/** Goes to a URL; `replace` keeps the history short for small changes (typing, zoom steps). */
export function navigate(url: string, replace = false): void {
  if (url === location.pathname + location.search) return;
  if (replace) history.replaceState(null, "", url);
  else history.pushState(null, "", url);
  window.dispatchEvent(new Event(ROUTE_EVENT));
}

/** Updates some parameters of the current route. */
export function update(changes: Record<string, string | number | undefined>, replace = false): void {
  const r = route();
  for (const [k, v] of Object.entries(changes)) {
    if (v === undefined || v === "") r.params.delete(k);
    else r.params.set(k, String(v));
  }
  navigate(href([r.page, ...r.rest].join("/"), r.params), replace);
}

/** Makes same-origin links navigate without a reload, and the back button re-render. */
export function installLinkHandler(): void {
  document.addEventListener("click", (e) => {
    const a = (e.target as Element | null)?.closest?.("a");
    if (!a || e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey) return;
    const url = new URL(a.href, location.href);
    if (url.origin !== location.origin || a.target || a.hasAttribute("download")) return;
    e.preventDefault();
    navigate(url.pathname + url.search);
  });
  window.addEventListener("popstate", () => window.dispatchEvent(new Event(ROUTE_EVENT)));
}
