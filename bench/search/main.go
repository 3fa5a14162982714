// Command search compares justpg/search with a sequential-scan ILIKE and with
// Bleve (in-process) on a corpus of real English text, using real
// misspellings from github.com/client9/misspell.
//
// The corpus is built from text shipped in Debian packages and the Go
// distribution: the lines of the GNU Collaborative International Dictionary
// of English (package dict-gcide), the glosses of WordNet 3.0 (package
// wordnet-base) and the comment lines of the Go toolchain's sources
// ($GOROOT/src). Install the two packages first:
//
//	apt-get install dict-gcide wordnet-base
//	go run ./search -rows 1000000
package main

import (
	"bufio"
	"compress/gzip"
	"context"
	"flag"
	"fmt"
	"io/fs"
	"log"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"time"
	"unicode"

	"github.com/blevesearch/bleve/v2"
	"github.com/blevesearch/bleve/v2/search/query"
	"github.com/client9/misspell"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/justpg/justpg/bench/internal/benchdb"
	"github.com/justpg/justpg/search"
)

var (
	rows       = flag.Int("rows", 1_000_000, "corpus rows")
	nQueries   = flag.Int("queries", 300, "queries per kind")
	nSeq       = flag.Int("seq", 15, "sequential-scan ILIKE queries")
	nSeqFuzzy  = flag.Int("seq-fuzzy", 3, "sequential-scan fuzzy (pg_trgm word similarity, no index) queries")
	withBleve  = flag.Bool("bleve", true, "also index and query with Bleve")
	showMisses = flag.Bool("misses", false, "print the misspellings justpg missed")
	reuse      = flag.String("reuse", "", "database name to keep the corpus and index in across runs (needs BENCH_DATABASE_URL, a persistent server): built on the first run, reused after")
	maxCands   = flag.Int("max-candidates", 0, "search.Config.MaxCandidates (0: the package default)")
	refresh    = flag.Bool("refresh", false, "with -reuse: rebuild the word list (RefreshWords) of the reused database")
	bleveDir   = flag.String("bleve-dir", "", "directory to keep the Bleve index in across runs (built when missing)")
	gcidePath  = flag.String("gcide", "/usr/share/dictd/gcide.dict.dz", "GCIDE dictionary (dict-gcide)")
	wordnetDir = flag.String("wordnet", "/usr/share/wordnet", "WordNet data files (wordnet-base)")
	seed       = flag.Int64("seed", 1, "seed of the misspelling sample")
	showSlow   = flag.Int("slow", 0, "print the N slowest typo queries")
	warmup     = flag.Int("warmup", 30, "unmeasured typo and prefix queries of other misspellings (not in the sample) run first, so that the server's caches are warm as in steady use")
	prewarm    = flag.Bool("prewarm", true, "read the table, the word list and their indexes (pg_prewarm) before the justpg queries, so that they are measured warm rather than against the virtual disk")
	explainMS  = flag.Int("explain-ms", 0, "log EXPLAIN ANALYZE of statements slower than this many ms to the server log (auto_explain)")
)

