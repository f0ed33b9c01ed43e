// Saved views: the current page's URL (the whole view state) saved under a name from the
// navigation bar, listed here with links to open them and a delete button. Each user sees only
// their own views.

import * as api from "../api";
import { errorBox, h, loading, replace, toast } from "../dom";
import { utc } from "../format";
import { Ctx } from "../page";
import { navigate, route } from "../state";

/** Pages whose URL can be saved (the server checks the same list). */
export const SAVABLE = ["visualize", "top", "flows", "alerts", "sensors"];

/** The form in the navigation bar: saves the current URL under a name. */
export function saveForm(): HTMLElement {
  const name = h("input", { name: "view-name", placeholder: "save this view as…", "aria-label": "view name", maxlength: 80 });
  const form = h(
    "form",
    {
      class: "save-view",
      onsubmit: async (e: Event) => {
        e.preventDefault();
        const n = name.value.trim();
        if (!n) {
          toast("Give the view a name first", "error");
          return;
        }
        try {
          await api.saveView(n, location.pathname + location.search);
          name.value = "";
          toast(`View "${n}" saved`);
          if (route().page === "views") navigate("/views?saved=" + encodeURIComponent(n), true);
        } catch (err) {
          toast("Saving the view failed: " + (err as Error).message, "error");
        }
      },
    },
    name,
    h("button", { type: "submit", class: "save-view-button" }, "Save view"),
  );
  return form;
}

export function views(root: HTMLElement, _ctx: Ctx): () => void {
  const body = h("div", {}, loading());
  replace(root, h("h1", {}, "Saved views"), h("p", { class: "hint" }, "Save any page from the box at the top right; the view keeps its time range, filter and chart settings."), body);
  let live = true;
  const load = () =>
    api.views().then(
      (r) => {
        if (!live) return;
        if (r.views.length === 0) {
          replace(body, h("p", { class: "empty" }, "No saved view yet."));
          return;
        }
        replace(
          body,
          h(
            "table",
            { class: "data views-table" },
            h("thead", {}, h("tr", {}, ["Name", "Page", "Saved (UTC)", ""].map((x) => h("th", {}, x)))),
            h(
              "tbody",
              {},
              r.views.map((v) =>
                h(
                  "tr",
                  { class: "view-row", "data-name": v.name },
                  h("td", {}, h("a", { class: "view-link", href: v.url }, v.name)),
                  h("td", {}, v.url.split(/[/?]/)[1] ?? ""),
                  h("td", {}, utc(v.saved * 1000)),
                  h(
                    "td",
                    { class: "actions" },
                    h(
                      "button",
                      {
                        class: "delete-view",
                        onclick: async () => {
                          try {
                            await api.deleteView(v.name);
                            toast(`View "${v.name}" deleted`);
                            load();
                          } catch (e) {
                            toast("Delete failed: " + (e as Error).message, "error");
                          }
                        },
                      },
                      "Delete",
                    ),
                  ),
                ),
              ),
            ),
          ),
        );
      },
      (e) => live && replace(body, errorBox("Could not load the saved views", e)),
    );
  load();
  return () => {
    live = false;
  };
}
