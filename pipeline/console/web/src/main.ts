// The shell: checks the session, shows the login form or the navigation and the current page,
// and re-renders the page whenever the URL changes.

import * as api from "./api";
import { errorBox, h, replace, toast } from "./dom";
import { Page } from "./page";
import { alerts } from "./pages/alerts";
import { flows } from "./pages/flows";
import { loginPage } from "./pages/login";
import { sensors } from "./pages/sensors";
import { top } from "./pages/top";
import { saveForm, views } from "./pages/views";
import { visualize } from "./pages/visualize";
import { installLinkHandler, navigate, route, ROUTE_EVENT } from "./state";

const PAGES: [string, string, Page][] = [
  ["visualize", "Visualize", visualize],
  ["top", "Top", top],
  ["flows", "Flows", flows],
  ["alerts", "Alerts", alerts],
  ["sensors", "Sensors", sensors],
  ["views", "Views", views],
];

let me: api.Me | null = null;
let cleanup: (() => void) | void;

function shell(): { nav: HTMLElement; main: HTMLElement } {
  const app = document.getElementById("app")!;
  const nav = h("nav", { class: "top" });
  const main = h("main", { id: "page" });
  replace(app, nav, main);
  return { nav, main };
}

function render(): void {
  if (typeof cleanup === "function") cleanup();
  cleanup = undefined;
  const app = document.getElementById("app")!;
  if (!me) {
    loginPage(app, (m) => {
      me = m;
      if (route().page === "login") navigate("/visualize", true);
      render();
    });
    return;
  }
  const r = route();
  const entry = PAGES.find(([k]) => k === r.page);
  const { nav, main } = shell();
  const current = me;
  replace(
    nav,
    h("span", { class: "brand" }, "NOC console"),
    PAGES.map(([k, label]) => h("a", { href: "/" + k, class: k === r.page ? "active" : "" }, label)),
    h("span", { class: "spacer" }),
    saveForm(),
    h("span", { class: "who", title: "role: " + current.role }, current.username, " · ", h("span", { class: "role " + current.role }, current.role)),
    h(
      "button",
      {
        class: "logout",
        onclick: async () => {
          try {
            await api.logout();
          } catch (e) {
            toast("Logout failed: " + (e as Error).message, "error");
            return;
          }
          me = null;
          render();
        },
      },
      "Log out",
    ),
  );
  if (!entry) {
    replace(main, errorBox("Unknown page", `"/${r.page}" is not a page of the console`), h("a", { href: "/visualize" }, "Go to Visualize"));
    return;
  }
  document.title = entry[1] + " · NOC console";
  try {
    cleanup = entry[2](main, { me: current, params: r.params, rest: r.rest });
  } catch (e) {
    replace(main, errorBox("This page failed", e));
  }
}

async function boot(): Promise<void> {
  installLinkHandler();
  window.addEventListener(ROUTE_EVENT, render);
  api.setUnauthorizedHandler(() => {
    if (me) toast("Your session has ended: log in again", "error");
    me = null;
    render();
  });
  try {
    me = await api.me();
  } catch (e) {
    me = null;
    if (!(e instanceof api.ApiError && e.status === 401)) {
      const app = document.getElementById("app")!;
      replace(app, errorBox("The console server did not answer", e), h("button", { onclick: () => location.reload() }, "Retry"));
      return;
    }
  }
  render();
}

boot();