func main() {
	flag.Parse()
	ctx := context.Background()
	log.SetFlags(log.Ltime)
	srv, err := benchdb.Start(ctx)
	check(err)
	defer srv.Stop(ctx)
	pool, built := openDB(ctx, srv, *rows)
	defer pool.Close()
	// A reused database has the corpus already: its text is read back from
	// it, so the run only queries.
	var docs []string
	nDocs := *rows
	if !built {
		docs = loadCorpus()
		if len(docs) < *rows {
			log.Printf("corpus has only %d rows (wanted %d)", len(docs), *rows)
		} else {
			docs = docs[:*rows]
		}
		nDocs = len(docs)
	}
	text := func(id int64) string {
		if docs != nil {
			return docs[id-1]
		}
		var s string
		check(pool.QueryRow(ctx, `SELECT body FROM docs WHERE id = $1`, id).Scan(&s))
		return s
	}
	fmt.Printf("machine: %s\ncorpus rows: %d\n", benchdb.Machine(), nDocs)
	ix, err := search.New(search.Config{Table: "docs", Key: "id", MaxCandidates: *maxCands, Fields: []search.Field{{Column: "body", Weight: search.A}}})
	check(err)
	if !built {
		t0 := time.Now()
		_, err = pool.CopyFrom(ctx, pgx.Identifier{"docs"}, []string{"id", "body"}, pgx.CopyFromSlice(len(docs), func(i int) ([]any, error) {
			return []any{int64(i + 1), docs[i]}, nil
		}))
		check(err)
		log.Printf("copied %d rows in %s", len(docs), time.Since(t0))
		t0 = time.Now()
		check(ix.Create(ctx, pool))
		create := time.Since(t0)
		t0 = time.Now()
		check(ix.RefreshWords(ctx, pool))
		refresh := time.Since(t0)
		_, err = pool.Exec(ctx, `VACUUM ANALYZE docs`)
		check(err)
		_, err = pool.Exec(ctx, `ANALYZE docs_search_words`)
		check(err)
		if *reuse != "" {
			_, err = pool.Exec(ctx, `CREATE TABLE bench_built AS SELECT $1::int AS rows`, len(docs))
			check(err)
		}
		log.Printf("index created in %s, words refreshed in %s", create, refresh)
		fmt.Printf("justpg: Create (generated tsvector + 2 GIN indexes) %s, RefreshWords %s\n", create.Round(time.Second), refresh.Round(time.Second))
	} else {
		// Create is idempotent and replaces the functions, so a reused
		// database runs the current code's SQL.
		check(ix.Create(ctx, pool))
		log.Printf("reusing the corpus and index in database %s", *reuse)
		if *refresh {
			t0 := time.Now()
			check(ix.RefreshWords(ctx, pool))
			_, err = pool.Exec(ctx, `VACUUM ANALYZE docs_search_words`)
			check(err)
			log.Printf("words refreshed in %s", time.Since(t0))
		}
	}

	vocab := map[string]bool{}
	r, err := pool.Query(ctx, `SELECT word FROM docs_search_words`)
	check(err)
	for r.Next() {
		var w string
		check(r.Scan(&w))
		vocab[w] = true
	}
	check(r.Err())

	// Real misspellings whose correction occurs in the corpus and which do
	// not themselves occur in it.
	type pair struct{ wrong, right string }
	var pairs []pair
	plain := regexp.MustCompile(`^[a-z]+$`)
	for i := 0; i+1 < len(misspell.DictMain); i += 2 {
		w, c := misspell.DictMain[i], misspell.DictMain[i+1]
		if plain.MatchString(w) && plain.MatchString(c) && len(c) >= 4 && vocab[c] && !vocab[w] {
			pairs = append(pairs, pair{w, c})
		}
	}
	rng := rand.New(rand.NewSource(*seed))
	rng.Shuffle(len(pairs), func(i, j int) { pairs[i], pairs[j] = pairs[j], pairs[i] })
	fmt.Printf("misspellings usable: %d, sampled: %d (seed %d)\n", len(pairs), min(len(pairs), *nQueries), *seed)
	var warm []pair
	if len(pairs) > *nQueries {
		warm = pairs[*nQueries:min(len(pairs), *nQueries+*warmup)]
		pairs = pairs[:*nQueries]
	}

	contains := func(id int64, word string) bool {
		for _, f := range strings.FieldsFunc(strings.ToLower(text(id)), func(r rune) bool { return !unicode.IsLetter(r) && !unicode.IsDigit(r) }) {
			if f == word {
				return true
			}
		}
		return false
	}
	var keyID = func(k string) int64 {
		var id int64
		fmt.Sscan(k, &id)
		return id
	}

	if *prewarm {
		t0 := time.Now()
		_, err := pool.Exec(ctx, `CREATE EXTENSION IF NOT EXISTS pg_prewarm`)
		check(err)
		var blocks int64
		check(pool.QueryRow(ctx, `SELECT sum(pg_prewarm(c.oid, 'read'))::bigint FROM pg_class c
			WHERE c.oid IN ('docs'::regclass, 'docs_search_words'::regclass)
			   OR c.oid IN (SELECT indexrelid FROM pg_index WHERE indrelid IN ('docs'::regclass, 'docs_search_words'::regclass))`).Scan(&blocks))
		log.Printf("prewarmed %d blocks in %s", blocks, time.Since(t0).Round(time.Millisecond))
	}

	// justpg
	var typoLat, prefixLat, likeLat, seqLat []time.Duration
	hits := 0
	var typoDB search.DB = pool
	if *explainMS > 0 {
		conn, err := pool.Acquire(ctx)
		check(err)
		defer conn.Release()
		_, err = conn.Exec(ctx, `LOAD 'auto_explain'`)
		check(err)
		_, err = conn.Exec(ctx, `SELECT set_config('auto_explain.log_min_duration', $1, false), set_config('auto_explain.log_analyze', 'on', false), set_config('auto_explain.log_nested_statements', 'on', false)`, fmt.Sprint(*explainMS))
		check(err)
		typoDB = conn
	}
	// Warm-up: other misspellings, as complete words and as prefixes,
	// on the connection the measured queries use.
	for _, p := range warm {
		_, err := ix.Search(ctx, typoDB, search.Query{Text: p.wrong + " ", Limit: 10})
		check(err)
		_, err = ix.Search(ctx, typoDB, search.Query{Text: p.right[:max(3, len(p.right)-3)], Limit: 10})
		check(err)
	}
	if len(warm) > 0 {
		log.Printf("warmed up with %d other misspellings", len(warm))
	}
	for _, p := range pairs {
		t := time.Now()
		// A typo query is a complete word, as after a space or Enter: the
		// word being typed is measured by the prefix queries.
		res, err := ix.Search(ctx, typoDB, search.Query{Text: p.wrong + " ", Limit: 10})
		typoLat = append(typoLat, time.Since(t))
		check(err)
		found := false
		for _, h := range res.Hits {
			if contains(keyID(h.Key), p.right) {
				found = true
				break
			}
		}
		if found {
			hits++
		} else if *showMisses {
			fmt.Printf("miss: %s -> %s: corrections %v, total %d\n", p.wrong, p.right, res.Corrections[p.wrong], res.Total)
		}
	}
	recall := float64(hits) / float64(len(pairs))
	if *showSlow > 0 {
		idx := make([]int, len(pairs))
		for i := range idx {
			idx[i] = i
		}
		sort.Slice(idx, func(a, b int) bool { return typoLat[idx[a]] > typoLat[idx[b]] })
		for _, i := range idx[:min(*showSlow, len(idx))] {
			fmt.Printf("slow: %s %s\n", pairs[i].wrong, ms(typoLat[i]))
		}
	}
	for _, p := range pairs {
		pre := p.right[:max(3, len(p.right)-3)]
		t := time.Now()
		_, err := ix.Search(ctx, pool, search.Query{Text: pre, Limit: 10})
		prefixLat = append(prefixLat, time.Since(t))
		check(err)
	}
	subs := make([]string, len(pairs))
	for i, p := range pairs {
		subs[i] = p.right[1 : len(p.right)-1]
		if len(subs[i]) < 3 {
			subs[i] = p.right
		}
		t := time.Now()
		_, err := ix.Substring(ctx, pool, search.Query{Text: subs[i], Limit: 10})
		likeLat = append(likeLat, time.Since(t))
		check(err)
	}
	for i := 0; i < *nSeq && i < len(subs); i++ {
		t := time.Now()
		err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `SET LOCAL enable_bitmapscan = off; SET LOCAL enable_indexscan = off`); err != nil {
				return err
			}
			rows, err := tx.Query(ctx, `SELECT id, count(*) OVER () FROM docs WHERE body ILIKE $1 LIMIT 10`, "%"+subs[i]+"%")
			if err != nil {
				return err
			}
			rows.Close()
			return rows.Err()
		})
		seqLat = append(seqLat, time.Since(t))
		check(err)
	}

	// The typo queries without an index: pg_trgm's word similarity of the
	// misspelling to each row, over the whole table.
	var seqFuzzyLat []time.Duration
	for i := 0; i < *nSeqFuzzy && i < len(pairs); i++ {
		t := time.Now()
		err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `SET LOCAL enable_bitmapscan = off; SET LOCAL enable_indexscan = off`); err != nil {
				return err
			}
			rows, err := tx.Query(ctx, `SELECT id, count(*) OVER () FROM docs WHERE $1 <% body ORDER BY $1 <<-> body LIMIT 10`, pairs[i].wrong)
			if err != nil {
				return err
			}
			rows.Close()
			return rows.Err()
		})
		seqFuzzyLat = append(seqFuzzyLat, time.Since(t))
		check(err)
	}

	fmt.Println()
	fmt.Println("| query (justpg unless noted) | n | p50 | p95 |")
	fmt.Println("|---|---|---|---|")
	row := func(name string, d []time.Duration) (p50, p95 time.Duration) {
		p50, p95 = pct(d, 50), pct(d, 95)
		fmt.Printf("| %s | %d | %s | %s |\n", name, len(d), ms(p50), ms(p95))
		return
	}
	_, typo95 := row("typo (misspelling, blended search)", typoLat)
	row("prefix (search-as-you-type)", prefixLat)
	_, like95 := row("substring (ILIKE via trigram index)", likeLat)
	seq50, _ := row("sequential-scan ILIKE (same substrings)", seqLat)
	seqFuzzy50, _ := row("sequential-scan fuzzy (word similarity <%, same misspellings)", seqFuzzyLat)

	var bTypo, bPrefix, bLike []time.Duration
	bRecall := -1.0
	if *withBleve {
		idx := openBleve(nDocs, func() []string {
			if docs == nil {
				log.Fatal("the Bleve index must be built: load the corpus (run without -reuse, or with a new -reuse name)")
			}
			return docs
		})
		bHits := 0
		for _, p := range pairs {
			mq := query.NewMatchQuery(p.wrong)
			mq.SetField("body")
			switch {
			case len(p.wrong) >= 9:
				mq.SetFuzziness(2)
			case len(p.wrong) >= 5:
				mq.SetFuzziness(1)
			}
			req := bleve.NewSearchRequestOptions(mq, 10, 0, false)
			t := time.Now()
			res, err := idx.Search(req)
			bTypo = append(bTypo, time.Since(t))
			check(err)
			found := false
			for _, h := range res.Hits {
				if contains(keyID(h.ID), p.right) {
					found = true
					break
				}
			}
			if found {
				bHits++
			} else if *showMisses {
				fmt.Printf("bleve miss: %s -> %s\n", p.wrong, p.right)
			}
		}
		bRecall = float64(bHits) / float64(len(pairs))
		for _, p := range pairs {
			pq := query.NewPrefixQuery(p.right[:max(3, len(p.right)-3)])
			pq.SetField("body")
			t := time.Now()
			_, err := idx.Search(bleve.NewSearchRequestOptions(pq, 10, 0, false))
			bPrefix = append(bPrefix, time.Since(t))
			check(err)
		}
		for _, s := range subs {
			wq := query.NewWildcardQuery("*" + s + "*")
			wq.SetField("body")
			t := time.Now()
			_, err := idx.Search(bleve.NewSearchRequestOptions(wq, 10, 0, false))
			bLike = append(bLike, time.Since(t))
			check(err)
		}
		check(idx.Close())
		fmt.Println()
		fmt.Println("| Bleve query | n | p50 | p95 |")
		fmt.Println("|---|---|---|---|")
		row("typo (match query, fuzziness 1 from 5 letters, 2 from 9)", bTypo)
		row("prefix", bPrefix)
		row("substring (wildcard *x*)", bLike)
	}
	fmt.Println()
	fmt.Printf("recall@10 on %d real misspellings: justpg %.3f", len(pairs), recall)
	if bRecall >= 0 {
		fmt.Printf(", Bleve %.3f", bRecall)
	}
	fmt.Println()
	fmt.Printf("sequential-scan ILIKE p50 / justpg typo p50: %.0fx, / typo p95: %.0fx; / justpg substring p50: %.0fx, / substring p95: %.0fx\n",
		float64(seq50)/float64(pct(typoLat, 50)), float64(seq50)/float64(typo95),
		float64(seq50)/float64(pct(likeLat, 50)), float64(seq50)/float64(like95))
	if len(seqFuzzyLat) > 0 {
		fmt.Printf("sequential-scan fuzzy p50 / justpg typo p50: %.0fx, / typo p95: %.0fx\n",
			float64(seqFuzzy50)/float64(pct(typoLat, 50)), float64(seqFuzzy50)/float64(typo95))
	}
	if *withBleve {
		fmt.Printf("justpg / Bleve p50: typo %.2fx, prefix %.2fx, substring %.2fx (below 1 = justpg faster)\n",
			float64(pct(typoLat, 50))/float64(pct(bTypo, 50)), float64(pct(prefixLat, 50))/float64(pct(bPrefix, 50)),
			float64(pct(likeLat, 50))/float64(pct(bLike, 50)))
	}
}

