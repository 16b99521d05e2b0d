// End-to-end: the media repository on the real server (`npm start`: workerd under Miniflare, R2 kept under
// DATA_DIR). matrix-js-sdk uploads, another user downloads it and its thumbnail through authenticated media; a 100 MB upload
// streams through without the Worker's memory growing with the file; files survive a restart; the legacy
// endpoints obey the freeze.
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import http from "node:http";
import * as sdk from "matrix-js-sdk";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startServer, type RunningServer } from "./server.js";
import { registerAccount, unique, type Account } from "./register.js";

let server: RunningServer;
const FREEZE = Date.now() + 365 * 24 * 3600 * 1000;

beforeAll(async () => {
  server = await startServer({ MAX_UPLOAD_SIZE: "250M", MEDIA_LEGACY_FREEZE_TIME: String(FREEZE) });
});
afterAll(async () => {
  await server?.stop();
});


async function register(username: string): Promise<Account> {
  return registerAt(server.baseUrl, username);
}

const registerAt = (baseUrl: string, username: string): Promise<Account> => registerAccount(baseUrl, username);

/** The workerd process serving `port` (it listens itself) and its resident and peak memory in KiB. */
function workerdMemory(port: number): { rss: number; peak: number } {
  const out = execFileSync("ss", ["-ltnpH", `sport = :${port}`], { encoding: "utf8" });
  const pid = /pid=(\d+)/.exec(out)?.[1];
  if (!pid) throw new Error(`no process listens on ${port}: ${out}`);
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const kib = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, "m").exec(status)![1]);
  return { rss: kib("VmRSS"), peak: kib("VmHWM") };
}

