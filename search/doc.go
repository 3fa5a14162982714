// Package search is typo-tolerant full-text search on your own tables:
// what Algolia or Meilisearch do, done by PostgreSQL's full-text search and
// pg_trgm behind GIN indexes.
//
// # Describe an index
//
// A Config names one of your tables, its key column, the text columns to
// search with their weights (A to D), the text-search language ("english"
// by default) and the columns queries may filter on:
//
//	ix, err := search.New(search.Config{
//		Table:   "products",
//		Key:     "id",
//		Fields:  []search.Field{{Column: "title", Weight: search.A}, {Column: "description", Weight: search.C}},
//		Filters: []string{"category", "price"},
//	})
//	err = ix.Create(ctx, pool)      // or put ix.SQL() into your own migrations
//	err = ix.RefreshWords(ctx, pool) // build the word list typo tolerance uses
//
// Create (idempotent; DDL returns the same statements as text) makes:
//   - the pg_trgm and unaccent extensions, only with Config.CreateExtensions;
//   - justpg_unaccent(text), an IMMUTABLE lower(unaccent()) wrapper usable
//     in indexes and generated columns (unaccent itself is only STABLE), and
//     justpg_fold(text), its STABLE twin that queries use where no index
//     needs the wrapper (PostgreSQL inlines it into the query, which it cannot
//     do with the IMMUTABLE one);
//   - a generated, stored, weighted tsvector column (Config.VectorColumn,
//     "search_vector") over the unaccented fields, with a GIN index;
//   - a trigram GIN index (gin_trgm_ops) on justpg_unaccent(field) for each
//     field, for substring search;
//   - a word list table <name>_search_words (every distinct unstemmed,
//     unaccented word with its row count) with trigram GIN indexes, one per
//     word length up to 24 letters (<name>_search_words_trgm1 ...) and one
//     for longer words (..._trgm25), a lookup function for it, and
//     justpg_typo_distance(a, b, k), the typo distance in PL/pgSQL (Create
//     drops the single index <name>_search_words_trgm_idx of earlier
//     versions);
//   - with Config.TenantColumn, three SECURITY DEFINER lookup functions (see
//     "Row-level security" below).
//
// Every identifier is validated and quoted; every value is a bind parameter.
//
// # Query
//
// Search takes what the user typed, in websearch syntax ("quoted phrase",
// or, -exclude), and blends four ways of matching, best first:
//
//   - exact: websearch_to_tsquery over the query rebuilt from its words
//     (stemmed, accent-insensitive);
//   - prefix: the last word, while it is being typed (no trailing space),
//     also matches as a literal prefix of the indexed words ('postgr':*
//     finds postgresql; the prefix is not stemmed, so "explaning" does not
//     become the prefix of "explanation");
//   - typo: each plain word of five characters or more may have one typo,
//     of nine or more two (Typos; an insertion, deletion, substitution or
//     transposition of adjacent characters is one typo). Candidates come
//     from the word list's trigram indexes of the lengths within the typo
//     budget of the word's (a word of 5 letters with one typo looks at the
//     words of 4 to 6) with the % operator, the threshold
//     (the least similarity a word within the typo budget can have, from
//     the word's length) set with set_config(..., true) inside the lookup
//     function, whose SET clause restores it when it returns, and from an
//     exact (btree) lookup of the word's adjacent transpositions, which
//     share too few trigrams to pass a useful threshold; the typo
//     distance (optimal string alignment, in SQL) then keeps the real
//     corrections, which join the word as alternatives in the tsquery
//     (ts_rewrite). They are ranked likeliest first: by a weighted typo
//     cost in which the usual slips (a transposition, a vowel for a vowel,
//     a neighbouring key, a dropped letter, a doubled or undoubled letter)
//     cost half an edit and a changed last letter (the inflection) half an
//     edit more, minus a bonus for words found in many rows (a
//     noisy-channel estimate). A word that is not in the word list is read
//     as its likeliest corrections (the best one and any within half an
//     edit of it) for the exact and prefix tiers, so a stemmer coincidence
//     cannot outrank the correction; a correction that is a stop word drops
//     out of the query, as the stop word itself would. A word that is not
//     in the list and has no correction within its budget gets those one
//     typo beyond it (as Suggest does), rather than matching nothing. All of this happens in the query's
//     one statement: a typo-tolerant search is one round trip;
//   - verbatim: rows containing a query word (or its likeliest correction)
//     unstemmed, as a whole word;
//   - relevance: ts_rank_cd with the field weights.
//
// Ranking (Config.Ranking) adds fixed amounts for an exact, a prefix, a
// likeliest-correction and a verbatim match to the relevance, so exact >
// prefix > typo > verbatim > relevance by default. The rows ranked are
// gathered best tier first: rows that match the query (or its likeliest
// corrections) and contain one of its words verbatim, then the other
// matches; so a broad stem ('set' for "settings") still ranks the rows
// with the word itself when more rows match than Config.MaxCandidates.
// When at most 2,000 rows match, they are read once through the tsvector
// index and each is tested for the words (a few microseconds a row);
// only broader queries look the verbatim rows up through the trigram
// indexes, whose lookups of common trigrams cost several milliseconds.
// Both ways give the same rows. A one-word query whose word (or likeliest
// correction, or a word with the same stem) the word list counts in more
// rows than that goes to the trigram lookup without counting its rows.
//
// A search is one statement with bind parameters, which pgx prepares and
// caches per connection; its text depends only on the query's shape (how
// many words, which filters), so after a few calls PostgreSQL reuses one
// generic plan instead of planning each search again.
//
// While the last word is being typed it matches as a prefix even when it
// has corrections (nationa finds nationalistic as well as national).
//
// A corrected query (a word not in the word list, read as its
// corrections) is ambiguous: the likeliest correction is often right, but
// not always (another inflection, a rarer word). Its hits are therefore
// interleaved by the correction they contain verbatim: the k-th row of the
// j-th likeliest correction is placed at k·j (ties by score), so the
// likeliest correction keeps about half of a page and the others follow
// with decreasing shares (a rank-based prior, not the typo cost, which
// is too confident to hedge with). Each of a complete word's three likeliest
// corrections also adds up to three rows containing it verbatim (taken
// from the first 200 rows matching it and the query, through the tsvector
// index), so another inflection of a common word, or a rarer word, is
// ranked even when the likeliest correction's rows fill MaxCandidates. A
// query whose words are all in the word list is not interleaved.
//
// Filters (Eq, Ne, Lt, Le, Gt, Ge, In) are bound parameters on the
// declared filter columns. Pages are keyset pages (Result.Next), stable
// while the matching rows do not change. Result.Total counts the matches
// (up to Config.MaxCandidates: broad queries rank the first MaxCandidates
// matches the index yields). Highlights are ts_headline snippets,
// HTML-escaped, with the configured markers.
//
// The query text never causes an error: everything but letters and digits
// separates words, so nothing of it reaches tsquery syntax; only the first
// MaxTerms words of at most MaxWordLen bytes are used. A query with no
// positive word returns no hits without touching the database. A query of
// stop words only (which english drops from tsvectors) matches its words
// of four letters or more as whole words through the trigram indexes
// ("which" finds the rows containing which); shorter ones ("the of")
// return no hits from a plan gated on the query, never a scan.
//
// Substring is ILIKE '%text%' (with %, _ and \ escaped; case- and
// accent-insensitive) served by the trigram indexes; text without a run of
// three letters or digits returns ErrTooShort instead of scanning the table.
//
// Suggest ("did you mean") returns the word list's closest words to a
// typed word, the word itself first when it is in the list, then likeliest
// first, as for typo corrections.
//
// # Transactions, tenants and row-level security
//
// Every call takes a DB: a pool, a connection or your transaction, so
// searches see the transaction's own writes. Tables following justpg's
// tenancy convention carry tenant_id and are protected by policies such as
// USING (tenant_id = current_setting('app.tenant_id')::uuid).
//
// Under row-level security PostgreSQL does not use an index for a
// condition whose operator is not LEAKPROOF (it must apply the policy
// first), and @@, ILIKE and % are not: a plain search of a protected table
// filters every row of the tenant. With Config.TenantColumn set, the index
// instead looks the GIN indexes up through SECURITY DEFINER SQL functions
// owned by the table's owner, which restrict the matches to the current
// tenant themselves (tenant column IS NOT DISTINCT FROM the app.tenant_id
// setting) and return keys only; the query then joins back to the table,
// where your policies apply again. The tests show the plans with and
// without this (EXPLAIN through auto_explain, as a role subject to the
// policies). The functions must be owned by a role that is not subject to
// the policy (the table owner without FORCE ROW LEVEL SECURITY, or a role
// with BYPASSRLS); otherwise they stay correct but lose the index. They trust
// the app.tenant_id setting exactly as the policy does; revoke EXECUTE on
// them from PUBLIC and grant it to your application role if other roles can
// reach the schema. The word
// list is kept per tenant: RefreshWords in a tenant's transaction rebuilds
// that tenant's words; enable the same policy on the word table.
//
// # Limits
//
// Highlights are computed on the original text, so an accented word found
// by an unaccented query (café for cafe) matches but is not marked. Words
// of rows written after the last RefreshWords match exactly and by prefix
// but get no typo corrections until the next refresh. Create adds a stored
// column, which rewrites the table under an exclusive lock.
//
// The table's own GIN indexes keep PostgreSQL's default fastupdate: rows
// written since the last vacuum wait in each index's pending list (up to
// gin_pending_list_limit, 4 MB by default), which every search reads whole.
// After a bulk load, VACUUM the table (or call gin_clean_pending_list on
// the indexes) before serving searches; for a steady heavy write load,
// consider a lower gin_pending_list_limit on its GIN indexes. The word
// list's indexes have fastupdate off: RefreshWords writes into them
// directly.
package search
