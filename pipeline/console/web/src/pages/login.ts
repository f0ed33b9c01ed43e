// Login: the only page without a session. Errors (wrong password, too many attempts, server
// down) are shown as the server words them.

import * as api from "../api";
import { errorBox, h, replace } from "../dom";

export function loginPage(root: HTMLElement, onLogin: (me: api.Me) => void): void {
  const user = h("input", { name: "username", autocomplete: "username", required: true, autofocus: true });
  const pass = h("input", { name: "password", type: "password", autocomplete: "current-password", required: true });
  const err = h("div", { class: "login-error" });
  const btn = h("button", { type: "submit", class: "primary" }, "Log in");
  const form = h(
    "form",
    { class: "login", id: "login-form" },
    h("h1", {}, "NOC console"),
    h("label", {}, "User", user),
    h("label", {}, "Password", pass),
    btn,
    err,
  );
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    btn.setAttribute("disabled", "");
    replace(err);
    try {
      onLogin(await api.login(user.value, pass.value));
    } catch (e) {
      replace(err, errorBox("Login failed", e));
      pass.select();
    } finally {
      btn.removeAttribute("disabled");
    }
  });
  replace(root, form);
  user.focus();
}
