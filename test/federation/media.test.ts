// Media over federation with a real Synapse (spec v1.11: GET /_matrix/federation/v1/media/download/{mediaId},
// multipart/mixed). A file uploaded on Synapse is fetched by a Myelin user through Myelin's authenticated
// media (Myelin asks Synapse over federation and keeps a copy in R2), and a file uploaded on Myelin is
// fetched by a Synapse user through Synapse (Synapse asks Myelin).
import { describe, expect, inject, it } from "vitest";
import { newUser, type User } from "./client.js";

const myelin = inject("myelin");
const synapse = inject("synapse");

async function upload(user: User, body: Uint8Array<ArrayBuffer>, type: string, name: string): Promise<string> {
  const res = await fetch(`${user.server.baseUrl}/_matrix/media/v3/upload?filename=${encodeURIComponent(name)}`, {
    method: "POST",
    headers: { Authorization: `Bearer ${user.accessToken}`, "Content-Type": type },
    body,
  });
  expect(res.status).toBe(200);
  return ((await res.json()) as { content_uri: string }).content_uri;
}

async function download(user: User, contentUri: string): Promise<Response> {
  return fetch(`${user.server.baseUrl}/_matrix/client/v1/media/download/${contentUri.slice("mxc://".length)}`, {
    headers: { Authorization: `Bearer ${user.accessToken}` },
  });
}

/** Bytes that are not text, with a CRLF and something like a multipart boundary inside. */
function sample(size: number): Uint8Array<ArrayBuffer> {
  const bytes = new Uint8Array(size);
  for (let i = 0; i < size; i++) bytes[i] = (i * 31 + 7) % 256;
  bytes.set(new TextEncoder().encode("\r\n--boundary\r\n"), 100);
  return bytes;
}

describe("media over federation with Synapse", () => {
  it("a Myelin user downloads a file uploaded on Synapse", async () => {
    const onSynapse = await newUser(synapse, "mediaup");
    const onMyelin = await newUser(myelin, "mediadown");
    const file = sample(300_000);
    const uri = await upload(onSynapse, file, "image/png", "from synapse.png");
    expect(uri.startsWith(`mxc://${synapse.serverName}/`)).toBe(true);
    const res = await download(onMyelin, uri);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("image/png");
    expect(res.headers.get("content-disposition")).toBe("inline; filename*=utf-8''from%20synapse.png");
    expect(new Uint8Array(await res.arrayBuffer())).toEqual(file);
    // The second request is served from Myelin's copy (same bytes).
    const again = await download(onMyelin, uri);
    expect(new Uint8Array(await again.arrayBuffer())).toEqual(file);
  });

  it("a Synapse user downloads a file uploaded on Myelin", async () => {
    const onMyelin = await newUser(myelin, "mediaup");
    const onSynapse = await newUser(synapse, "mediadown");
    const file = sample(123_457);
    const uri = await upload(onMyelin, file, "application/pdf", "report.pdf");
    const res = await download(onSynapse, uri);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("application/pdf");
    expect(new Uint8Array(await res.arrayBuffer())).toEqual(file);
  });

  it("unknown remote media is 404 for a Myelin user", async () => {
    const onMyelin = await newUser(myelin, "mediamissing");
    const res = await download(onMyelin, `mxc://${synapse.serverName}/doesnotexist`);
    expect(res.status).toBe(404);
  });
});
