// Server ACLs (spec: m.room.server_acl and Server-Server API "Server Access Control Lists") and server
// name parsing (Appendices, "Server Name").
import { describe, expect, it } from "vitest";
import { serverAllowedByAcl } from "../../protocol/server-acl.js";
import { hostnameOf, parseServerName } from "../../protocol/server-name.js";

describe("parseServerName", () => {
  it("splits hostname and port and recognises IP literals", () => {
    expect(parseServerName("example.org")).toEqual({ host: "example.org", port: null, ipLiteral: false });
    expect(parseServerName("example.org:8448")).toEqual({ host: "example.org", port: 8448, ipLiteral: false });
    expect(parseServerName("1.2.3.4")).toEqual({ host: "1.2.3.4", port: null, ipLiteral: true });
    expect(parseServerName("127.0.0.1:19210")).toEqual({ host: "127.0.0.1", port: 19210, ipLiteral: true });
    expect(parseServerName("[1234:5678::abcd]")).toEqual({ host: "[1234:5678::abcd]", port: null, ipLiteral: true });
    expect(parseServerName("[1234:5678::abcd]:5678")).toEqual({ host: "[1234:5678::abcd]", port: 5678, ipLiteral: true });
    expect(parseServerName("localhost:8008")).toEqual({ host: "localhost", port: 8008, ipLiteral: false });
  });

  it("accepts the port range edges and rejects outside them", () => {
    expect(parseServerName("a.test:1")?.port).toBe(1);
    expect(parseServerName("a.test:65535")?.port).toBe(65535);
    expect(parseServerName("a.test:0")).toBeNull();
    expect(parseServerName("a.test:65536")).toBeNull();
    expect(parseServerName("a.test:123456")).toBeNull();
  });

  it("rejects names outside the grammar", () => {
    for (const n of ["", "a.test:", "a_b.test", "a.test:80a", "[::1", "[::1]x", "[zz]", "ex ample.org", "a/b", "a.test:8448:1", "x".repeat(256)]) {
      expect(parseServerName(n), n).toBeNull();
    }
  });

  it("hostnameOf drops the port", () => {
    expect(hostnameOf("evil.com:1234")).toBe("evil.com");
    expect(hostnameOf("[::1]:8448")).toBe("[::1]");
  });
});

describe("serverAllowedByAcl", () => {
  const acl = { allow: ["*"], deny: ["evil.com", "*.evil.com"], allow_ip_literals: false };

  it("allows everyone when the room has no ACL", () => {
    expect(serverAllowedByAcl(null, "evil.com")).toBe(true);
    expect(serverAllowedByAcl(undefined, "1.2.3.4")).toBe(true);
  });

  it("ignores the port: evil.com, evil.com:8448 and evil.com:1234 all match evil.com", () => {
    for (const s of ["evil.com", "evil.com:8448", "evil.com:1234"]) expect(serverAllowedByAcl(acl, s), s).toBe(false);
    expect(serverAllowedByAcl({ allow: ["good.org"] }, "good.org:8448")).toBe(true);
    // A port in the ACL entry itself never matches a (port-stripped) server name.
    expect(serverAllowedByAcl({ allow: ["good.org:8448"] }, "good.org:8448")).toBe(false);
  });

  it("applies deny globs before allow", () => {
    expect(serverAllowedByAcl(acl, "sub.evil.com")).toBe(false);
    expect(serverAllowedByAcl(acl, "notevil.com")).toBe(true);
    expect(serverAllowedByAcl({ allow: ["evil.com"], deny: ["evil.com"] }, "evil.com")).toBe(false);
  });

  it("denies everyone without an allow list", () => {
    expect(serverAllowedByAcl({}, "good.org")).toBe(false);
    expect(serverAllowedByAcl({ deny: [] }, "good.org")).toBe(false);
    expect(serverAllowedByAcl({ allow: [] }, "good.org")).toBe(false);
  });

  it("matches globs: * is zero or more characters, ? exactly one, case-insensitively", () => {
    expect(serverAllowedByAcl({ allow: ["*.example.org"] }, "example.org")).toBe(false);
    expect(serverAllowedByAcl({ allow: ["*example.org"] }, "example.org")).toBe(true);
    expect(serverAllowedByAcl({ allow: ["ma?rix.org"] }, "matrix.org")).toBe(true);
    expect(serverAllowedByAcl({ allow: ["ma?rix.org"] }, "marix.org")).toBe(false);
    expect(serverAllowedByAcl({ allow: ["ma?rix.org"] }, "maatrix.org")).toBe(false);
    expect(serverAllowedByAcl({ allow: ["MATRIX.org"] }, "matrix.ORG")).toBe(true);
    // Regular-expression characters in a glob are literal.
    expect(serverAllowedByAcl({ allow: ["a.b"] }, "axb")).toBe(false);
    expect(serverAllowedByAcl({ allow: ["(a|b)"] }, "a")).toBe(false);
  });

  it("denies IP literals only when allow_ip_literals is exactly false", () => {
    for (const ip of ["1.2.3.4", "1.2.3.4:8448", "[::1]", "[::1]:8448"]) {
      expect(serverAllowedByAcl({ allow: ["*"], allow_ip_literals: false }, ip), ip).toBe(false);
      expect(serverAllowedByAcl({ allow: ["*"], allow_ip_literals: true }, ip), ip).toBe(true);
      expect(serverAllowedByAcl({ allow: ["*"] }, ip), ip).toBe(true);
      // Not a boolean: the default (true).
      expect(serverAllowedByAcl({ allow: ["*"], allow_ip_literals: "false" }, ip), ip).toBe(true);
    }
    expect(serverAllowedByAcl({ allow: ["*"], allow_ip_literals: false }, "localhost:8008")).toBe(true);
    // Deny and allow globs also apply to IP literals.
    expect(serverAllowedByAcl({ allow: ["*"], deny: ["1.2.3.*"] }, "1.2.3.4:8448")).toBe(false);
    expect(serverAllowedByAcl({ allow: ["[::1]"] }, "[::1]:8448")).toBe(true);
  });

  it("ignores entries that are not strings and lists that are not lists", () => {
    expect(serverAllowedByAcl({ allow: [1, null, "good.org"], deny: [{}] } as never, "good.org")).toBe(true);
    expect(serverAllowedByAcl({ allow: "*" } as never, "good.org")).toBe(false);
    expect(serverAllowedByAcl({ allow: ["*"], deny: "good.org" } as never, "good.org")).toBe(true);
  });
});
