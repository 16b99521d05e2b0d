// Reading the elements of a JSON document's top-level arrays one at a time, as the text arrives: a
// federation answer such as /state or send_join for a room of thousands of members is tens of megabytes
// (issue 19 §3), more than a Durable Object should hold parsed at once. The caller feeds text chunks and
// gets, for each object inside a top-level array (`{"pdus": [ {...}, {...} ], "auth_chain": [ ... ]}`),
// the array's key and that object's JSON text, which it parses and stores before the next chunk. Only the
// element being read is buffered.
//
// It is a scanner, not a validator: it tracks strings (with escapes) and nesting depth, and leaves checking
// each element to JSON.parse. Values that are not objects inside the arrays, and other top-level keys,
// are skipped; with `strings`, the strings inside the arrays are elements too (their JSON text, quotes
// included), for lists of IDs such as /state_ids.

export interface ArrayElement {
  /** The top-level key of the array the element is in. */
  key: string;
  /** The element's JSON text (an object). */
  json: string;
}

export class JsonArrayElements {
  private depth = 0;
  private inString = false;
  private escaped = false;
  /** The text of the string being read at depth 1 (a top-level key), else null. */
  private keyText: string | null = null;
  private lastKey = "";
  private arrayKey: string | null = null;
  /** The element being read (from its opening brace), else null. */
  private element: string[] | null = null;
  /** The element being read is a string (`strings` only). */
  private stringElement = false;
  private limit: number;
  private elementLength = 0;
  private readonly strings: boolean;

  /**
   * @param maxElementLength elements longer than this are an error (a PDU is at most 64 KiB).
   * @param options.strings strings inside the top-level arrays are elements too.
   */
  constructor(maxElementLength = 1024 * 1024, options: { strings?: boolean } = {}) {
    this.limit = maxElementLength;
    this.strings = options.strings === true;
  }

  /** Feeds the next chunk of text; returns the elements completed in it, in order. */
  push(chunk: string): ArrayElement[] {
    const out: ArrayElement[] = [];
    let elementStart = this.element ? 0 : -1;
    for (let i = 0; i < chunk.length; i++) {
      const c = chunk.charCodeAt(i);
      if (this.inString) {
        if (this.escaped) this.escaped = false;
        else if (c === 0x5c /* \ */) this.escaped = true;
        else if (c === 0x22 /* " */) {
          this.inString = false;
          if (this.keyText !== null) {
            this.lastKey = this.keyText;
            this.keyText = null;
          }
          if (this.stringElement && this.element) {
            this.grow(i + 1 - elementStart);
            this.element.push(chunk.slice(elementStart, i + 1));
            out.push({ key: this.arrayKey!, json: this.element.join("") });
            this.element = null;
            this.stringElement = false;
            elementStart = -1;
          }
        } else if (this.keyText !== null) this.keyText += chunk[i];
        continue;
      }
      switch (c) {
        case 0x22: // "
          this.inString = true;
          // Keys of the top-level object (its values that are strings are read too, and ignored).
          if (this.depth === 1) this.keyText = "";
          else if (this.depth === 2 && this.strings && this.arrayKey !== null) {
            elementStart = i;
            this.element = [];
            this.elementLength = 0;
            this.stringElement = true;
          }
          break;
        case 0x7b: // {
        case 0x5b: // [
          this.depth += 1;
          if (this.depth === 2 && c === 0x5b) this.arrayKey = this.lastKey;
          if (this.depth === 3 && c === 0x7b && this.arrayKey !== null) {
            elementStart = i;
            this.element = [];
            this.elementLength = 0;
          }
          break;
        case 0x7d: // }
        case 0x5d: // ]
          this.depth -= 1;
          if (this.depth < 0) throw new SyntaxError("unbalanced JSON: more closing than opening brackets");
          if (this.depth === 2 && c === 0x7d && this.element) {
            this.grow(i + 1 - elementStart);
            this.element.push(chunk.slice(elementStart, i + 1));
            out.push({ key: this.arrayKey!, json: this.element.join("") });
            this.element = null;
            elementStart = -1;
          }
          if (this.depth === 1) this.arrayKey = null;
          break;
      }
    }
    if (this.element && elementStart >= 0) {
      this.grow(chunk.length - elementStart);
      this.element.push(chunk.slice(elementStart));
    }
    return out;
  }

  private grow(n: number): void {
    this.elementLength += n;
    if (this.elementLength > this.limit) throw new SyntaxError(`an array element is longer than ${this.limit} characters`);
  }

  /** Throws if the document ended inside a value. */
  end(): void {
    if (this.depth !== 0 || this.inString) throw new SyntaxError("the JSON document ended early");
  }
}