// openDB returns a pool on the benchmark database and whether it already
// holds the corpus and index (only with -reuse).
func openDB(ctx context.Context, srv *benchdb.Server, n int) (*pgxpool.Pool, bool) {
	if *reuse == "" {
		pool, _, err := srv.FreshDB(ctx, "bench_search", 4)
		check(err)
		_, err = pool.Exec(ctx, `CREATE TABLE docs (id bigint PRIMARY KEY, body text NOT NULL)`)
		check(err)
		return pool, false
	}
	if os.Getenv("BENCH_DATABASE_URL") == "" {
		log.Fatal("-reuse needs BENCH_DATABASE_URL: a throwaway server does not outlive the run")
	}
	conn, err := pgx.Connect(ctx, srv.AdminURL())
	check(err)
	var exists bool
	check(conn.QueryRow(ctx, `SELECT EXISTS (SELECT FROM pg_database WHERE datname = $1)`, *reuse).Scan(&exists))
	if !exists {
		_, err = conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{*reuse}.Sanitize())
		check(err)
	}
	check(conn.Close(ctx))
	cfg, err := pgxpool.ParseConfig(srv.DatabaseURL(*reuse))
	check(err)
	cfg.MaxConns = 4
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	check(err)
	for _, ext := range []string{"pg_trgm", "unaccent"} {
		_, err := pool.Exec(ctx, "CREATE EXTENSION IF NOT EXISTS "+ext)
		check(err)
	}
	var rows int
	err = pool.QueryRow(ctx, `SELECT rows FROM bench_built`).Scan(&rows)
	if err == nil && rows == n {
		return pool, true
	}
	log.Printf("building the corpus and index in database %s", *reuse)
	_, err = pool.Exec(ctx, `DROP TABLE IF EXISTS bench_built, docs, docs_search_words CASCADE;
		CREATE TABLE docs (id bigint PRIMARY KEY, body text NOT NULL)`)
	check(err)
	return pool, false
}

