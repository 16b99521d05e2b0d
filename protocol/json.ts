// JSON value types shared by the protocol core. Matrix JSON is restricted (no floats, bounded
// integers); canonical-json.ts enforces that, these types only describe the shape.
export type JsonPrimitive = null | boolean | number | string;
export type JsonValue = JsonPrimitive | JsonValue[] | JsonObject;
export interface JsonObject {
  [key: string]: JsonValue;
}

export function isJsonObject(value: unknown): value is JsonObject {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