describe("media end to end", () => {
  it("a matrix-js-sdk client uploads an image and another user downloads it through authenticated media", async () => {
    const alice = await register(unique("alice"));
    const bob = await register(unique("bob"));
    const client = sdk.createClient({ baseUrl: server.baseUrl, accessToken: alice.access_token, userId: alice.user_id });
    // A 1×1 PNG.
    const png = Buffer.from("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==", "base64");
    const { content_uri } = await client.uploadContent(png, { name: "dot.png", type: "image/png" });
    expect(content_uri).toMatch(/^mxc:\/\//);
    const bobClient = sdk.createClient({ baseUrl: server.baseUrl, accessToken: bob.access_token, userId: bob.user_id });
    const url = bobClient.mxcUrlToHttp(content_uri, undefined, undefined, undefined, false, true, true)!;
    expect(url).toContain("/_matrix/client/v1/media/download/");
    const res = await fetch(url, { headers: { Authorization: `Bearer ${bob.access_token}` } });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("image/png");
    expect(res.headers.get("content-disposition")).toBe("inline; filename=dot.png");
    expect(Buffer.from(await res.arrayBuffer()).equals(png)).toBe(true);
    // Without a token: 401 on the authenticated endpoint.
    expect((await fetch(url)).status).toBe(401);
    // And its thumbnail, made in the Worker by the WebAssembly image library.
    const thumbUrl = bobClient.mxcUrlToHttp(content_uri, 32, 32, "crop", false, true, true)!;
    expect(thumbUrl).toContain("/_matrix/client/v1/media/thumbnail/");
    const thumb = await fetch(thumbUrl, { headers: { Authorization: `Bearer ${bob.access_token}` } });
    expect(thumb.status).toBe(200);
    expect(thumb.headers.get("content-type")).toBe("image/png");
    expect(Buffer.from(await thumb.arrayBuffer()).subarray(1, 4).toString()).toBe("PNG");
  });

  /** Uploads over a connection of its own (Connection: close): after a body this large workerd may close a
   * kept-alive connection, which fetch's pool would hand to the next request. */
  async function uploadBuffer(token: string, file: Buffer): Promise<string> {
    const url = new URL(`${server.baseUrl}/_matrix/media/v3/upload?filename=big.bin`);
    const { status, text } = await new Promise<{ status: number; text: string }>((resolve, reject) => {
      const req = http.request(
        url,
        {
          method: "POST",
          agent: false,
          headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/octet-stream", "Content-Length": file.length, Connection: "close" },
        },
        (res) => {
          let text = "";
          res.setEncoding("utf8");
          res.on("data", (d) => (text += d));
          res.on("end", () => resolve({ status: res.statusCode ?? 0, text }));
        },
      );
      req.on("error", reject);
      req.end(file);
    });
    expect(status).toBe(200);
    return (JSON.parse(text) as { content_uri: string }).content_uri;
  }

  function patterned(size: number): Buffer {
    const file = Buffer.alloc(size);
    for (let i = 0; i < size; i += 4096) file[i] = (i / 4096) % 256;
    return file;
  }

  it("uploads and downloads a 100 MB file intact", async () => {
    const alice = await register(unique("big"));
    const file = patterned(100 * 1024 * 1024);
    const contentUri = await uploadBuffer(alice.access_token, file);
    const res = await fetch(`${server.baseUrl}/_matrix/client/v1/media/download/${contentUri.slice(6)}`, {
      headers: { Authorization: `Bearer ${alice.access_token}` },
    });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-length")).toBe(String(file.length));
    expect(Buffer.from(await res.arrayBuffer()).equals(file)).toBe(true);
  });

  it("streams a 200 MB upload: the Worker's peak memory grows by far less than the file", async () => {
    const alice = await register(unique("mem"));
    const size = 200 * 1024 * 1024;
    const file = patterned(size);
    const before = workerdMemory(server.port);
    const contentUri = await uploadBuffer(alice.access_token, file);
    const after = workerdMemory(server.port);
    console.log(`workerd memory over a 200 MB upload: RSS ${before.rss} → ${after.rss} KiB, peak ${before.peak} → ${after.peak} KiB`);
    expect(contentUri).toMatch(/^mxc:/);
    // workerd also runs Miniflare's R2 simulator. Its peak moves by up to ~75 MB between uploads of any size
    // (allocator arenas, measured 4-75 MB for 20-200 MB files); a file held whole anywhere would add 200 MB.
    expect(after.peak - before.peak).toBeLessThan(150 * 1024);
  });

  it("serves legacy URLs of media stored before the freeze time", async () => {
    const alice = await register(unique("legacy"));
    const up = await fetch(`${server.baseUrl}/_matrix/media/v3/upload`, {
      method: "POST",
      headers: { Authorization: `Bearer ${alice.access_token}`, "Content-Type": "text/plain" },
      body: "old style",
    });
    const { content_uri } = (await up.json()) as { content_uri: string };
    const legacy = await fetch(`${server.baseUrl}/_matrix/media/v3/download/${content_uri.slice(6)}`);
    expect(legacy.status).toBe(200);
    expect(await legacy.text()).toBe("old style");
  });
});

describe("media persistence across a restart", () => {
  it("serves a file uploaded before the restart; legacy URLs stop at the freeze", async () => {
    const { mkdtempSync, rmSync } = await import("node:fs");
    const os = await import("node:os");
    const nodePath = await import("node:path");
    const dataDir = mkdtempSync(nodePath.join(os.tmpdir(), "myelin-media-"));
    try {
      const first = await startServer({ MEDIA_LEGACY_FREEZE_TIME: "off" }, { dataDir });
      let alice: { access_token: string };
      let contentUri: string;
      try {
        alice = await registerAt(first.baseUrl, unique("persist"));
        const up = await fetch(`${first.baseUrl}/_matrix/media/v3/upload`, {
          method: "POST",
          headers: { Authorization: `Bearer ${alice.access_token}`, "Content-Type": "text/plain" },
          body: "survives",
        });
        contentUri = ((await up.json()) as { content_uri: string }).content_uri;
      } finally {
        await first.stop();
      }
      // Same port, so the same server name. After the restart the freeze is in the past: only the
      // authenticated endpoint serves the file.
      const second = await startServer({ MEDIA_LEGACY_FREEZE_TIME: "1000" }, { dataDir, port: first.port });
      try {
        const res = await fetch(`${second.baseUrl}/_matrix/client/v1/media/download/${contentUri.slice(6)}`, {
          headers: { Authorization: `Bearer ${alice.access_token}` },
        });
        expect(res.status).toBe(200);
        expect(await res.text()).toBe("survives");
        const legacy = await fetch(`${second.baseUrl}/_matrix/media/v3/download/${contentUri.slice(6)}`);
        expect(legacy.status).toBe(404);
      } finally {
        await second.stop();
      }
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
