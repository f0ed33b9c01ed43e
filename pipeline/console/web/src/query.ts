// What the data pages share: the time range and filter read from the URL, and filter terms
// built for links (a top-N row, a series in the table) with the value quoted for the server's
// parser.

import { Field } from "./api";
import { errorBox, h, replace } from "./dom";
import { resolveRange } from "./timerange";

export interface Common {
  startSpec: string;
  endSpec: string;
  start: number;
  end: number;
  filter: string;
}

/** Time range (unix seconds) and filter from the URL; throws a readable error on a bad range. */
export function common(p: URLSearchParams, defaultStart = "now-6h"): Common {
  const startSpec = p.get("start") || defaultStart;
  const endSpec = p.get("end") || "now";
  const r = resolveRange(startSpec, endSpec);
  return {
    startSpec,
    endSpec,
    start: Math.floor(r.start / 1000),
    end: Math.ceil(r.end / 1000),
    filter: p.get("filter") || "",
  };
}

/**
 * `common()`, or, when the URL's range is unreadable, an error with a link that resets it
 * shown in `root` and null.
 */
export function commonOr(root: HTMLElement, p: URLSearchParams, page: string, defaultStart = "now-6h"): Common | null {
  try {
    return common(p, defaultStart);
  } catch (e) {
    replace(root, errorBox("Bad time range in the URL", e), h("a", { href: "/" + page }, "Reset this page"));
    return null;
  }
}

/** A string literal for the filter language (double quotes, `\` and `"` escaped). */
export function quote(v: string): string {
  return '"' + v.replace(/\\/g, "\\\\").replace(/"/g, '\\"') + '"';
}

/** `field = value`, with the value bare for numbers and quoted otherwise. */
export function term(field: string, value: string, kind?: Field["kind"]): string {
  const bare = kind === "number" && /^-?\d+(\.\d+)?$/.test(value);
  return `${field} = ${bare ? value : quote(value)}`;
}

/** Adds a term to a filter with AND (the existing filter in parentheses when it has an OR). */
export function and(filter: string, t: string): string {
  const f = filter.trim();
  if (!f) return t;
  return (/\bOR\b/i.test(f) ? `(${f})` : f) + " AND " + t;
}
