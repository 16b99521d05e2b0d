import { exports } from "cloudflare:workers";
import { describe, expect, it } from "vitest";

const get = (path: string) => exports.default.fetch(new Request("https://test.local" + path));

describe("server identity", () => {
  it("serves /_matrix/client/versions", async () => {
    const res = await get("/_matrix/client/versions");
    expect(res.status).toBe(200);
    const body = (await res.json()) as { versions: string[] };
    expect(body.versions).toContain("v1.11");
  });

  it("answers unknown endpoints with M_UNRECOGNIZED", async () => {
    const res = await get("/_matrix/client/v3/nope");
    expect(res.status).toBe(404);
    expect(await res.json()).toMatchObject({ errcode: "M_UNRECOGNIZED" });
  });
});
