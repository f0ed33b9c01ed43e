// The filter input: completion of field names, operators and values from the server
// (filter/complete) and inline errors (filter/validate), both as the operator types. The server
// parses the filter; this component never interprets it, so the UI and the API cannot disagree.

import * as api from "./api";
import { h, replace } from "./dom";

const enc = new TextEncoder();

/** UTF-16 index -> UTF-8 byte offset (the API counts bytes). */
export function byteOffset(s: string, index: number): number {
  return enc.encode(s.slice(0, index)).length;
}

/** UTF-8 byte offset -> UTF-16 index. */
export function charIndex(s: string, byte: number): number {
  let bytes = 0;
  for (let i = 0; i < s.length; ) {
    if (bytes >= byte) return i;
    const cp = s.codePointAt(i)!;
    bytes += cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
    i += cp >= 0x10000 ? 2 : 1;
  }
  return s.length;
}

export interface FilterInput {
  el: HTMLElement;
  input: HTMLInputElement;
}

/**
 * A filter box. `onApply` gets the filter once the server said it is valid (Enter or the Apply
 * button); an invalid filter is never applied and its error stays visible under the box.
 * Values are completed from `range` (the page's time range, unix seconds).
 */
export function filterInput(
  value: string,
  onApply: (filter: string) => void,
  range?: { start: number; end: number },
): FilterInput {
  const input = h("input", {
    class: "filter",
    value,
    name: "filter",
    placeholder: 'Filter, e.g. AppProto = "tls" AND DstPort != 443 (Tab completes, Enter applies)',
    spellcheck: "false",
    autocomplete: "off",
    "aria-label": "filter",
  });
  const list = h("ul", { class: "completions hidden", role: "listbox" });
  const err = h("div", { class: "filter-error hidden", role: "alert" });
  let items: api.Completion[] = [];
  let span = { from: 0, to: 0 };
  let selected = 0;
  let ctl: AbortController | null = null;
  let timer: number | undefined;

  const close = () => {
    list.className = "completions hidden";
    items = [];
  };
  const showError = (v: api.Validation | null, text: string) => {
    if (!v || v.ok) {
      err.className = "filter-error hidden";
      input.classList.remove("invalid");
      return;
    }
    const at = charIndex(text, v.position);
    const to = Math.max(at + 1, charIndex(text, v.end));
    err.className = "filter-error";
    input.classList.add("invalid");
    replace(
      err,
      h("div", {}, v.error, ` (at character ${at + 1})`),
      h("pre", {}, text.slice(0, at), h("mark", {}, text.slice(at, to) || " "), text.slice(to)),
    );
  };
  const render = () => {
    if (items.length === 0) return close();
    list.className = "completions";
    replace(
      list,
      items.map((c, i) =>
        h(
          "li",
          {
            class: "completion " + c.kind + (i === selected ? " selected" : ""),
            role: "option",
            onmousedown: (e: Event) => {
              e.preventDefault();
              accept(i);
            },
          },
          h("span", { class: "label" }, c.label),
          h("span", { class: "kind" }, c.detail || c.kind),
        ),
      ),
    );
  };
  const accept = (i: number) => {
    const c = items[i];
    if (!c) return;
    const text = input.value;
    const from = charIndex(text, span.from);
    const to = charIndex(text, span.to);
    const after = text.slice(to);
    const sep = after.startsWith(" ") || c.kind === "value" ? "" : " ";
    input.value = text.slice(0, from) + c.label + sep + after;
    const caret = from + c.label.length + sep.length;
    input.setSelectionRange(caret, caret);
    close();
    input.focus();
    schedule();
  };
  const refresh = async () => {
    ctl?.abort();
    ctl = new AbortController();
    const text = input.value;
    const cursor = byteOffset(text, input.selectionStart ?? text.length);
    try {
      const [c, v] = await Promise.all([
        api.completeFilter(text, cursor, range, ctl.signal),
        text.trim() ? api.validateFilter(text, ctl.signal) : Promise.resolve(null),
      ]);
      span = { from: c.from, to: c.to };
      items = c.completions.slice(0, 30);
      selected = 0;
      if (document.activeElement === input) render();
      showError(v, text);
    } catch (e) {
      if ((e as Error).name !== "AbortError") {
        err.className = "filter-error";
        replace(err, "filter check failed: " + (e as Error).message);
      }
    }
  };
  const schedule = () => {
    window.clearTimeout(timer);
    timer = window.setTimeout(refresh, 120);
  };
  const apply = async () => {
    close();
    const text = input.value.trim();
    if (!text) return onApply("");
    try {
      const v = await api.validateFilter(text);
      showError(v, text);
      if (v.ok) onApply(text);
    } catch (e) {
      err.className = "filter-error";
      replace(err, "filter check failed: " + (e as Error).message);
    }
  };

  input.addEventListener("input", schedule);
  input.addEventListener("focus", schedule);
  input.addEventListener("click", schedule);
  input.addEventListener("blur", () => window.setTimeout(close, 150));
  input.addEventListener("keydown", (e) => {
    const open = items.length > 0 && !list.classList.contains("hidden");
    if (open && (e.key === "ArrowDown" || e.key === "ArrowUp")) {
      e.preventDefault();
      selected = (selected + (e.key === "ArrowDown" ? 1 : items.length - 1)) % items.length;
      render();
    } else if (open && e.key === "Tab") {
      e.preventDefault();
      accept(selected);
    } else if (e.key === "Enter") {
      e.preventDefault();
      apply();
    } else if (e.key === "Escape") close();
  });
  const el = h(
    "div",
    { class: "filter-box" },
    h("div", { class: "filter-row" }, input, h("button", { class: "apply", onclick: apply }, "Apply filter")),
    list,
    err,
  );
  return { el, input };
}