// openBleve opens the Bleve index kept in -bleve-dir, or builds one.
func openBleve(n int, corpus func() []string) bleve.Index {
	dir := *bleveDir
	if dir == "" {
		tmp, err := os.MkdirTemp("", "bleve-bench-")
		check(err)
		dir = tmp
		defer os.RemoveAll(tmp) // the open index keeps its files until exit
	} else if idx, err := bleve.Open(filepath.Join(dir, "idx")); err == nil {
		if c, err := idx.DocCount(); err == nil && c == uint64(n) {
			log.Printf("reusing the Bleve index in %s", dir)
			return idx
		}
		idx.Close()
		check(os.RemoveAll(filepath.Join(dir, "idx")))
	}
	docs := corpus()
	t0 := time.Now()
	idx, err := bleve.New(filepath.Join(dir, "idx"), bleve.NewIndexMapping())
	check(err)
	b := idx.NewBatch()
	for i, d := range docs {
		check(b.Index(fmt.Sprint(i+1), map[string]any{"body": d}))
		if b.Size() >= 5000 {
			check(idx.Batch(b))
			b = idx.NewBatch()
		}
	}
	check(idx.Batch(b))
	fmt.Printf("\nBleve: indexed %d docs in %s\n", len(docs), time.Since(t0).Round(time.Second))
	return idx
}

