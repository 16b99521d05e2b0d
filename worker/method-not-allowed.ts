// Spec: Client-Server API, "Common error codes" / "API standards": an unknown endpoint is answered
// with 404 M_UNRECOGNIZED, and a known endpoint called with the wrong HTTP method with 405
// M_UNRECOGNIZED. Hono only knows "no route matched"; this module tells the two apart by matching the
// path against the registered routes of every other method.
import type { Hono } from "hono";
import type { AppEnv } from "./env.js";

interface RoutePattern {
  method: string;
  regex: RegExp;
}

const cache = new WeakMap<object, RoutePattern[]>();

/** Converts a Hono route path (`/a/:b`, `/a/:b?`, `/a/:b{re}`, `/a/*`) into an anchored RegExp. */
export function routePathRegex(path: string): RegExp {
  let source = "";
  for (const segment of path.split("/").slice(1)) {
    if (segment === "*") {
      source += "(?:/.*)?";
      continue;
    }
    const param = /^:([A-Za-z0-9_]+)(?:\{(.+)\})?(\?)?$/.exec(segment);
    if (param) {
      const inner = param[2] !== undefined ? `(?:${param[2]})` : "[^/]+";
      source += param[3] ? `(?:/${inner})?` : `/${inner}`;
    } else {
      source += "/" + segment.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
    }
  }
  return new RegExp(`^${source === "" ? "/" : source}/?$`);
}

function patternsOf(app: Hono<AppEnv>): RoutePattern[] {
  let patterns = cache.get(app);
  if (!patterns) {
    patterns = app.routes
      .filter((r) => r.method !== "ALL" && r.path !== "*" && r.path !== "/*")
      .map((r) => ({ method: r.method, regex: routePathRegex(r.path) }));
    cache.set(app, patterns);
  }
  return patterns;
}

/** The methods other than `method` that have a route matching `path` (empty: the path is unknown). */
export function allowedMethods(app: Hono<AppEnv>, path: string, method: string): string[] {
  const found = new Set<string>();
  for (const p of patternsOf(app)) {
    if (p.method !== method && p.regex.test(path)) found.add(p.method);
  }
  return [...found];
}

/** Whether a route of `method` (HEAD is served by GET routes) matches `path`. */
export function hasRoute(app: Hono<AppEnv>, path: string, method: string): boolean {
  const m = method === "HEAD" ? "GET" : method;
  return patternsOf(app).some((p) => p.method === m && p.regex.test(path));
}
