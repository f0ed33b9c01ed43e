// A tiny DOM builder. Every piece of text from the server or the user goes through
// `textContent` (never innerHTML), so a hostile SNI or URL cannot inject markup.

type Child = Node | string | number | null | undefined | false;
type Attrs = Record<string, string | number | boolean | null | undefined | EventListener>;

/** Creates an element: `h("a", { href: "#/x", onclick: fn }, "text", child)`. */
export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Attrs = {},
  ...children: (Child | Child[])[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") {
      el.addEventListener(k.slice(2), v as EventListener);
    } else if (k === "value" && "value" in el) {
      (el as unknown as HTMLInputElement).value = String(v);
    } else {
      el.setAttribute(k, v === true ? "" : String(v));
    }
  }
  append(el, children);
  return el;
}

function append(el: HTMLElement, children: (Child | Child[])[]): void {
  for (const c of children) {
    if (Array.isArray(c)) append(el, c);
    else if (c === null || c === undefined || c === false) continue;
    else el.append(c instanceof Node ? c : String(c));
  }
}

/** Replaces an element's content. */
export function replace(el: HTMLElement, ...children: (Child | Child[])[]): void {
  el.replaceChildren();
  append(el, children);
}

/** A visible error block: the operator always sees what failed and why. */
export function errorBox(what: string, err: unknown): HTMLElement {
  const msg = err instanceof Error ? err.message : String(err);
  return h("div", { class: "error", role: "alert" }, h("strong", {}, what + ": "), msg);
}

/** A loading placeholder. */
export function loading(what = "Loading"): HTMLElement {
  return h("div", { class: "loading" }, what + "…");
}

let toastTimer: number | undefined;

/** A short message at the bottom of the screen (errors stay until dismissed). */
export function toast(text: string, kind: "info" | "error" = "info"): void {
  const el = document.getElementById("toast");
  if (!el) return;
  el.className = "toast " + kind;
  replace(el, text, h("button", { class: "close", onclick: () => (el.className = "toast hidden") }, "×"));
  window.clearTimeout(toastTimer);
  if (kind === "info") toastTimer = window.setTimeout(() => (el.className = "toast hidden"), 4000);
}