func pct(d []time.Duration, p int) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := append([]time.Duration{}, d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[min(len(s)-1, len(s)*p/100)]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond)) }

func check(err error) {
	if err != nil {
		log.Fatal(err)
	}
}

var (
	bracketRE = regexp.MustCompile(`\[[^\]]*\]`)
	markupRE  = regexp.MustCompile(`[{}\\*"]`)
	spaceRE   = regexp.MustCompile(`\s+`)
)

func clean(s string) string {
	s = strings.ToValidUTF8(s, "")
	s = bracketRE.ReplaceAllString(s, "")
	s = markupRE.ReplaceAllString(s, "")
	return strings.TrimSpace(spaceRE.ReplaceAllString(s, " "))
}

// loadCorpus returns distinct lines of real text of at least three words:
// GCIDE lines, WordNet glosses, Go source comment lines, in that order.
func loadCorpus() []string {
	seen := map[string]bool{}
	var out []string
	add := func(s string) {
		s = clean(s)
		if len(strings.Fields(s)) >= 3 && !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	f, err := os.Open(*gcidePath)
	check(err)
	zr, err := gzip.NewReader(f)
	check(err)
	sc := bufio.NewScanner(zr)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		add(sc.Text())
	}
	check(sc.Err())
	f.Close()
	n1 := len(out)
	for _, pos := range []string{"noun", "verb", "adj", "adv"} {
		f, err := os.Open(filepath.Join(*wordnetDir, "data."+pos))
		check(err)
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			if _, gloss, ok := strings.Cut(sc.Text(), "| "); ok {
				for _, part := range strings.Split(gloss, "; ") {
					add(part)
				}
			}
		}
		check(sc.Err())
		f.Close()
	}
	n2 := len(out)
	commentRE := regexp.MustCompile(`^\s*//\s*(.*)$`)
	_ = filepath.WalkDir(filepath.Join(goRoot(), "src"), func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.Contains(path, "testdata") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return nil
		}
		for _, line := range strings.Split(string(b), "\n") {
			if m := commentRE.FindStringSubmatch(line); m != nil {
				add(m[1])
			}
		}
		return nil
	})
	log.Printf("corpus: %d GCIDE lines, %d WordNet glosses, %d Go comment lines", n1, n2-n1, len(out)-n2)
	fmt.Printf("corpus sources: %d GCIDE lines (dict-gcide), %d WordNet 3.0 glosses (wordnet-base), %d Go %s source comment lines\n",
		n1, n2-n1, len(out)-n2, runtime.Version())
	return out
}

// goRoot is the GOROOT of the go command on PATH, whose source comments are
// part of the corpus.
func goRoot() string {
	out, err := exec.Command("go", "env", "GOROOT").Output()
	check(err)
	return strings.TrimSpace(string(out))
}
