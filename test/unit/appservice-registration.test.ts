// Registration files (protocol/appservice-registration.ts): what Synapse refuses, refused with the file and
// the field named; namespace regexes matched as Synapse does (Python `re.match`: anchored at the start only).
import { describe, expect, it } from "vitest";
import { Appservice, RegistrationError, checkDistinct, parseRegistration, storedForm } from "../../protocol/appservice-registration.js";

const base = () => ({
  id: "irc",
  url: "http://127.0.0.1:9000/",
  as_token: "as-1",
  hs_token: "hs-1",
  sender_localpart: "ircbot",
  namespaces: { users: [{ exclusive: true, regex: "@_irc_.*:example\\.org" }], aliases: [{ exclusive: false, regex: "#_irc_.*" }] },
});

function refusal(raw: unknown): RegistrationError {
  try {
    parseRegistration(raw, "irc.yaml");
  } catch (e) {
    if (e instanceof RegistrationError) return e;
    throw e;
  }
  throw new Error("accepted");
}

describe("parseRegistration", () => {
  it("accepts Synapse's format and fills in defaults", () => {
    const reg = parseRegistration({ ...base(), "de.sorunome.msc2409.push_ephemeral": true, protocols: ["irc", "irc"] }, "irc.yaml");
    expect(reg.url).toBe("http://127.0.0.1:9000");
    expect(reg.rateLimited).toBe(true);
    expect(reg.receiveEphemeral).toBe(true);
    expect(reg.protocols).toEqual(["irc"]);
    expect(reg.namespaces.rooms).toEqual([]);
    expect(storedForm(reg)).not.toHaveProperty("asToken");
    expect(parseRegistration({ ...base(), rate_limited: false }, "x").rateLimited).toBe(false);
  });

  it("url: null is a service that receives nothing; a missing url is refused", () => {
    expect(parseRegistration({ ...base(), url: null }, "x").url).toBeNull();
    const { url: _u, ...noUrl } = base();
    const e = refusal(noUrl);
    expect(e.field).toBe("url");
    expect(e.message).toContain("irc.yaml");
  });

  it("names the field of each required token", () => {
    for (const field of ["id", "as_token", "hs_token", "sender_localpart"]) {
      const raw: Record<string, unknown> = base();
      delete raw[field];
      const e = refusal(raw);
      expect(e.field).toBe(field);
      expect(e.message).toBe(`irc.yaml: ${field}: required, a non-empty string`);
      expect(refusal({ ...base(), [field]: "" }).field).toBe(field);
      expect(refusal({ ...base(), [field]: 5 }).field).toBe(field);
    }
  });

  it("refuses a url that is not http(s)", () => {
    expect(refusal({ ...base(), url: "ftp://example.org" }).message).toBe("irc.yaml: url: must be http or https, not ftp");
    expect(refusal({ ...base(), url: "not a url" }).field).toBe("url");
    expect(parseRegistration({ ...base(), url: "https://bridge.example.org" }, "x").url).toBe("https://bridge.example.org");
  });

  it("refuses a regex that does not compile, naming the entry", () => {
    const e = refusal({ ...base(), namespaces: { users: [{ exclusive: true, regex: "@ok.*" }, { exclusive: true, regex: "@_x_(.*" }] } });
    expect(e.field).toBe("namespaces.users[1].regex");
    expect(e.message).toContain("does not compile");
  });

  it("refuses namespaces without exclusive, or not a list", () => {
    expect(refusal({ ...base(), namespaces: { users: [{ regex: "@a.*" }] } }).field).toBe("namespaces.users[0].exclusive");
    expect(refusal({ ...base(), namespaces: { users: "x" } }).field).toBe("namespaces.users");
    expect(refusal({ ...base(), namespaces: undefined }).field).toBe("namespaces");
    expect(refusal({ ...base(), protocols: [1] }).field).toBe("protocols");
    expect(refusal({ ...base(), "org.matrix.msc3202": "yes" }).field).toBe("org.matrix.msc3202");
    expect(refusal({ ...base(), id: "a|b" }).field).toBe("id");
    expect(refusal("just a string").field).toBe("(document)");
  });
});

describe("checkDistinct", () => {
  const entry = (raw: object, source: string) => ({ registration: parseRegistration(raw, source), source });
  it("refuses two services with one id, naming both files", () => {
    const e = (() => {
      try {
        checkDistinct([entry(base(), "a.yaml"), entry({ ...base(), as_token: "as-2" }, "b.yaml")]);
      } catch (e) {
        return e as RegistrationError;
      }
      throw new Error("accepted");
    })();
    expect(e.field).toBe("id");
    expect(e.message).toContain("b.yaml");
    expect(e.message).toContain("a.yaml");
  });
  it("refuses two services with one as_token without printing it", () => {
    try {
      checkDistinct([entry(base(), "a.yaml"), entry({ ...base(), id: "other" }, "b.yaml")]);
      throw new Error("accepted");
    } catch (e) {
      expect((e as RegistrationError).field).toBe("as_token");
      expect((e as Error).message).not.toContain("as-1");
    }
  });
  it("accepts distinct services", () => {
    expect(() => checkDistinct([entry(base(), "a.yaml"), entry({ ...base(), id: "b", as_token: "as-2" }, "b.yaml")])).not.toThrow();
  });
});

describe("Appservice namespaces", () => {
  const svc = new Appservice(storedForm(parseRegistration(base(), "x")), "example.org");
  it("matches anchored at the start only, as Python's re.match", () => {
    expect(svc.isUserInNamespace("@_irc_alice:example.org")).toBe(true);
    expect(svc.isUserInNamespace("@alice_irc_:example.org")).toBe(false);
    // Not anchored at the end: a longer server name still matches the prefix (Synapse's behaviour).
    expect(svc.isUserInNamespace("@_irc_alice:example.org.evil")).toBe(true);
  });
  it("the sender is the service's, exclusively", () => {
    expect(svc.sender).toBe("@ircbot:example.org");
    expect(svc.isInterestedInUser("@ircbot:example.org")).toBe(true);
    expect(svc.isExclusiveUser("@ircbot:example.org")).toBe(true);
    expect(svc.isExclusiveUser("@_irc_bob:example.org")).toBe(true);
    expect(svc.isExclusiveAlias("#_irc_x:example.org")).toBe(false);
    expect(svc.isAliasInNamespace("#_irc_x:example.org")).toBe(true);
  });
  it("reads Python named groups", () => {
    const s = new Appservice(storedForm(parseRegistration({ ...base(), namespaces: { users: [{ exclusive: true, regex: "@(?P<nick>_x_.+):example\\.org" }] } }, "x")), "example.org");
    expect(s.isUserInNamespace("@_x_bob:example.org")).toBe(true);
  });
});
