// The search term of POST /search (spec: Client-Server API, "Server Side Search") as an SQLite FTS5 MATCH
// expression. Pure: no storage.
//
// The grammar is Synapse's (`_tokenize_query` in synapse/storage/databases/main/search.py), which follows
// Postgres' websearch_to_tsquery: words are ANDed, "double quotes" make a phrase, `or` (any case) makes an
// OR, a leading `-` negates a word; Synapse's few stop words are skipped outside phrases. Unlike Synapse's
// SQLite query, every word goes to FTS5 as a quoted string, so no input can be an FTS5 syntax error
// (`*`, `:`, `^`, parentheses and FTS5's own keywords are just text), and negations are applied after the
// positive part (FTS5's NOT is binary: `a NOT b`), so `-b a` means `a NOT b`, `a -b -c` means
// `a NOT (b OR c)`, and a query of negations only matches nothing.

/** Synapse's stop words (`_is_stop_word`). */
const STOP_WORDS = new Set(["the", "a", "you", "me", "and", "but"]);

/** Words as Synapse finds them (`[\w\-]+`, Unicode-aware). */
const WORD = /[\p{L}\p{N}\p{M}_-]+/gu;

export interface SearchQuery {
  /** The FTS5 MATCH expression; null when the term has nothing to search for (no results). */
  match: string | null;
  /** The words and phrases searched for, for the response's `highlights`. */
  highlights: string[];
}

const quote = (text: string): string => `"${text.replaceAll('"', '""')}"`;

/** Parses a search term into an FTS5 MATCH expression (see the top of this file). */
export function parseSearchTerm(term: string): SearchQuery {
  // A sequence of positive operands joined by AND or OR, and the negated operands.
  const positive: string[] = [];
  const negative: string[] = [];
  const highlights: string[] = [];
  let pendingOr = false;
  let pendingNot = false;

  const addOperand = (operand: string, highlight: string) => {
    if (pendingNot) {
      negative.push(operand);
      pendingNot = false;
      return;
    }
    if (positive.length > 0) positive.push(pendingOr ? "OR" : "AND");
    pendingOr = false;
    positive.push(operand);
    if (!highlights.includes(highlight)) highlights.push(highlight);
  };

  const parts = term.split('"');
  parts.forEach((part, i) => {
    const words = part.match(WORD) ?? [];
    if (i % 2 === 1) {
      // Inside quotes: a phrase (stop words dropped, as Synapse does).
      const phrase = words.flatMap((w) => w.split("-")).filter((w) => w !== "" && !STOP_WORDS.has(w.toLowerCase()));
      if (phrase.length > 0) addOperand(quote(phrase.join(" ")), phrase.join(" ").toLowerCase());
      return;
    }
    for (let word of words) {
      while (word.startsWith("-")) {
        pendingNot = true;
        word = word.slice(1);
      }
      if (word === "" || /^-+$/.test(word)) continue;
      if (word.toLowerCase() === "or" && !pendingNot) {
        pendingOr = positive.length > 0;
        continue;
      }
      if (STOP_WORDS.has(word.toLowerCase())) {
        pendingNot = false;
        continue;
      }
      addOperand(quote(word), word.toLowerCase());
    }
  });

  if (positive.length === 0) return { match: null, highlights: [] };
  let match = positive.length === 1 ? positive[0]! : `(${positive.join(" ")})`;
  // One NOT of an OR of the negations: FTS5 flattens AND and OR, but a chain of NOTs nests (and past a
  // depth of 256 is an error).
  if (negative.length === 1) match += ` NOT ${negative[0]}`;
  else if (negative.length > 1) match += ` NOT (${negative.join(" OR ")})`;
  return { match, highlights };
}
