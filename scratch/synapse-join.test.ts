import { it, expect } from "vitest";
import { startServer } from "../test/e2e/server.js";
import { trustCA } from "../test/e2e/tls.js";
// @ts-ignore
import { startSynapse, makeCa } from "../scripts/synapse.mjs";

it("experiment", async () => {
  const caFiles = makeCa("/tmp/myelin-lab-ca");
  const { readFileSync } = await import("node:fs");
  const ca = { dir: caFiles.dir, caCert: caFiles.caCert, serverKey: caFiles.key, serverCert: caFiles.cert, caPem: readFileSync(caFiles.caCert, "utf8"), remove() {} };
  trustCA(ca as never);
  const synapse = await startSynapse({ caDir: "/tmp/myelin-lab-ca" });
  const myelin = await startServer({ REGISTRATION_SHARED_SECRET: "s", RC_LOGIN_ADDRESS: "off" }, { https: ca as never });
  console.log("synapse", synapse.serverName, synapse.baseUrl, "myelin", myelin.serverName, myelin.baseUrl);
  try {
    const reg = async (base: string, name: string) => {
      const r = await fetch(`${base}/_matrix/client/v3/register`, { method: "POST", body: JSON.stringify({ username: name, password: "pw-12345678", auth: { type: "m.login.dummy" } }) });
      return (await r.json()) as { access_token: string; user_id: string };
    };
    const alice = await reg(myelin.baseUrl, "alice");
    const bob = await synapse.registerUser("bob", "pw-12345678");
    console.log("users", alice.user_id, bob.userId);
    const call = async (base: string, token: string, method: string, p: string, body?: unknown) => {
      const r = await fetch(`${base}${p}`, { method, headers: { Authorization: `Bearer ${token}` }, body: body === undefined ? undefined : JSON.stringify(body) });
      const t = await r.text();
      return { status: r.status, body: t.startsWith("{") || t.startsWith("[") ? JSON.parse(t) : t };
    };
    const created = await call(myelin.baseUrl, alice.access_token, "POST", "/_matrix/client/v3/createRoom", { preset: "public_chat", room_alias_name: "lab" });
    console.log("created", created.status, JSON.stringify(created.body));
    const roomId = created.body.room_id;
    const j = await call(synapse.baseUrl, bob.accessToken, "POST", `/_matrix/client/v3/join/${encodeURIComponent(`#lab:${myelin.serverName}`)}`, {});
    console.log("synapse join", j.status, JSON.stringify(j.body));
    const sent = await call(synapse.baseUrl, bob.accessToken, "PUT", `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/send/m.room.message/t1`, { msgtype: "m.text", body: "hi from synapse" });
    console.log("synapse send", sent.status, JSON.stringify(sent.body));
    await new Promise((r) => setTimeout(r, 3000));
    const msgs = await call(myelin.baseUrl, alice.access_token, "GET", `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/messages?dir=b&limit=10`);
    console.log("myelin messages", msgs.status, JSON.stringify(msgs.body.chunk?.map((e: any) => [e.type, e.sender, e.content?.body])));
    // Myelin user joins a Synapse room
    const sroom = await call(synapse.baseUrl, bob.accessToken, "POST", "/_matrix/client/v3/createRoom", { preset: "public_chat", room_alias_name: "slab" });
    console.log("synapse room", sroom.status, JSON.stringify(sroom.body));
    for (let i = 0; i < 3; i++) await call(synapse.baseUrl, bob.accessToken, "PUT", `/_matrix/client/v3/rooms/${encodeURIComponent(sroom.body.room_id)}/send/m.room.message/p${i}`, { msgtype: "m.text", body: `before ${i}` });
    const mj = await call(myelin.baseUrl, alice.access_token, "POST", `/_matrix/client/v3/join/${encodeURIComponent(sroom.body.room_id)}?via=${encodeURIComponent(synapse.serverName)}`, {});
    console.log("myelin join", mj.status, JSON.stringify(mj.body));
    const s2 = await call(synapse.baseUrl, bob.accessToken, "PUT", `/_matrix/client/v3/rooms/${encodeURIComponent(sroom.body.room_id)}/send/m.room.message/t9`, { msgtype: "m.text", body: "after join" });
    await new Promise((r) => setTimeout(r, 3000));
    const msgs2 = await call(myelin.baseUrl, alice.access_token, "GET", `/_matrix/client/v3/rooms/${encodeURIComponent(sroom.body.room_id)}/messages?dir=b&limit=20`);
    console.log("myelin messages 2", msgs2.status, JSON.stringify(msgs2.body.chunk?.map((e: any) => [e.type, e.sender, e.content?.body]) ?? msgs2.body));
    void s2;
  } finally {
    console.log("LOG", myelin.log?.slice?.(-4000));
    await myelin.stop();
    await synapse.stop();
  }
});
