// What every page gets from the shell, and what it gives back.

import { Me } from "./api";

export interface Ctx {
  me: Me;
  params: URLSearchParams;
  rest: string[];
}

/** A page renders into `root` and may return a cleanup (timers, event streams, requests). */
export type Page = (root: HTMLElement, ctx: Ctx) => (() => void) | void;
