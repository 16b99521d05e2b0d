import { describe, expect, it } from "vitest";
import { JsonArrayElements, type ArrayElement } from "../../protocol/json-array-stream.js";

// A /state-like answer with the awkward parts: braces, brackets and escaped quotes inside strings, nested
// arrays and objects in elements, non-object elements, other top-level keys before and after, unicode.
const doc = {
  origin: "a]{b",
  pdus: [
    { type: "m.room.member", content: { displayname: 'we"ird } { [ ] \\', list: [1, [2, { x: "}" }]] }, state_key: "@a:x" },
    "not an object",
    3,
    { type: "m.room.name", content: { name: "Ünïcødé ☃ 🎉" } },
  ],
  count: 2,
  auth_chain: [{ type: "m.room.create", content: {} }, { nested: { deeper: { deepest: [{}, {}] } } }],
  tail: { pdus: [{ ignored: true }] },
};
const text = JSON.stringify(doc, null, 1);
const expected: ArrayElement[] = [
  ...[doc.pdus[0], doc.pdus[3]].map((e) => ({ key: "pdus", json: e })),
  ...doc.auth_chain.map((e) => ({ key: "auth_chain", json: e })),
] as unknown as ArrayElement[];

function run(chunks: string[]): { key: string; json: unknown }[] {
  const reader = new JsonArrayElements();
  const out = chunks.flatMap((c) => reader.push(c));
  reader.end();
  return out.map((e) => ({ key: e.key, json: JSON.parse(e.json) }));
}

describe("JsonArrayElements", () => {
  it("yields each object of the top-level arrays, with the array's key, in order (nested arrays of objects are not top level)", () => {
    expect(run([text])).toEqual(expected);
  });

  it("gives the same elements wherever the text is cut into two chunks", () => {
    for (let i = 0; i <= text.length; i++) expect(run([text.slice(0, i), text.slice(i)])).toEqual(expected);
  });

  it("gives the same elements from one-character chunks", () => {
    expect(run([...text])).toEqual(expected);
  });

  it("refuses a document that ends early, and an element over the length limit", () => {
    const reader = new JsonArrayElements();
    reader.push(text.slice(0, text.length - 1));
    expect(() => reader.end()).toThrow(SyntaxError);
    // An element of exactly the limit passes; one character more does not, in one chunk or across two.
    const element = '{"a": "1234567"}'; // 16 characters
    const doc = `{"pdus": [${element}]}`;
    expect(new JsonArrayElements(16).push(doc).map((e) => e.json)).toEqual([element]);
    expect(() => new JsonArrayElements(15).push(doc)).toThrow(/longer than 15/);
    const split = new JsonArrayElements(15);
    expect(() => [doc.slice(0, 14), doc.slice(14)].forEach((c) => split.push(c))).toThrow(/longer than 15/);
  });

  it("with `strings`, yields the strings of the top-level arrays too (escapes kept, wherever the text is cut), and only with it", () => {
    const ids = { pdu_ids: ["$a", 'q"uo\\te]', 7, { x: ["$nested"] }, "$ü☃"], key: "$top-level value", auth_chain_ids: ["$b"] };
    const idsText = JSON.stringify(ids, null, 1);
    const want = [
      { key: "pdu_ids", json: "$a" },
      { key: "pdu_ids", json: 'q"uo\\te]' },
      { key: "pdu_ids", json: { x: ["$nested"] } },
      { key: "pdu_ids", json: "$ü☃" },
      { key: "auth_chain_ids", json: "$b" },
    ];
    const read = (chunks: string[], strings: boolean) => {
      const reader = new JsonArrayElements(1024, { strings });
      const out = chunks.flatMap((c) => reader.push(c));
      reader.end();
      return out.map((e) => ({ key: e.key, json: JSON.parse(e.json) as unknown }));
    };
    for (let i = 0; i <= idsText.length; i++) expect(read([idsText.slice(0, i), idsText.slice(i)], true)).toEqual(want);
    expect(read([...idsText], true)).toEqual(want);
    expect(read([idsText], false)).toEqual([{ key: "pdu_ids", json: { x: ["$nested"] } }]);
    // The length limit counts a string element's quotes: 6 characters pass at 6, not at 5.
    expect(new JsonArrayElements(6, { strings: true }).push('{"ids": ["1234"]}').map((e) => e.json)).toEqual(['"1234"']);
    expect(() => new JsonArrayElements(5, { strings: true }).push('{"ids": ["1234"]}')).toThrow(/longer than 5/);
  });
});
