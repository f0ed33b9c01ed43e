// Bundles src/main.ts into dist/app.js (esbuild) and copies the static files beside it.
// One output folder, served as is by `pipeline console`.
import { build } from "esbuild";
import { cpSync, mkdirSync, rmSync } from "node:fs";

rmSync("dist", { recursive: true, force: true });
mkdirSync("dist", { recursive: true });
await build({
  entryPoints: ["src/main.ts"],
  bundle: true,
  minify: true,
  sourcemap: true,
  target: ["es2020"],
  outfile: "dist/app.js",
  logLevel: "warning",
});
cpSync("static", "dist", { recursive: true });
